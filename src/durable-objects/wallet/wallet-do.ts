import { DurableObject } from "cloudflare:workers";
import { getConfig } from "../../lib/config";
import { invariant, type Outcome, type Refusal, refuse } from "../../lib/errors";
import { newId } from "../../lib/ids";
import type { Limits, TransferWithStatus, Wallet } from "../../schemas/wallet";
import type { UserAdmission } from "../chat/effects";
import {
  Account,
  type AccountFacts,
  type AccountRole,
  type AccountState,
  type AccountStatus,
  type AuditNote,
  type PeerFact,
} from "./account";
import { AuditOutbox } from "./audit-outbox";
import { type AuditOutboxEntry, PRODUCTION_HOOKS, type ProtocolHooks, type WalletEffects } from "./effects";
import { FactsOutbox } from "./facts-outbox";
import { Finisher } from "./finisher";
import { type GrantClaimAnswer, type GrantClaimRequest, GrantClaims } from "./grant-claims";
import { type GrantAnswer, Grants } from "./grants";
import { GroupCommit } from "./group-commit";
import { Ledger } from "./ledger";
import { Memberships } from "./memberships";
import { Recipient } from "./recipient";
import { logRecoveryFailure, Recovery } from "./recovery";
import { Sender } from "./sender";
import { type Rotation, Sessions } from "./sessions";
import { sentTransfer, toLedgerRow, toWallet } from "./views";
import {
  type BooksHorizon,
  type IncomingRow,
  incomingByIds,
  incomingPage,
  type OutgoingRow,
  outgoingByIds,
  outgoingPage,
  type TransferSides,
  transferSides,
  type WalletBooks,
  walletBooks,
} from "./wallet-books";
import { migrate } from "./wallet-schema";
import {
  type CreditCommand,
  type CreditResult,
  type GrantCommand,
  type LedgerRow,
  TRANSFER_WINDOW_HOURS,
  type TransferCommand,
  type TransferEvent,
  type TransferResult,
} from "./wallet-types";

/** What the binding hands the wallet: its effects on the outside world, and (tests only) hooks into the protocol. */
export type WalletWiring = { effects: WalletEffects; hooks?: ProtocolHooks };

/**
 * One wallet per user (`idFromName(userId)`), SQLite-backed: a thin RPC shell over modules with one
 * job each. Refusals cross RPC as values (`Outcome`), never as thrown custom errors.
 *
 *   ledger.ts       the only writer of the balance, entries, running totals and send window
 *   sender.ts       a transfer's synchronous steps: begin (key, checks, debit), posted, voided
 *   group-commit.ts a hot sender's requests debited in groups, each answered 201, 409 or 202
 *   finisher.ts     the steps after the debit: credit or void, chat, message waves, posted
 *   recipient.ts    credit (batched for a hot recipient) and void, never both
 *   grants.ts       admin grants     recovery.ts  the alarm     views.ts  rows to API shapes
 *   grant-claims.ts in an admin's object: the grant keys that admin claimed (one scope per admin)
 *   sessions.ts     the owner's sessions: refresh-token families, rotation, reuse, revocation
 *   audit-outbox.ts a grant's or an operator role change's audit row, written with it, delivered to D1 until acknowledged
 *
 * Transfer protocol (docs/wallets.md; API.md "Every transfer ends"): 1. one transaction, no
 * await: a key with a stored outcome answers it first; else the caller's session (401 when it
 * ended), the Worker's pre-check refusal, the
 * rate limit, the balance and the rolling limit; then the debit and the `pending` transfer, its
 * message id (the transfer id) and void deadline fixed, the recovery alarm set. 2. the
 * recipient's credit, or past the deadline its void (atomic against each other on the recipient).
 * 3. after a credit only, the pair's direct chat. 4. the `credit_transfer` message, keyed by
 * transfer id. 5. one transaction: `posted` with its stored 201, or after a recorded void the
 * `reversal_in` entry and `voided` with its stored 409. No transaction spans an await, so A→B and
 * B→A at once cannot deadlock; steps 2–5 are repeated by the alarm, a retry and a read until the
 * transfer ends, and a credited transfer is never voided.
 */
