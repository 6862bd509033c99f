import { DurableObject } from "cloudflare:workers";

/** One per user: holds that user's WebSocket connections (hibernation API); see the realtime feature. */
export class RealtimeDO extends DurableObject<Env> {}
