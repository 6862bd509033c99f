/**
 * A D1 binding that counts its round trips: every `batch()` is one (named with its statements'
 * SQL), every statement run on its own
 * (`run`, `all`, `first`, `raw`) is one. What goes through it reaches the real binding unchanged,
 * after `before(query)` when given (a test holds a request at one of its queries with it).
 */
export function countingD1(d1: D1Database, before?: (query: string) => Promise<void>): { d1: D1Database; roundTrips: string[] } {
  const roundTrips: string[] = [];
  const real = new WeakMap<object, D1PreparedStatement>();
  const texts = new WeakMap<object, string>();
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
    texts.set(proxy, query);
    return proxy;
  };
  const proxy = new Proxy(d1, {
    get(target, prop) {
      if (prop === "prepare") return (query: string) => statement(target.prepare(query), query);
      if (prop === "batch") {
        return (statements: D1PreparedStatement[]) => {
          const queries = statements.map((s) => texts.get(s) ?? "?");
          roundTrips.push(`batch of ${statements.length}: ${queries.join(" ; ")}`);
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

/**
 * The suites' switch for counting the D1 round trips the objects make (the test bindings of the
 * wallet and chat objects read their D1 through `countedEnv`): set, every query an object runs
 * goes through `objectD1.counting`; cleared, the real binding. Objects run in the suites' isolate.
 */
export const objectD1: { counting: ReturnType<typeof countingD1> | null } = { counting: null };

/** `env` whose `DB` is the counting binding while `objectD1.counting` is set. */
export function countedEnv(env: Env): Env {
  return new Proxy(env, {
    get(target, prop) {
      if (prop === "DB" && objectD1.counting) return objectD1.counting.d1;
      return Reflect.get(target, prop, target);
    },
  });
}

/**
 * Runs `fn` with every D1 round trip counted, the Worker's (hand `d1` to the request as its DB
 * binding) and every object's, in one list.
 */
export async function countingEverywhere<T>(real: D1Database, fn: (d1: D1Database) => Promise<T>) {
  const counting = countingD1(real);
  objectD1.counting = counting;
  try {
    return { value: await fn(counting.d1), roundTrips: counting.roundTrips };
  } finally {
    objectD1.counting = null;
  }
}