export class WalletObject extends DurableObject<Env> {
  private readonly ledger: Ledger;
  private readonly sender: Sender;
  protected readonly recipient: Recipient;
  private readonly finisher: Finisher;
  private readonly recovery: Recovery;
  private readonly grants: Grants;
  private readonly claims: GrantClaims;
  private readonly sessions: Sessions;
  private readonly memberships: Memberships;
  private readonly audit: AuditOutbox;
  protected readonly groups: GroupCommit;
  protected readonly hooks: ProtocolHooks;
  private readonly account: Account;
  protected readonly facts: FactsOutbox;
  /**
   * Whether this object holds a wallet's schema. Any call naming an id creates the object; a
   * question about a user who never registered (a transfer to a random id) must leave no storage
   * behind, so the tables are created by the first call that needs them (`ready`).
   */
  private hasSchema: boolean;
  private readonly effects: WalletEffects;

  constructor(ctx: DurableObjectState, env: Env, wiring: WalletWiring) {
    super(ctx, env);
    const storage = ctx.storage;
    const hooks = wiring.hooks ?? PRODUCTION_HOOKS;
    const wakeAt = (at: number) => this.recovery.wakeAt(at);
    this.hooks = hooks;
    this.effects = wiring.effects;
    this.ledger = new Ledger(storage.sql);
    this.sessions = new Sessions(storage, wakeAt);
    this.sender = new Sender(storage, this.ledger, wakeAt, (sessionId) => this.sessions.isLive(sessionId));
    this.memberships = new Memberships(storage);
    this.recipient = new Recipient(storage, this.ledger, hooks, (userId) => wiring.effects.sender(userId));
    this.finisher = new Finisher(storage, this.ledger, this.sender, wiring.effects, hooks, () => getConfig(env).signupCredits);
    this.audit = new AuditOutbox(storage, wiring.effects, hooks, wakeAt);
    this.claims = new GrantClaims(storage, wakeAt);
    this.recovery = new Recovery(storage, this.finisher, wiring.effects, hooks, this.audit, this.claims);
    this.grants = new Grants(storage, this.ledger, wakeAt, this.audit);
    const announce = (event: TransferEvent) => wiring.effects.announce(event);
    this.groups = new GroupCommit(storage, this.sender, this.finisher, hooks, wakeAt, announce);
    this.account = new Account(storage.sql);
    this.facts = new FactsOutbox(storage, this.account, this.memberships, wiring.effects, () => hooks.now(), wakeAt);
    this.hasSchema = schemaExists(storage);
    ctx.blockConcurrencyWhile(async () => {
      if (this.hasSchema) migrate(storage);
      await this.recovery.load();
    });
  }

  /** The tables, created by the first call that needs them (read-only questions about a stranger never do). */
  protected ready(): void {
    if (this.hasSchema) return;
    migrate(this.ctx.storage);
    this.hasSchema = true;
  }

  /** Whether this object is a registered user's: its wallet or its account was opened (registration opens both). */
  private registered(): boolean {
    return this.hasSchema && (this.account.row() !== undefined || this.ledger.row() !== undefined);
  }

  // ------------------------------------------------------------------ the owner's reads and opening

  /**
   * Idempotent: the first call creates the wallet with the `signupCredits` grant, and the account
   * (active, with `role`: what registration wrote to the directory) if it has none; later calls change nothing.
   */
  open(userId: string, signupCredits: number, role: AccountRole = "user"): Outcome<Wallet> {
    this.ready();
    const now = this.hooks.now();
    const row = this.ctx.storage.transactionSync(() => {
      this.account.open(userId, { role, status: "active" }, now);
      return this.ledger.open(userId, signupCredits, now);
    });
    return { ok: true, value: toWallet(row) };
  }

  /** Newest first; `beforeSeq` continues a page. Returns `limit + 1` rows when there are more. */
  transactions(userId: string, signupCredits: number, limit: number, beforeSeq: number | null): Outcome<LedgerRow[]> {
    this.open(userId, signupCredits);
    return { ok: true, value: this.ledger.page(limit, beforeSeq).map(toLedgerRow) };
  }

  limits(userId: string, signupCredits: number, perTransferMax: number, dailyLimit: number): Outcome<Limits> {
    this.open(userId, signupCredits);
    const windowUsed = this.ledger.windowUsed(this.hooks.now());
    const windowRemaining = Math.max(0, dailyLimit - windowUsed);
    return {
      ok: true,
      value: { perTransferMax, windowHours: TRANSFER_WINDOW_HOURS, windowLimit: dailyLimit, windowUsed, windowRemaining },
    };
  }

