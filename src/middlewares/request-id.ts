import { requestId as honoRequestId } from "hono/request-id";

/**
 * Every response carries X-Request-Id: the caller's own if it sent a sane one (word characters,
 * `-` and `=`, at most 128), else a new UUID. Hono's middleware; `c.var.requestId` reads it.
 */
export const requestId = honoRequestId({ limitLength: 128 });
