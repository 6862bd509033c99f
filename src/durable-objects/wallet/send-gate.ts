import type { Outcome } from "../../lib/errors";
import { IDEMPOTENCY_RETENTION_MS } from "../../lib/idempotency";
import { hitStoredWindow, type RateLimitDecision, rateLimitedRefusal } from "../../lib/sliding-window";
import type { MessageKeyRow } from "./wallet-schema";

const MESSAGE_RATE_BUCKETS_KEY = "message_rate_buckets";

export type SendGateCommand = {
  /** The caller's Idempotency-Key and the fingerprint of its request, or null for an unkeyed send. */
  key: { key: string; fingerprint: string } | null;
  /** Where the send goes (`chat:<id>` or `direct:<user id>`), for the record. */
  target: string;
  ratePerMinute: number;
};

/**
 * `new`: the key is now this request's (release it if the chat refuses the send); `retry`: the
 * key already named this same request (its chat holds the outcome or will run it: not counted
 * against the limit, which a replay never is); `none`: no key.
 */
export type SendGateAnswer = { claim: "new" | "retry" | "none"; rateLimit: RateLimitDecision | null };

/**
 * The owner's message sends as they pass through the owner's object, one call per send (no D1):
 * the owner's key registry (a key names one request of its owner across all endpoints: a key of
 * a transfer is refused here, a key registered here is refused for a transfer) and the per-minute
 * message limit (API.md §1), counted after the key lookup so a replay is never counted. The
 * send's outcome itself is stored in its chat object, with the message.
 */
export class SendGate {
  constructor(
    private readonly storage: DurableObjectStorage,
    /** Whether a key names one of the owner's transfers (sender.ts). */
    private readonly isTransferKey: (key: string) => boolean,
    /** Asks for the alarm at `at` (a key expires then: recovery.ts). */
    private readonly wakeAt: (at: number) => void,
  ) {}

  admit(cmd: SendGateCommand, now: number): Outcome<SendGateAnswer> {
    return this.storage.transactionSync((): Outcome<SendGateAnswer> => {
      if (cmd.key) {
        const known = this.knownKey(cmd.key.key, now);
        if (known)
          return known.fingerprint === cmd.key.fingerprint ? { ok: true, value: { claim: "retry", rateLimit: null } } : reused();
        if (this.isTransferKey(cmd.key.key)) return reused();
      }
      const rateLimit = hitStoredWindow(this.storage.kv, MESSAGE_RATE_BUCKETS_KEY, cmd.ratePerMinute, now);
      if (!rateLimit.allowed) return rateLimitedRefusal(rateLimit);
      if (!cmd.key) return { ok: true, value: { claim: "none", rateLimit } };
      this.storage.sql.exec(
        "INSERT OR REPLACE INTO message_keys (key, fingerprint, target, created_at) VALUES (?, ?, ?, ?)",
        cmd.key.key,
        cmd.key.fingerprint,
        cmd.target,
        now,
      );
      this.wakeAt(now + IDEMPOTENCY_RETENTION_MS + 1);
      return { ok: true, value: { claim: "new", rateLimit } };
    });
  }

  /** Gives a key back after its send was refused before executing (API.md §1: such requests keep no key). */
  release(key: string, fingerprint: string): void {
    this.storage.sql.exec("DELETE FROM message_keys WHERE key = ? AND fingerprint = ?", key, fingerprint);
  }

  /** Whether `key` names a message send of the owner within retention. */
  holds(key: string, now: number): boolean {
    return this.knownKey(key, now) !== undefined;
  }

  private knownKey(key: string, now: number): MessageKeyRow | undefined {
    const row = this.storage.sql.exec<MessageKeyRow>("SELECT * FROM message_keys WHERE key = ?", key).toArray()[0];
    return row && row.created_at >= now - IDEMPOTENCY_RETENTION_MS ? row : undefined;
  }
}

const reused = (): Outcome<never> => ({
  ok: false,
  code: "idempotency_key_reused",
  details: ["This Idempotency-Key was already used with a different request body"],
});