  /**
   * A transfer this wallet sent or received, with its status. A sent one still pending is pushed
   * forward first, so a client that timed out gets the most final answer there is. `event` is set
   * when this read ended the transfer; the caller publishes it.
   */
  async getTransfer(
    userId: string,
    signupCredits: number,
    transferId: string,
  ): Promise<Outcome<{ transfer: TransferWithStatus; event: TransferEvent | null }>> {
    this.open(userId, signupCredits);
    const sent = this.sender.transferOut(transferId);
    if (sent) {
      const event =
        sent.state === "pending" ? await this.finisher.finish(sent).then((e) => e.event, logFailure(transferId)) : null;
      const current = this.sender.transferOut(transferId);
      invariant(current, `transfer ${transferId} disappeared`);
      return { ok: true, value: { transfer: sentTransfer(userId, current), event } };
    }
    const received = await this.recipient.received(userId, transferId);
    if (received) return { ok: true, value: { transfer: received, event: null } };
    return refuse("transfer_not_found", `No transfer ${transferId} sent or received by you`);
  }

  /** The chat of a transfer this wallet sent, once posted (its recipient asks: recipient.ts `received`). */
  postedTransferChat(transferId: string): string | null {
    this.ready();
    const row = this.sender.transferOut(transferId);
    return row?.state === "posted" ? row.chat_id : null;
  }

  // ------------------------------------------------------------------ the transfer protocol

  /**
   * Sender side, committed in groups (group-commit.ts). A new request (no stored outcome under its
   * key) first meets the facts §11 gives to the two owners: the sender's own status here, then the
   * recipient's object (exists, has not blocked the sender), asked before any money moves, so a
   * refusal stores nothing and writes no ledger line on either side. No D1 query.
   */
  async transfer(command: TransferCommand): Promise<TransferResult> {
    this.ready();
    const known = command.idempotencyKey !== null && this.sender.knowsKey(command.idempotencyKey);
    // An ended session is refused by begin (401 before any 403/404), so the recipient is not asked.
    if (command.refusal === null && !known && this.sessions.isLive(command.sessionId)) {
      const refusal = await this.refusalOfParties(command);
      if (refusal) return this.groups.transfer({ ...command, refusal: { code: refusal.code, details: refusal.details } });
    }
    const result = await this.groups.transfer({ ...command, chatId: command.chatId ?? this.pairChat(command.recipientId) });
    if (result.ok && result.event?.kind === "posted") this.rememberPairChat(command.recipientId, result.event.transfer.chatId);
    return result;
  }

  /** The direct chat of a pair this wallet paid before (null: resolved after the credit, in the directory). */
  private pairChat(otherId: string): string | null {
    const sql = this.ctx.storage.sql;
    return (
      sql.exec<{ chat_id: string }>("SELECT chat_id FROM pair_chats WHERE other_id = ?", otherId).toArray()[0]?.chat_id ?? null
    );
  }

  private rememberPairChat(otherId: string, chatId: string): void {
    this.ctx.storage.sql.exec("INSERT OR IGNORE INTO pair_chats (other_id, chat_id) VALUES (?, ?)", otherId, chatId);
  }

  private recipientWallet(userId: string) {
    return this.effects.recipient(userId);
  }

  /**
   * The sender's own status, then the recipient: its existence and its block of the sender from
   * this object's copy (`peer_facts`, kept current by the recipient's outbox), asked of the
   * recipient's object only the first time this wallet pays it.
   */
  private async refusalOfParties(command: TransferCommand): Promise<Refusal | null> {
    if (this.account.row()?.status === "suspended")
      return refuse("account_suspended", "This account is suspended: it can sign in and read, but not send");
    let peer = this.account.peer(command.recipientId);
    if (!peer) {
      const fact = await this.recipientWallet(command.recipientId).admitTransfer(command.senderId);
      if (!fact) return refuse("user_not_found", `No user with id ${command.recipientId}`);
      this.ctx.storage.transactionSync(() => this.account.applyPeer(command.recipientId, fact));
      peer = this.account.peer(command.recipientId);
    }
    return peer?.blocksMe ? refuse("recipient_blocked", "The recipient does not accept messages or credits from you") : null;
  }

  /** Recipient side: credits the transfer once (recipient.ts); a voided transfer is refused forever. */
  credit(command: CreditCommand): Promise<CreditResult> {
    this.ready();
    return this.recipient.credit(command);
  }

