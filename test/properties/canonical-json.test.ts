import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../src/lib/idempotency";

/**
 * Properties of `canonicalJson` (src/lib/idempotency.ts), the body half of an Idempotency-Key's
 * fingerprint: the same request must give the same text whatever order its keys came in, and two
 * different requests must never give the same text (else a key would replay another request's
 * outcome). "The same request" is JSON's: numbers compare as numbers (`-0` is `0`), and an object
 * member whose value is null is the member left out (every optional field accepts null as absent).
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The value canonicalJson stands for: null members dropped at every depth (no key reordering here). */
function withoutNullMembers(value: Json): Json {
  if (Array.isArray(value)) return value.map(withoutNullMembers);
  if (value !== null && typeof value === "object") {
    // fromEntries: a "__proto__" key stays an own member, as JSON.parse makes it.
    return Object.fromEntries(Object.entries(value).flatMap(([k, v]) => (v === null ? [] : [[k, withoutNullMembers(v)]])));
  }
  return Object.is(value, -0) ? 0 : value;
}

/** The same value with every object's keys in another order (`order` picks it). */
function reordered(value: Json, order: (keys: string[]) => string[]): Json {
  if (Array.isArray(value)) return value.map((v) => reordered(v, order));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(order(Object.keys(value)).map((k) => [k, reordered(value[k] as Json, order)]));
  }
  return value;
}

/** Structural equality of JSON values, objects compared as sets of members. */
function sameJson(a: Json, b: Json): boolean {
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => sameJson(v, b[i] as Json));
  }
  if (a !== null && b !== null && typeof a === "object" && typeof b === "object") {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && sameJson(a[k] as Json, b[k] as Json));
  }
  return a === b; // -0 === 0, as JSON means
}

/** Any JSON value (what a request body parses to), unicode strings and keys included. */
const anyJson = fc.jsonValue({ stringUnit: "binary" }) as fc.Arbitrary<Json>;

/**
 * JSON values from a small world (few keys, few leaves, keys and strings made of JSON's own
 * punctuation), so that two draws are often equal or nearly so, and an unescaped key or string
 * would collide with another value.
 */
const smallJson: fc.Arbitrary<Json> = fc.letrec<{ value: Json }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constantFrom<Json>(null, true, false, 0, 1, -1, 0.5),
    fc.string({ unit: fc.constantFrom("a", '"', ":", ",", "{", "}", "\\"), maxLength: 3 }),
    fc.array(tie("value"), { maxLength: 3 }),
    fc.dictionary(fc.string({ unit: fc.constantFrom("a", "b", '"', ":", ","), maxLength: 2 }), tie("value"), { maxKeys: 3 }),
  ),
})).value;

describe("canonicalJson (properties)", () => {
  it("does not depend on the order of keys, at any depth", () => {
    fc.assert(
      fc.property(anyJson, fc.func(fc.integer()), (value, rank) => {
        const shuffle = (keys: string[]) => [...keys].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : 1));
        expect(canonicalJson(reordered(value, shuffle))).toBe(canonicalJson(value));
        expect(canonicalJson(reordered(value, (keys) => [...keys].reverse()))).toBe(canonicalJson(value));
      }),
      { numRuns: 500 },
    );
  });

  it("is JSON that parses back to the value, null members left out", () => {
    fc.assert(
      fc.property(anyJson, (value) => {
        const text = canonicalJson(value);
        expect(JSON.parse(text)).toEqual(withoutNullMembers(value));
        expect(canonicalJson(JSON.parse(text))).toBe(text); // and is its own canonical form
      }),
      { numRuns: 500 },
    );
  });

  it("gives two values the same text exactly when they are the same request", () => {
    fc.assert(
      fc.property(smallJson, smallJson, (a, b) => {
        const same = sameJson(withoutNullMembers(a), withoutNullMembers(b));
        expect(canonicalJson(a) === canonicalJson(b)).toBe(same);
      }),
      { numRuns: 3000 },
    );
  });

  it("tells a value from the same value with one leaf changed", () => {
    fc.assert(
      fc.property(anyJson, fc.jsonValue({ maxDepth: 0 }) as fc.Arbitrary<Json>, fc.nat(), (value, leaf, pick) => {
        // The leaves of `value` that are not null members, by path; replace one with a different one.
        const leaves: (string | number)[][] = [];
        const walk = (v: Json, at: (string | number)[]) => {
          if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...at, i]));
          else if (v !== null && typeof v === "object") {
            for (const [k, x] of Object.entries(v)) if (x !== null) walk(x, [...at, k]);
          } else leaves.push(at);
        };
        walk(value, []);
        const path = leaves[pick % Math.max(1, leaves.length)];
        if (!path) return;
        const replace = (v: Json, rest: (string | number)[]): Json => {
          if (rest.length === 0) return leaf;
          const [head, ...tail] = rest;
          if (Array.isArray(v)) return v.map((x, i) => (i === head ? replace(x, tail) : x));
          const o = v as { [key: string]: Json };
          return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, k === head ? replace(x, tail) : x]));
        };
        const changed = replace(value, path);
        fc.pre(!sameJson(withoutNullMembers(changed), withoutNullMembers(value)));
        expect(canonicalJson(changed)).not.toBe(canonicalJson(value));
      }),
      { numRuns: 500 },
    );
  });
});
