import { z } from "@hono/zod-openapi";

/**
 * ObjectId-style ids (API.md "IDs"): 4 bytes of Unix seconds, 5 random bytes fixed per isolate,
 * 3 bytes of a counter that starts at a random value. Lexical order = creation order to the second.
 */
// Drawn on first use: workerd forbids random values in global scope (the Worker would not start).
let processBytes: Uint8Array | undefined;
let counter = 0;

const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");

export function newId(now: number = Date.now()): string {
  if (!processBytes) {
    processBytes = crypto.getRandomValues(new Uint8Array(5));
    counter = crypto.getRandomValues(new Uint32Array(1))[0]! & 0xffffff;
  }
  counter = (counter + 1) & 0xffffff;
  const seconds = Math.floor(now / 1000);
  let out = hex(seconds >>> 0, 8);
  for (const b of processBytes) out += hex(b, 2);
  return out + hex(counter, 6);
}

export const ID_PATTERN = /^[0-9a-f]{24}$/;

/** The id schema for params, queries and bodies: anything else is 400, never 404. */
export const idSchema = (name = "id") =>
  z
    .string()
    .regex(ID_PATTERN, { message: "must be a 24-character lowercase hex id" })
    .openapi({
      example: "64d15f9e2e6c8f4d5a123456",
      description: `The ${name} (24 lowercase hex characters).`,
      minLength: 24,
      maxLength: 24,
    });
