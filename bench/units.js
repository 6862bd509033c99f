/**
 * The bench's meter of billable units (bench/README.md, "Cost per million"): loaded only by the
 * bench's own entry module (bench/meter.ts `meteredEntry`), beside an unchanged worker module (the
 * product bundle exactly as `wrangler deploy` ships it, or a floor probe), never bundled into it.
 * In the isolate of that worker it counts, from the moment the first entry point runs:
 * - Worker requests: every `fetch` the Worker's entry answers (the meter's own path left out);
 * - Durable Object requests: every call that enters an object from outside it (an RPC method or
 *   `fetch`, from a Worker, another object or a Workflow), counted by the object's class where it
 *   runs (a call the object makes to its own methods is not one: an AsyncLocalStorage context
 *   marks the code running inside a call), every alarm handler run, and incoming WebSocket
 *   messages (billed 20:1);
 * - D1: statements run (a batch of n counts n; `d1Calls` counts round trips), and the
 *   `rows_read`/`rows_written` D1 reports in each statement's `meta`, summed;
 * - Durable Object SQLite storage: `rowsRead`/`rowsWritten` of every `sql.exec` cursor, read at
 *   the end of the turn that made it (SQL in an object is synchronous: a cursor is consumed in
 *   its turn), plus the key-value and alarm methods, billed as rows by Cloudflare's rule
 *   (a key read or listed = 1 row read; a key put or deleted = 1 row written; `setAlarm` = 1).
 * D1 statements made behind the answers (in an object's alarm handler, a Workflow's run or the
 * cron handler: where owners flush their outboxes into D1's indexes) are also counted apart
 * (`d1QueriesBehind`, `d1CallsBehind`), told from the request paths' by an AsyncLocalStorage
 * context (the worker needs `nodejs_compat` or `nodejs_als`).
 * The totals answer `GET <prefix>/__bench/units`; the bench reads them before and after a scenario.
 */
import { AsyncLocalStorage } from "node:async_hooks";

/** The meter's path, under any prefix (a probe answers only under its own route). */
export const UNITS_PATH = "/__bench/units";

/** One isolate's totals since it started. */
export const units = {
  workerRequests: 0,
  doRequests: 0,
  doRequestsByClass: {},
  doAlarms: 0,
  doWebSocketMessages: 0,
  d1Queries: 0,
  d1Calls: 0,
  d1QueriesBehind: 0,
  d1CallsBehind: 0,
  d1RowsRead: 0,
  d1RowsWritten: 0,
  doRowsRead: 0,
  doRowsWritten: 0,
};

/**
 * What runs now, and everything it awaits or schedules: `{ behind }` while an alarm handler, a
 * Workflow's run or a cron handler runs; `{ inCall }` inside a call an object is serving (its own
 * method calls are not requests to it). A call from outside starts with neither.
 */
const phase = new AsyncLocalStorage();
/** Runs `fn` with `flags` added to the current context. */
const within = (flags, fn) => phase.run({ ...phase.getStore(), ...flags }, fn);
/** Runs `fn` as work behind the answers. */
const behind = (fn) => within({ behind: true, inCall: true }, fn);

const patched = new WeakSet();
/** Replaces `owner[name]` (a method) with `wrap(original)`, once per owner. */
function patchMethod(owner, name, wrap) {
  const original = owner?.[name];
  if (typeof original !== "function" || patched.has(original)) return;
  const replacement = wrap(original);
  patched.add(replacement);
  Object.defineProperty(owner, name, { value: replacement, writable: true, configurable: true });
}

/** The object on `value`'s prototype chain that defines `name` itself. */
function definer(value, name) {
  for (let proto = value; proto; proto = Object.getPrototypeOf(proto)) {
    if (Object.hasOwn(proto, name)) return proto;
  }
  return undefined;
}

// ------------------------------------------------------------------ D1

/**
 * Debug listing (bench/README.md, "Where D1 queries come from"): the SQL of every D1 statement
 * made on a request path (not behind the answers), counted by its text. `_send(endpoint, query,
 * params, …)` gets one SQL string, or one per statement of a batch. Answers `GET <prefix>/__bench/d1-sql`.
 */
export const D1_SQL_PATH = "/__bench/d1-sql";
export const d1SqlOnPath = {};

function countD1Sql(args) {
  if (phase.getStore()?.behind) return;
  const query = args.find((a) => typeof a === "string" && /\s/.test(a)) ?? args.find((a) => Array.isArray(a));
  const statements = Array.isArray(query) ? query : query === undefined ? [] : [query];
  for (const sql of statements) {
    if (typeof sql !== "string") continue;
    const key = sql.replace(/\s+/g, " ").trim().slice(0, 240);
    d1SqlOnPath[key] = (d1SqlOnPath[key] ?? 0) + 1;
  }
}

