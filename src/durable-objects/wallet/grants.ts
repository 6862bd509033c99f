import { successBody } from "../../lib/envelope";
import { invariant, type Outcome, refuse } from "../../lib/errors";
import { IDEMPOTENCY_RETENTION_MS } from "../../lib/idempotency";
import { newId } from "../../lib/ids";
import type { Grant, Wallet } from "../../schemas/wallet";
import type { AuditOutbox } from "./audit-outbox";
import type { Ledger } from "./ledger";
import { toWallet } from "./views";
import type { GrantRow } from "./wallet-schema";
import type { GrantCommand, StoredReply } from "./wallet-types";

export type GrantAnswer = Outcome<{ reply: StoredReply; wallet: Wallet | null }>;

/**
 * A grant key as this object stores it: prefixed by the admin who sent it, so two admins' same key
 * never meet here (API.md §1: across scopes a key is not compared). That one admin's key names one
 * user is the admin's own object's word (grant-claims.ts), asked before the grant comes here.
 */
const scopeOf = (command: Pick<GrantCommand, "grantedBy" | "idempotencyKey">): string | null =>
  command.idempotencyKey === null ? null : `${command.grantedBy}:${command.idempotencyKey}`;

/**
 * Admin grants: credits from nowhere, recorded as a `grant` entry with its audit row (in the
 * outbox, same transaction); idempotent per (admin, key): this wallet keeps the grant's outcome
 * under its key, the admin's object the claim that the key names this user and request
 * (grant-claims.ts; API.md §1: one scope per admin for grants). A key with a stored outcome answers it
 * before anything else, the admin check included (the caller hands its refusal in, as a
 * transfer's pre-check does), so an admin whose 201 was lost and who retries after losing the role
 * still learns the grant happened. A grant refused before it executed, or failing (one
 * transaction: a 5xx), keeps no key.
 */
export class Grants {
  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly ledger: Ledger,
    private readonly wakeAt: (at: number) => void,
    /** The grant's audit row goes here, in the grant's own transaction. */
    private readonly audit: AuditOutbox,
  ) {}

  grant(command: GrantCommand, now: number): GrantAnswer {
    return this.storage.transactionSync(() => {
      const scopedKey = scopeOf(command);
      const known = this.stored(command);
      if (known) return known;
      if (command.refusal) return { ok: false, code: command.refusal.code, details: command.refusal.details };
      this.ledger.open(command.userId, command.signupCredits, now);
      return { ok: true, value: this.apply(command, scopedKey, now) };
    });
  }

  /**
   * The stored outcome of the command's key (its 201 replayed, or 409 for another body); null when
   * the key has none (or there is no key). Read first, so a replay is answered here and nowhere else.
   */
  stored(command: Pick<GrantCommand, "grantedBy" | "idempotencyKey" | "fingerprint">): GrantAnswer | null {
    const scopedKey = scopeOf(command);
    const known = scopedKey === null ? undefined : this.byKey(scopedKey);
    if (!known) return null;
    if (known.fingerprint !== command.fingerprint) {
      return refuse("idempotency_key_reused", "This Idempotency-Key was already used with a different request body");
    }
    invariant(known.response !== null, `grant ${known.grant_id} keeps its key without its reply`);
    return { ok: true, value: { reply: { status: 201, body: known.response, replayed: true }, wallet: null } };
  }

  private byKey(scopedKey: string): GrantRow | undefined {
    return this.storage.sql.exec<GrantRow>("SELECT * FROM grants WHERE idempotency_key = ?", scopedKey).toArray()[0];
  }

  private apply(command: GrantCommand, scopedKey: string | null, now: number): { reply: StoredReply; wallet: Wallet } {
    const grantId = newId(now);
    const balance = this.ledger.credit(grantId, "grant", command.amount, { counterpartyId: null, note: command.reason }, now);
    const grant: Grant = { grantId, userId: command.userId, amount: command.amount, balance };
    const body = JSON.stringify(successBody(grant, 201));
    this.storage.sql.exec(
      "INSERT INTO grants (grant_id, idempotency_key, fingerprint, granted_by, amount, reason, balance_after, response, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      grantId,
      scopedKey,
      command.fingerprint,
      command.grantedBy,
      command.amount,
      command.reason,
      balance,
      scopedKey === null ? null : body,
      now,
    );
    this.audit.add(
      {
        id: grantId,
        actorId: command.grantedBy,
        action: "grant",
        targetId: command.userId,
        detail: { amount: command.amount, reason: command.reason },
        requestId: command.requestId,
        createdAt: now,
      },
      now,
    );
    // A grant ends when it is applied: its key is kept 24 h from now (API.md §1).
    if (scopedKey !== null) this.wakeAt(now + IDEMPOTENCY_RETENTION_MS);
    return { reply: { status: 201, body, replayed: false }, wallet: toWallet(this.ledger.wallet()) };
  }
}