  /** Recipient side, past the deadline: the credit it already made, or the void recorded. */
  voidUnlessCredited(command: CreditCommand): CreditResult {
    this.ready();
    return this.recipient.voidUnlessCredited(command);
  }

  /**
   * Recipient side, the first time a sender pays this user: null for an object no registration
   * opened (read without creating any storage: 404 `user_not_found`), else this user's block of
   * the sender at the current version (the sender keeps it as its copy).
   */
  admitTransfer(senderId: string): PeerFact | null {
    if (!this.registered()) return null;
    return this.account.row() ? this.account.blockFactOf(senderId) : { blocked: false, version: 0 };
  }

  /** A peer's block of this user, pushed by the peer's outbox; forward only. */
  applyPeerFact(peerId: string, fact: PeerFact): void {
    this.ready();
    this.ctx.storage.transactionSync(() => this.account.applyPeer(peerId, fact));
  }

  /** Whether this wallet holds an outcome (ended or in flight) for the owner's transfer key. */
  knowsTransferKey(idempotencyKey: string): boolean {
    this.ready();
    return this.sender.knowsKey(idempotencyKey);
  }

  /** The stored outcome of an admin's grant key here, if any: a replay answered without any other read. */
  storedGrant(command: Pick<GrantCommand, "grantedBy" | "idempotencyKey" | "fingerprint">): GrantAnswer | null {
    this.ready();
    return this.grants.stored(command);
  }

  /**
   * In the ADMIN's object (grant-claims.ts): claims the admin's grant key for one user and request
   * before the grant runs in that user's object; another user or body is `reused` (409).
   */
  claimGrantKey(request: GrantClaimRequest): GrantClaimAnswer {
    this.ready();
    return this.claims.claim(request, this.hooks.now());
  }

  /** In the admin's object: the grant under this key answered its 201 (fresh or replayed); the key is kept. */
  settleGrantKey(key: string, targetId: string, fingerprint: string): void {
    this.ready();
    this.claims.settle(key, targetId, fingerprint, this.hooks.now());
  }

  /** In the admin's object: the grant was refused before it executed, or failed; its claim goes. */
  releaseGrantKey(key: string, token: string): void {
    this.ready();
    this.claims.release(key, token);
  }

  /**
   * Admin grant (grants.ts); `wallet` is the wallet after it when this call applied it. Its audit
   * row, written with it, is delivered before the answer when the log takes it (else by the alarm).
   */
  async grant(command: GrantCommand): Promise<GrantAnswer> {
    this.ready();
    const now = this.hooks.now();
    const answer = this.grants.grant(command, now);
    if (answer.ok && answer.value.wallet) await this.audit.deliver(now);
    return answer;
  }

  /**
   * Where the message of a posted transfer this wallet sent or received lives: its chat, or (a
   * credit recorded before its chat was resolved) the other person, whose direct chat it is.
   */
  transferChat(transferId: string): { chatId: string | null; counterpartyId: string } | null {
    this.ready();
    const sql = this.ctx.storage.sql;
    const sent = sql
      .exec<{ chat_id: string | null; recipient_id: string }>(
        "SELECT chat_id, recipient_id FROM transfers_out WHERE transfer_id = ? AND state = 'posted'",
        transferId,
      )
      .toArray()[0];
    if (sent) return { chatId: sent.chat_id, counterpartyId: sent.recipient_id };
    const received = sql
      .exec<{ chat_id: string | null; sender_id: string }>(
        "SELECT chat_id, sender_id FROM transfers_in WHERE transfer_id = ?",
        transferId,
      )
      .toArray()[0];
    return received ? { chatId: received.chat_id, counterpartyId: received.sender_id } : null;
  }

  // ------------------------------------------------------------------ the owner's chats (memberships.ts)

  /**
   * A chat asks before taking the owner in (memberships.ts): 404 for an object no registration
   * opened (read without creating storage), the requester's checks (`refusalToJoin`), then the
   * caps (409 `chat_limit_reached`); idempotent per chat. Answers the owner's facts as of the
   * admission (null: no account opened yet, so active at version 0); from here on the chat is
   * among those the facts outbox tells of every change.
   */
  admitChat(admission: UserAdmission): Outcome<AccountFacts | null> {
    if (!this.registered()) return refuse("user_not_found", `no user with id ${admission.userId}`);
    const facts = this.account.row() ? this.account.facts(admission.otherIds) : null;
    const refusal = this.refusalToJoin(admission, facts);
    if (refusal) return refusal;
    const admitted = this.memberships.admit(admission);
    return admitted.ok ? { ok: true, value: facts } : admitted;
  }

