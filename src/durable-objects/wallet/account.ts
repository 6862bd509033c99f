import { invariant } from "../../lib/errors";
import type { AccountRow } from "./wallet-schema";

/**
 * The user's account facts, owned here (ARCHITECTURE.md §11): status, role and the users this
 * user blocked. Every change bumps one per-user version, monotonic, and queues what it owes in
 * the same transaction: the D1 index row (`facts_index_outbox`) and the chats that must hear
 * (`facts_walk` for a status change: every chat of the user; `facts_targets` for a block: the
 * pair's direct chat). facts-outbox.ts delivers them. Every method runs inside the caller's
 * `transactionSync`.
 */

export type AccountStatus = AccountRow["status"];
export type AccountRole = AccountRow["role"];

/** The audit row of a status change, written to D1 with the index row (one batch, never one without the other). */
export type AuditNote = { id: string; actorId: string; requestId: string; detail: Record<string, unknown>; at: number };

/** One version's D1 index write, as the outbox keeps it. */
export type IndexChange =
  | { kind: "status"; status: AccountStatus; reason: string | null; audit: AuditNote | null }
  | { kind: "role"; role: AccountRole }
  | { kind: "block"; blockedId: string; blocked: boolean };

export type IndexEntry = { version: number; change: IndexChange };

/** The owner's facts as a chat needs them (answered with each admission to a chat): the status, and the blocks of the listed users, each with its version. */
export type AccountFacts = {
  userId: string;
  status: AccountStatus;
  role: AccountRole;
  version: number;
  blocks: { blockedId: string; blocked: boolean; version: number }[];
};

/** One user's block of another, at the blocker's version (the copy a sender keeps: `peer_facts`). */
export type PeerFact = { blocked: boolean; version: number };

/** A status change's answer: the account after it, and whether it changed anything. */
export type AccountState = { userId: string; status: AccountStatus; role: AccountRole; version: number };

/** The target of the block facts of the pair (this user, `otherId`): their direct chat, resolved when delivered. */
export const pairTarget = (otherId: string) => `pair:${otherId}`;
export const chatTarget = (chatId: string) => `chat:${chatId}`;

export class Account {
  constructor(private readonly sql: SqlStorage) {}

  row(): AccountRow | undefined {
    return this.sql.exec<AccountRow>("SELECT user_id, status, role, version, opened_at FROM account WHERE id = 1").toArray()[0];
  }

  /**
   * Creates the account at version 0 with what the directory holds at registration (the D1 row
   * was written with the same values), or checks the object is this user's.
   */
  open(userId: string, initial: { role: AccountRole; status: AccountStatus }, now: number): AccountRow {
    const existing = this.row();
    if (existing) {
      invariant(existing.user_id === userId, `account of ${existing.user_id} addressed as ${userId}`);
      return existing;
    }
    this.sql.exec(
      "INSERT INTO account (id, user_id, status, role, version, opened_at) VALUES (1, ?, ?, ?, 0, ?)",
      userId,
      initial.status,
      initial.role,
      now,
    );
    const row = this.row();
    invariant(row, "account not written");
    return row;
  }

  state(): AccountState {
    const row = this.row();
    invariant(row, "account used before it was opened");
    return { userId: row.user_id, status: row.status, role: row.role, version: row.version };
  }

  /** Suspends or reinstates; a repeat of the current status changes nothing and queues nothing. */
  setStatus(status: AccountStatus, reason: string | null, audit: AuditNote | null, now: number): AccountState {
    const current = this.state();
    if (current.status === status && audit === null) return current;
    const version = this.bump(now, { kind: "status", status, reason, audit });
    this.sql.exec("UPDATE account SET status = ? WHERE id = 1", status);
    if (current.status !== status) this.walkAllChats(now);
    return { ...current, status, version };
  }

  /** Makes or unmakes an admin (the operator's command); a repeat of the current role changes nothing and queues nothing. */
  setRole(role: AccountRole, now: number): AccountState {
    const current = this.state();
    if (current.role === role) return current;
    const version = this.bump(now, { kind: "role", role });
    this.sql.exec("UPDATE account SET role = ? WHERE id = 1", role);
    return { ...current, role, version };
  }

