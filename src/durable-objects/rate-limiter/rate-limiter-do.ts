import { DurableObject } from "cloudflare:workers";

/** One limiter per key (`idFromName("<scope>:<key>")`); see the identity feature for its behaviour. */
export class RateLimiterDO extends DurableObject<Env> {}
