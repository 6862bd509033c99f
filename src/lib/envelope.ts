import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { type ErrorCode, type ErrorStatus, GENERIC_ERROR_MESSAGES } from "./errors";
import { REPLAYED_HEADER } from "./idempotency";

/** The timestamp every example in the document shows (the seed's). */
export const EXAMPLE_TIMESTAMP = "2026-01-15T10:30:00.000Z";

/** The response envelope of API.md §1; every JSON body the API sends is built here. */
export type SuccessEnvelope<T, S extends number> = {
  isSuccess: true;
  statusCode: S;
  data: T;
  errors: null;
  timestamp: string;
};

export type ErrorEnvelope = {
  isSuccess: false;
  statusCode: ErrorStatus;
  data: null;
  errors: string[];
  code: ErrorCode;
  timestamp: string;
};

export function successBody<T, S extends number>(data: T, status: S): SuccessEnvelope<T, S> {
  return { isSuccess: true, statusCode: status, data, errors: null, timestamp: new Date().toISOString() };
}

export function errorBody(status: ErrorStatus, code: ErrorCode, details: string[] = []): ErrorEnvelope {
  return {
    isSuccess: false,
    statusCode: status,
    data: null,
    errors: [GENERIC_ERROR_MESSAGES[status], ...details],
    code,
    timestamp: new Date().toISOString(),
  };
}

/** Answers `data` in the success envelope with `status` (typed so zod-openapi checks it against the route). */
export function ok<T, S extends ContentfulStatusCode = 200>(c: Context, data: T, status?: S) {
  const code = (status ?? 200) as S;
  return c.json(successBody(data, code), code);
}

/**
 * A response produced by an object (fresh or stored): its exact envelope text, so a replay is the
 * original byte for byte, marked `Idempotent-Replayed` when it is one. Typed `never` because a
 * pre-serialized body cannot be expressed as zod-openapi's typed JSON response.
 */
export function exactReply(c: Context, reply: { status: number; body: string; replayed: boolean }): never {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (reply.replayed) headers[REPLAYED_HEADER] = "true";
  return c.body(reply.body, reply.status as ContentfulStatusCode, headers) as never;
}
