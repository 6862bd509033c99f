/**
 * A D1 binding that counts its round trips: every `batch()` is one, every statement run on its own
 * (`run`, `all`, `first`, `raw`) is one. What goes through it reaches the real binding unchanged,
 * after `before(query)` when given (a test holds a request at one of its queries with it).
 */
export function countingD1(d1: D1Database, before?: (query: string) => Promise<void>): { d1: D1Database; roundTrips: string[] } {
  const roundTrips: string[] = [];
  const real = new WeakMap<object, D1PreparedStatement>();
  const forward = (target: object, prop: string | symbol) => {
    const value = Reflect.get(target, prop, target);
    return typeof value === "function" ? value.bind(target) : value;
  };
  const statement = (stmt: D1PreparedStatement, query: string): D1PreparedStatement => {
    const proxy = new Proxy(stmt, {
      get(target, prop) {
        if (prop === "bind") return (...values: unknown[]) => statement(target.bind(...values), query);
        if (prop === "run" || prop === "all" || prop === "first" || prop === "raw") {
          return async (...args: unknown[]) => {
            roundTrips.push(query);
            await before?.(query);
            return (target[prop] as (...a: unknown[]) => unknown)(...args);
          };
        }
        return forward(target, prop);
      },
    });
    real.set(proxy, stmt);
    return proxy;
  };
  const proxy = new Proxy(d1, {
    get(target, prop) {
      if (prop === "prepare") return (query: string) => statement(target.prepare(query), query);
      if (prop === "batch") {
        return (statements: D1PreparedStatement[]) => {
          roundTrips.push(`batch of ${statements.length}`);
          return target.batch(statements.map((s) => real.get(s) ?? s));
        };
      }
      if (prop === "exec") {
        return (query: string) => {
          roundTrips.push(query);
          return target.exec(query);
        };
      }
      return forward(target, prop);
    },
  });
  return { d1: proxy, roundTrips };
}