/** Adds one D1 answer (`_send`'s: one result, or one per statement of a batch) to the totals. */
export function countD1Answer(answer) {
  const results = Array.isArray(answer) ? answer : [answer];
  units.d1Calls += 1;
  units.d1Queries += results.length;
  if (phase.getStore()?.behind) {
    units.d1CallsBehind += 1;
    units.d1QueriesBehind += results.length;
  }
  for (const result of results) {
    units.d1RowsRead += result?.meta?.rows_read ?? 0;
    units.d1RowsWritten += result?.meta?.rows_written ?? 0;
  }
}

/**
 * Every D1 call of the binding (prepare().first/all/run/raw, batch, exec, sessions) goes through
 * its session class's `_send` (or `_queryOrThrow` under the d1_binding_jsrpc flag), which gets
 * each statement's `meta` even where the public method drops it (`first`, `raw`): patched there.
 */
function meterD1(db) {
  const session = db?.alwaysPrimarySession;
  if (!session) return;
  patchMethod(
    definer(session, "_send"),
    "_send",
    (send) =>
      async function (...args) {
        countD1Sql(args);
        const answer = await send.apply(this, args);
        countD1Answer(answer);
        return answer;
      },
  );
  patchMethod(
    definer(session, "_queryOrThrow"),
    "_queryOrThrow",
    (query) =>
      async function (...args) {
        countD1Sql(args);
        const answer = await query.apply(this, args);
        countD1Answer(answer?.results ?? answer);
        return answer;
      },
  );
}

// ------------------------------------------------------------------ Durable Object requests

/** Handlers the runtime calls that are billed apart (alarms, WebSocket messages) or not at all. */
const NOT_CALLS = new Set(["constructor", "alarm", "webSocketMessage", "webSocketClose", "webSocketError"]);

/**
 * Every method of `Base` (its prototype chain, `fetch` included) counts one request to an object
 * of `className` when it is entered from outside (no `inCall` in the context), and runs inside a
 * call. Counted where the object runs, so calls through a stub need no wrapper: a stub stays the
 * runtime's own, which may be handed to another call as an argument.
 */
function countCalls(Metered, Base, className) {
  const names = new Set();
  for (let proto = Base.prototype; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      const descriptor = Object.getOwnPropertyDescriptor(proto, name);
      if (!NOT_CALLS.has(name) && typeof descriptor?.value === "function") names.add(name);
    }
  }
  for (const name of names) {
    const original = Base.prototype[name];
    Object.defineProperty(Metered.prototype, name, {
      value(...args) {
        if (phase.getStore()?.inCall) return original.apply(this, args);
        units.doRequests += 1;
        units.doRequestsByClass[className] = (units.doRequestsByClass[className] ?? 0) + 1;
        return within({ inCall: true }, () => original.apply(this, args));
      },
      writable: true,
      configurable: true,
    });
  }
}

// ------------------------------------------------------------------ object storage

let pendingCursors = [];
function settleCursors() {
  const cursors = pendingCursors;
  pendingCursors = [];
  for (const { cursor, sql } of cursors) {
    units.doRowsRead += cursor.rowsRead;
    units.doRowsWritten += cursor.rowsWritten;
    // The same debug listing as D1's (BENCH_D1_SQL): object rows read and written, by statement.
    if (!sql) continue;
    const statement = sql.replace(/\s+/g, " ").trim().slice(0, 200);
    for (const [kind, rows] of [
      ["read", cursor.rowsRead],
      ["written", cursor.rowsWritten],
    ]) {
      if (rows > 0)
        d1SqlOnPath[`object rows ${kind} by: ${statement}`] = (d1SqlOnPath[`object rows ${kind} by: ${statement}`] ?? 0) + rows;
    }
  }
}

/** Adds `n` rows read (`written` false) or written by a key-value or alarm method. */
const kvRows = (n, written) => {
  if (written) units.doRowsWritten += n;
  else units.doRowsRead += n;
};
/** How many keys a key-value call names: an array of keys, an object of entries, or one key. */
export const keysIn = (first, entriesForm) =>
  Array.isArray(first) ? first.length : entriesForm && first && typeof first === "object" ? Object.keys(first).length : 1;
/** How many entries a `list` answered: a Map (async) or an iterable (sync). */
const listed = (answer) => (answer instanceof Map ? answer.size : answer ? [...answer].length : 0);

