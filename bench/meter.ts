import { readFileSync } from "node:fs";
import path from "node:path";

/** The module bench/units.js, served beside a metered worker's own modules under this name. */
const UNITS_MODULE = "__bench_units.js";

/**
 * The entry module of a metered worker (bench/units.js) and the meter itself, as Miniflare
 * modules in `dir`, to be served first, before the worker's own modules (`inner`: its main
 * module's name in `dir`), which stay byte for byte what they are: the entry re-exports every
 * export of `inner`, its default handler and its object (`objects`: binding → class) and
 * Workflow classes wrapped by `metered`.
 */
export function meteredEntry(dir: string, inner: string, objects: Record<string, string>, workflows: string[]) {
  const classes = [...new Set([...Object.values(objects), ...workflows])].filter(Boolean);
  const entry = [
    `import * as inner from "./${inner}";`,
    `import { metered } from "./${UNITS_MODULE}";`,
    `const out = metered(inner, ${JSON.stringify({ objects, workflows })});`,
    `export * from "./${inner}";`,
    "export default out.default;",
    ...classes.map((name) => `export const ${name} = out.classes.${name} ?? inner.${name};`),
  ].join("\n");
  return [
    { type: "ESModule" as const, path: path.join(dir, "__bench_entry.js"), contents: entry },
    {
      type: "ESModule" as const,
      path: path.join(dir, UNITS_MODULE),
      contents: readFileSync(path.join(import.meta.dirname, "units.js"), "utf8"),
    },
  ];
}