  /** Blocks or unblocks `otherId`; a repeat changes nothing. The latest of the two always wins: it has the higher version. */
  setBlock(otherId: string, blocked: boolean, now: number): number {
    const current = this.blockOf(otherId);
    if ((current?.blocked ?? false) === blocked) return this.state().version;
    const version = this.bump(now, { kind: "block", blockedId: otherId, blocked });
    this.sql.exec(
      `INSERT INTO account_blocks (blocked_id, blocked, version) VALUES (?, ?, ?)
       ON CONFLICT (blocked_id) DO UPDATE SET blocked = excluded.blocked, version = excluded.version`,
      otherId,
      blocked ? 1 : 0,
      version,
    );
    this.owe(pairTarget(otherId), now);
    return version;
  }

  hasBlocked(otherId: string): boolean {
    return this.blockOf(otherId)?.blocked === true;
  }

  /** The facts a chat holds of this user: status, and the block state of each listed user (with its version). */
  facts(otherIds: readonly string[]): AccountFacts {
    const state = this.state();
    const blocks = otherIds.flatMap((blockedId) => {
      const row = this.blockOf(blockedId);
      return row ? [{ blockedId, blocked: row.blocked, version: row.version }] : [];
    });
    return { ...state, blocks };
  }

  /** This user's block of `otherId` as a versioned fact (what a transfer's sender keeps a copy of). */
  blockFactOf(otherId: string): PeerFact {
    return { blocked: this.hasBlocked(otherId), version: this.state().version };
  }

  /** The copy of `userId`'s facts about this user: it exists, and whether it blocks this one (null: never heard of). */
  peer(userId: string): { blocksMe: boolean } | null {
    const row = this.sql.exec<{ blocks_me: number }>("SELECT blocks_me FROM peer_facts WHERE user_id = ?", userId).toArray()[0];
    return row ? { blocksMe: row.blocks_me === 1 } : null;
  }

  /** Keeps `userId`'s block of this user at `version`, forward only: an older one changes nothing. */
  applyPeer(userId: string, fact: PeerFact): void {
    this.sql.exec(
      `INSERT INTO peer_facts (user_id, blocks_me, version) VALUES (?, ?, ?)
       ON CONFLICT (user_id) DO UPDATE SET blocks_me = excluded.blocks_me, version = excluded.version
       WHERE excluded.version > peer_facts.version`,
      userId,
      fact.blocked ? 1 : 0,
      fact.version,
    );
  }

  /** Queues `target` (a chat, or a pair's direct chat) to be told the current facts at once. */
  owe(target: string, at: number): void {
    this.sql.exec(
      `INSERT INTO facts_targets (target, version, attempts, retry_at) VALUES (?, ?, 0, ?)
       ON CONFLICT (target) DO UPDATE SET version = excluded.version, attempts = 0, retry_at = min(retry_at, excluded.retry_at)`,
      target,
      this.state().version,
      at,
    );
  }

  /** Starts (or restarts from the first chat) the walk that tells every chat of the user the current status. */
  walkAllChats(now: number): void {
    this.sql.exec(
      `INSERT INTO facts_walk (id, after_chat_id, version, attempts, retry_at) VALUES (1, '', ?, 0, ?)
       ON CONFLICT (id) DO UPDATE SET after_chat_id = '', version = excluded.version, attempts = 0, retry_at = excluded.retry_at`,
      this.state().version,
      now,
    );
  }

  private blockOf(otherId: string): { blocked: boolean; version: number } | undefined {
    const row = this.sql
      .exec<{ blocked: number; version: number }>("SELECT blocked, version FROM account_blocks WHERE blocked_id = ?", otherId)
      .toArray()[0];
    return row ? { blocked: row.blocked === 1, version: row.version } : undefined;
  }

  /** The next version, with its D1 index write queued in the same transaction. */
  private bump(now: number, change: IndexChange): number {
    const version = this.state().version + 1;
    this.sql.exec("UPDATE account SET version = ? WHERE id = 1", version);
    this.sql.exec(
      "INSERT INTO facts_index_outbox (version, change, created_at) VALUES (?, ?, ?)",
      version,
      JSON.stringify(change),
      now,
    );
    return version;
  }
}