  /** The requester's own suspension, or the owner's block of the requester (the owner decides both). */
  private refusalToJoin(admission: UserAdmission, facts: AccountFacts | null): Refusal | null {
    const { requesterId, userId } = admission;
    if (requesterId === null) return null;
    if (requesterId === userId) {
      return facts?.status === "suspended"
        ? refuse("account_suspended", "This account is suspended: it cannot join chats")
        : null;
    }
    return this.account.row() && this.account.hasBlocked(requesterId)
      ? refuse("recipient_blocked", `user ${userId} does not accept messages from you`)
      : null;
  }

  /** A chat tells the owner's place in it (forward only by version). */
  linkChat(link: { chatId: string; role: "owner" | "member" | null; version: number }): void {
    this.ready();
    this.memberships.link(link.chatId, link.role, link.version);
  }

  // ------------------------------------------------------------------ the owner's sessions (sessions.ts)
  // Tokens arrive as their SHA-256; the Worker signs the access tokens.

  /** Sign-in: a new family with its first refresh token. */
  startSession(familyId: string, tokenHash: string): void {
    this.ready();
    this.sessions.start(familyId, tokenHash, this.hooks.now());
  }

  /** Refresh: uses up `presented`, adds `next` to its family (or revokes the family on reuse). */
  rotateSession(presented: string, next: string): Rotation {
    this.ready();
    return this.sessions.rotate(presented, next, this.hooks.now());
  }

  /** Logout: the family of `tokenHash` revoked; null when this object holds no such token. */
  endSession(tokenHash: string): string | null {
    this.ready();
    return this.sessions.logout(tokenHash, this.hooks.now());
  }

  /** Logout-all: every live family revoked unless the caller's own session has ended. */
  endAllSessions(callerSession: string): ReturnType<Sessions["endAll"]> {
    this.ready();
    return this.sessions.endAll(callerSession, this.hooks.now());
  }

  /** Password change: every family revoked and the new one started, in one transaction. */
  replaceSessions(callerSession: string, familyId: string, tokenHash: string): string[] {
    this.ready();
    return this.sessions.replaceAll(callerSession, familyId, tokenHash, this.hooks.now());
  }

  /** The session check of money and account routes. */
  sessionLive(sessionId: string): boolean {
    this.ready();
    return this.sessions.isLive(sessionId);
  }

  /**
   * The admin check's one call (services/admin-access.ts): the account's current role and status
   * and whether the token's session is live, all owned here, so an admin request reads no index.
   * Null for an object no registration opened (its account is gone, or never was); creates nothing.
   */
  adminFacts(sessionId: string): AdminFacts | null {
    const row = this.registered() ? this.account.row() : undefined;
    if (!row) return null;
    return { role: row.role, status: row.status, sessionLive: this.sessions.isLive(sessionId) };
  }

  // ------------------------------------------------------------------ reconciliation (wallet-books.ts)

  /** This wallet's books for a reconciliation run, in O(1) (its running totals); never opens the wallet. */
  books(userId: string, horizon: BooksHorizon): WalletBooks {
    this.ready();
    return walletBooks(this.ctx.storage.sql, userId, horizon);
  }

  outgoingPage(afterId: string, limit: number): OutgoingRow[] {
    this.ready();
    return outgoingPage(this.ctx.storage.sql, afterId, limit);
  }

  incomingPage(afterId: string, limit: number): IncomingRow[] {
    this.ready();
    return incomingPage(this.ctx.storage.sql, afterId, limit);
  }

  /** The transfers of these ids this wallet sent (a page of a chat's messages, checked against them). */
  outgoingByIds(transferIds: string[]): OutgoingRow[] {
    this.ready();
    return outgoingByIds(this.ctx.storage.sql, transferIds);
  }

  /** The credits of these transfer ids this wallet received. */
  incomingByIds(transferIds: string[]): IncomingRow[] {
    this.ready();
    return incomingByIds(this.ctx.storage.sql, transferIds);
  }

  transferSides(transferId: string): TransferSides {
    this.ready();
    return transferSides(this.ctx.storage.sql, transferId);
  }

  // ------------------------------------------------------------------ the owner's account facts (account.ts)

