import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

/**
 * Durable Objects reach the outside only through what their caller hands them (ARCHITECTURE.md
 * §10): no file under src/durable-objects/ imports from src/services/, whose modules reach D1,
 * realtime and other objects directly.
 */
const root = path.join(import.meta.dirname, "..", "..");
const objectsDir = path.join(root, "src", "durable-objects");
const servicesDir = path.join(root, "src", "services");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith(".ts") ? [full] : [];
  });
}

/** Every module specifier a file imports or re-exports (static and dynamic). */
export function importedSpecifiers(source: string): string[] {
  const found: string[] = [];
  const pattern =
    /\b(?:import|export)\s[^;]*?from\s*["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']\s*\)|\bimport\s+["']([^"']+)["']/gs;
  for (const match of source.matchAll(pattern)) found.push(match[1] ?? match[2] ?? match[3] ?? "");
  return found;
}

export function importsFromServices(file: string, source: string): string[] {
  return importedSpecifiers(source).filter((specifier) => {
    if (!specifier.startsWith(".")) return false;
    const target = path.resolve(path.dirname(file), specifier);
    return target === servicesDir || target.startsWith(`${servicesDir}${path.sep}`);
  });
}

describe("object boundaries", () => {
  it("no file under src/durable-objects/ imports from src/services/", () => {
    const files = sourceFiles(objectsDir);
    expect(files.length).toBeGreaterThan(5);
    const offenders = files.flatMap((file) =>
      importsFromServices(file, readFileSync(file, "utf8")).map((specifier) => `${path.relative(root, file)} → ${specifier}`),
    );
    expect(offenders).toEqual([]);
  });

  it("the check sees every form of import (so it cannot pass by missing one)", () => {
    const file = path.join(objectsDir, "wallet", "example.ts");
    const source = [
      'import { a } from "../../services/chats";',
      'import type { B } from "../../services/messages";',
      'export { c } from "../../services/realtime";',
      'const d = await import("../../services/users");',
      'import "../../services/presence";',
      'import { ok } from "../../lib/errors";',
      'import {\n  multi,\n  line,\n} from "../../services/transfers";',
    ].join("\n");
    expect(importsFromServices(file, source).sort()).toEqual([
      "../../services/chats",
      "../../services/messages",
      "../../services/presence",
      "../../services/realtime",
      "../../services/transfers",
      "../../services/users",
    ]);
  });
});

/** The services each service imports (its relative imports that land in src/services/), by path. */
function serviceGraph(files: string[], read: (file: string) => string): Map<string, string[]> {
  return new Map(
    files.map((file) => [
      file,
      importsFromServices(file, read(file)).map((specifier) => {
        const target = path.resolve(path.dirname(file), specifier);
        return target.endsWith(".ts") ? target : `${target}.ts`;
      }),
    ]),
  );
}

/** A loop of imports (as file paths, first repeated last), or null when the graph has none. */
export function importLoop(graph: Map<string, string[]>): string[] | null {
  const done = new Set<string>();
  const visit = (file: string, trail: string[]): string[] | null => {
    if (trail.includes(file)) return [...trail.slice(trail.indexOf(file)), file];
    if (done.has(file)) return null;
    for (const next of graph.get(file) ?? []) {
      const loop = visit(next, [...trail, file]);
      if (loop) return loop;
    }
    done.add(file);
    return null;
  };
  for (const file of graph.keys()) {
    const loop = visit(file, []);
    if (loop) return loop;
  }
  return null;
}

describe("services call in one direction", () => {
  it("no service imports one that (through others) imports it back", () => {
    const files = sourceFiles(servicesDir);
    expect(files.length).toBeGreaterThan(10);
    const loop = importLoop(serviceGraph(files, (file) => readFileSync(file, "utf8")));
    expect(loop?.map((file) => path.relative(root, file)) ?? null).toBeNull();
  });

  it("the check finds a loop when there is one (so it cannot pass by missing it)", () => {
    const [a, b, c] = ["a.ts", "b.ts", "c.ts"].map((name) => path.join(servicesDir, name)) as [string, string, string];
    const sources: Record<string, string> = {
      [a]: 'import { b } from "./b";',
      [b]: 'import { c } from "./c";',
      [c]: 'import { a } from "./a";',
    };
    expect(importLoop(serviceGraph([a, b, c], (file) => sources[file] ?? ""))).toEqual([a, b, c, a]);
    sources[c] = 'import { ok } from "../lib/errors";';
    expect(importLoop(serviceGraph([a, b, c], (file) => sources[file] ?? ""))).toBeNull();
  });
});