function meterStorage(storage) {
  const sql = storage?.sql;
  if (sql) {
    patchMethod(
      definer(sql, "exec"),
      "exec",
      (exec) =>
        function (...args) {
          const cursor = exec.apply(this, args);
          if (pendingCursors.length === 0) queueMicrotask(settleCursors);
          pendingCursors.push({ cursor, sql: typeof args[0] === "string" ? args[0] : null });
          return cursor;
        },
    );
  }
  const proto = definer(storage, "get");
  patchMethod(
    proto,
    "get",
    (get) =>
      async function (...args) {
        kvRows(keysIn(args[0], false), false);
        return get.apply(this, args);
      },
  );
  for (const name of ["put", "delete"]) {
    patchMethod(
      proto,
      name,
      (original) =>
        async function (...args) {
          kvRows(keysIn(args[0], name === "put"), true);
          return original.apply(this, args);
        },
    );
  }
  patchMethod(
    proto,
    "list",
    (list) =>
      async function (...args) {
        const answer = await list.apply(this, args);
        kvRows(listed(answer), false);
        return answer;
      },
  );
  patchMethod(
    definer(storage, "setAlarm"),
    "setAlarm",
    (setAlarm) =>
      function (...args) {
        kvRows(1, true);
        return setAlarm.apply(this, args);
      },
  );
  const kv = storage?.kv;
  if (kv) {
    const kvProto = definer(kv, "get");
    patchMethod(
      kvProto,
      "get",
      (get) =>
        function (...args) {
          kvRows(keysIn(args[0], false), false);
          return get.apply(this, args);
        },
    );
    for (const name of ["put", "delete"]) {
      patchMethod(
        kvProto,
        name,
        (original) =>
          function (...args) {
            kvRows(1, true);
            return original.apply(this, args);
          },
      );
    }
    patchMethod(
      kvProto,
      "list",
      (list) =>
        function (...args) {
          const entries = [...list.apply(this, args)];
          kvRows(entries.length, false);
          return entries[Symbol.iterator]();
        },
    );
  }
}

// ------------------------------------------------------------------ the entry

/** Meters `env`'s D1, once per isolate. */
function meterEnv(env) {
  meterD1(env?.DB);
}

const json = (value) => new Response(JSON.stringify(value), { headers: { "content-type": "application/json" } });

/**
 * The exports of a metered worker: `inner`'s exports, with its default handler counting Worker
 * requests and answering the meter's path, and each object class (`objects`: binding → class
 * name) and Workflow class (`workflows`: class names) subclassed to meter its storage and env.
 */
export function metered(inner, { objects = {}, workflows = [] } = {}) {
  const handler = inner.default ?? {};
  const wrapped = {};
  for (const [name, value] of Object.entries(handler)) {
    if (typeof value !== "function") continue;
    wrapped[name] = (first, env, ctx) => {
      meterEnv(env);
      if (name === "fetch") {
        if (new URL(first.url).pathname.endsWith(UNITS_PATH)) {
          settleCursors();
          return json(units);
        }
        if (new URL(first.url).pathname.endsWith(D1_SQL_PATH)) return json(d1SqlOnPath);
        units.workerRequests += 1;
      }
      if (name === "scheduled") return behind(() => value.call(handler, first, env, ctx));
      return value.call(handler, first, env, ctx);
    };
  }
  const classes = {};
  for (const className of new Set(Object.values(objects))) {
    const Base = inner[className];
    if (typeof Base !== "function") continue;
    const Metered = class extends Base {
      constructor(ctx, env) {
        meterEnv(env);
        meterStorage(ctx.storage);
        // What the constructor starts (blockConcurrencyWhile, loads) runs inside, not as calls.
        within({ inCall: true }, () => super(ctx, env));
      }
    };
    countCalls(Metered, Base, className);
    countHandler(
      Metered,
      Base,
      "alarm",
      () => {
        units.doAlarms += 1;
        units.doRequests += 1;
        // Apart from the class's calls: an alarm may belong to work an earlier scenario left.
        const key = `${className} alarms`;
        units.doRequestsByClass[key] = (units.doRequestsByClass[key] ?? 0) + 1;
      },
      true,
    );
    countHandler(Metered, Base, "webSocketMessage", () => {
      units.doWebSocketMessages += 1;
    });
    Object.defineProperty(Metered, "name", { value: className });
    classes[className] = Metered;
  }
  for (const className of workflows) {
    const Base = inner[className];
    if (typeof Base !== "function") continue;
    const Metered = class extends Base {
      constructor(ctx, env) {
        meterEnv(env);
        super(ctx, env);
      }
    };
    countHandler(Metered, Base, "run", () => {}, true);
    classes[className] = Metered;
  }
  return { default: wrapped, classes };
}

/**
 * `Metered.prototype[name]` counts (`count`) then runs `Base`'s handler, if `Base` has one
 * (`isBehind`: as work behind the answers).
 */
function countHandler(Metered, Base, name, count, isBehind = false) {
  const original = Base.prototype[name];
  if (typeof original !== "function") return;
  Object.defineProperty(Metered.prototype, name, {
    value(...args) {
      count();
      return isBehind ? behind(() => original.apply(this, args)) : original.apply(this, args);
    },
    writable: true,
    configurable: true,
  });
}