  /**
   * The account as registration wrote it to the directory (a user made outside registration:
   * seeding, an operator's backfill); creates no wallet and no grant. Idempotent.
   */
  openAccount(userId: string, initial: { role: AccountRole; status: AccountStatus }): AccountState {
    this.ready();
    return this.ctx.storage.transactionSync(() => {
      this.account.open(userId, initial, this.hooks.now());
      return this.account.state();
    });
  }

  /** The owner's status, role and version; null for an object no registration opened. */
  accountState(): AccountState | null {
    return this.registered() && this.account.row() ? this.account.state() : null;
  }

  /**
   * Suspends or reinstates (the admin routes), with the audit row that goes to D1 with the index;
   * every chat of the user hears before this answers (the first pages), the rest within the alarm.
   */
  async setStatus(userId: string, status: AccountStatus, reason: string | null, audit: AuditNote | null): Promise<AccountState> {
    this.ready();
    const now = this.hooks.now();
    const state = this.ctx.storage.transactionSync(() => {
      this.account.open(userId, { role: "user", status: "active" }, now);
      return this.account.setStatus(status, reason, audit, now);
    });
    await this.facts.flush();
    return state;
  }

  /**
   * The operator's role change (`npm run admin`, through AdminCommandWorkflow): the role and its
   * audit row (`role_grant` / `role_revoke`, actor `operator`) in one transaction, so neither is
   * kept without the other; a grant to an admin or a revoke of a user changes nothing and records
   * nothing. The D1 index (facts outbox) and the audit row (audit outbox) are delivered before
   * this answers when D1 takes them, else by the alarm. Null, with no storage created, for an id
   * no registration opened: the command must not make an account out of a mistyped id.
   */
  async setRole(userId: string, role: AccountRole, run: OperatorRun): Promise<AccountState | null> {
    if (!this.registered()) return null;
    const now = this.hooks.now();
    const state = this.ctx.storage.transactionSync(() => {
      // A wallet opened before its account (a registration whose opening failed): the account starts as D1's defaults did.
      const before = this.account.open(userId, { role: "user", status: "active" }, now);
      const after = this.account.setRole(role, now);
      if (after.version !== before.version) this.audit.add(roleAudit(userId, before.role, after.role, run, now), now);
      return after;
    });
    await Promise.all([this.facts.flush(), this.audit.deliver(now)]);
    return state;
  }

  /** Blocks or unblocks `otherId` (latest wins: the higher version); the pair's direct chat hears before this answers. */
  async setBlock(userId: string, otherId: string, blocked: boolean): Promise<{ version: number }> {
    this.ready();
    const now = this.hooks.now();
    const version = this.ctx.storage.transactionSync(() => {
      this.account.open(userId, { role: "user", status: "active" }, now);
      return this.account.setBlock(otherId, blocked, now);
    });
    await this.facts.flush();
    return { version };
  }

  /** Recovery of pending transfers and key expiry (recovery.ts), the purge of ended sessions, then the account facts still owed (facts-outbox.ts). */
  override async alarm(): Promise<void> {
    if (!this.hasSchema) return;
    const nextPurge = this.sessions.purge(this.hooks.now());
    await this.recovery.run();
    await this.facts.run();
    // After recovery.run, which sets the alarm for its own work only.
    if (nextPurge !== null) this.recovery.wakeAt(nextPurge);
  }
}

/** What the admin check needs of the caller's account, read in one call on its owner. */
export type AdminFacts = { role: AccountRole; status: AccountStatus; sessionLive: boolean };

/** Who made an operator role change: the OS user who ran `npm run admin`, and that run's id (the audit row's request id). */
export type OperatorRun = { operator: string; runId: string };

/** A role change's audit row (API.md: GET /api/v1/admin/audit lists every role change made by the operator command). */
function roleAudit(
  userId: string,
  previousRole: AccountRole,
  role: AccountRole,
  run: OperatorRun,
  now: number,
): AuditOutboxEntry {
  return {
    id: newId(now),
    actorId: "operator",
    action: role === "admin" ? "role_grant" : "role_revoke",
    targetId: userId,
    detail: { role, previousRole, operator: run.operator, via: "npm run admin" },
    requestId: run.runId,
    createdAt: now,
  };
}

const logFailure = (transferId: string) => (error: unknown) => {
  logRecoveryFailure(transferId, error);
  return null;
};

/** Whether the object's SQLite already holds the wallet schema (read-only: sqlite_master). */
function schemaExists(storage: DurableObjectStorage): boolean {
  return storage.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").toArray().length > 0;
}
