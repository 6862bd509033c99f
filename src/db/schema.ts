import { sql } from "drizzle-orm";
import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

/**
 * D1 holds users, blocks and the chat directory (each chat's identity, members and one
 * summary row); each chat's messages live only in its ChatDO. Money lives in the
 * per-user WalletDO, never here, and so do sessions (refresh-token families). Times are Unix epoch milliseconds.
 */

export const users = sqliteTable(
  "users",
  {
    id: text("id").primaryKey(),
    /** Lower-cased; unique, so emails are unique case-insensitively. */
    email: text("email").notNull(),
    displayName: text("display_name").notNull(),
    /** Lower-cased display name, for the prefix search. */
    displayNameKey: text("display_name_key").notNull(),
    /** `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`. */
    passwordHash: text("password_hash").notNull(),
    role: text("role", { enum: ["user", "admin"] })
      .notNull()
      .default("user"),
    status: text("status", { enum: ["active", "suspended"] })
      .notNull()
      .default("active"),
    suspendedReason: text("suspended_reason"),
    /**
     * The version of the user's account facts (status, role, blocks) this row and the user's
     * `blocks` rows were last written at. Their owner is the user's object (wallet/account.ts):
     * it writes them here as an index, only over an older version, so a delayed write never
     * undoes a newer one.
     */
    factsVersion: integer("facts_version").notNull().default(0),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [uniqueIndex("users_email_unique").on(t.email), index("users_display_name_key_idx").on(t.displayNameKey, t.id)],
);

export const blocks = sqliteTable(
  "blocks",
  {
    blockerId: text("blocker_id").notNull(),
    blockedId: text("blocked_id").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.blockerId, t.blockedId] })],
);

export const chats = sqliteTable(
  "chats",
  {
    id: text("id").primaryKey(),
    type: text("type", { enum: ["direct", "group"] }).notNull(),
    title: text("title"),
    /** `<smaller user id>:<larger user id>` for direct chats, so a pair has exactly one. */
    directKey: text("direct_key"),
    createdBy: text("created_by").notNull(),
    /**
     * The chat's summary, written by its ChatDO behind its answers, coalesced (durable-objects/
     * chat/summary.ts): the highest `seq`, the last message (JSON of the API's `Message`) and the
     * time of the last activity (creation time until the first message). Within 1 s of a commit.
     */
    lastSeq: integer("last_seq").notNull().default(0),
    lastMessage: text("last_message"),
    lastActivityAt: integer("last_activity_at").notNull(),
    /** 12 hex: carried by every message id of the chat, so a message id finds its chat (durable-objects/chat/append.ts). */
    routeTag: text("route_tag").notNull().default(""),
    /**
     * 1 once a credit transfer's message may be in this chat: set (never cleared) by a transfer's
     * checks and by the wallet's direct-chat lookup after a credit, both before the message is
     * appended, so reconciliation finds every chat holding transfer messages by walking these.
     */
    carriesTransfers: integer("carries_transfers").notNull().default(0),
    /**
     * The chat's membership version and member count as its object last wrote them (forward only:
     * a write stamped with an older version changes neither this row's count nor its members).
     */
    indexVersion: integer("index_version").notNull().default(0),
    memberCount: integer("member_count").notNull().default(0),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [
    // Not unique: a direct chat's id is derived from its pair (lib/direct-chat.ts), and the object
    // that owns the chat writes this row; the directory decides nothing about it.
    index("chats_direct_key_idx").on(t.directKey),
    // Not unique: a route tag is drawn at random by the chat's creator (1 in 2^48 per pair to
    // clash); a message id whose tag names several chats is looked up in each (chat-objects.ts).
    index("chats_route_tag_idx").on(t.routeTag),
    // "My chats, most recent activity first" sorts the caller's chats by this (services/chats.ts).
    index("chats_activity_idx").on(t.lastActivityAt, t.id),
    // Reconciliation walks the chats that carry transfers by id (services/reconciliation/).
    index("chats_transfers_idx").on(t.id).where(sql`carries_transfers = 1`),
  ],
);

export const chatMembers = sqliteTable(
  "chat_members",
  {
    chatId: text("chat_id").notNull(),
    userId: text("user_id").notNull(),
    role: text("role", { enum: ["owner", "member"] }).notNull(),
    /** The member's own marker, written by the chat object behind its answers (one row: the member's). */
    lastReadSeq: integer("last_read_seq").notNull().default(0),
    joinedAt: integer("joined_at").notNull(),
    /**
     * Written once, when the member joins: messages no longer touch any member row (the list
     * sorts by `chats.last_activity_at`). Kept for `chat_members_user_activity_idx`, whose
     * `user_id` prefix finds a user's chats.
     */
    lastActivityAt: integer("last_activity_at").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.chatId, t.userId] }),
    index("chat_members_user_activity_idx").on(t.userId, t.lastActivityAt, t.chatId),
  ],
);

/** Stored outcomes of message-creating requests sent with an Idempotency-Key (API.md §1). */
export const idempotencyKeys = sqliteTable(
  "idempotency_keys",
  {
    userId: text("user_id").notNull(),
    key: text("key").notNull(),
    /** SHA-256 of method, path and body: the same key with another request is a 409. */
    fingerprint: text("fingerprint").notNull(),
    /** Null while the first request is still executing. */
    responseStatus: integer("response_status"),
    responseBody: text("response_body"),
    /**
     * The message the request created, written by the message's own insert batch: a retry that
     * finds it (the request died before storing its response) answers that message, never a second.
     */
    messageId: text("message_id"),
    /**
     * Where the outcome of this key is kept when it is not in this row: `transfer:<sender id>` or
     * `grant:<user id>` (that user's wallet object). Null: a message send, stored here. For such a
     * row D1 only keeps the key the caller's across endpoints; that wallet decides replays and reuse.
     */
    outcomeIn: text("outcome_in"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.key] }), index("idempotency_keys_created_idx").on(t.createdAt)],
);

/**
 * Who has an open realtime socket (docs/realtime.md, "Presence"): one row per user who ever
 * connected, written only by that user's RealtimeDO, read by the hot paths (a transfer's
 * pre-checks, a message's append batch) in the batch they already run, so a push to nobody is
 * skipped at no extra round trip. `changed_at` is the object's own strictly increasing clock
 * (epoch ms, bumped past the last stamp): a write lands only over an older one, so writes that
 * arrive out of order cannot leave a stale state.
 */
export const realtimePresence = sqliteTable("realtime_presence", {
  userId: text("user_id").primaryKey(),
  connected: integer("connected", { mode: "boolean" }).notNull(),
  changedAt: integer("changed_at").notNull(),
});

/**
 * Reconciliation runs (src/services/reconciliation/): one row per run, its progress while it runs
 * and its report when it ends. The id is also the Workflow instance id. At most one run is
 * `running` at a time (partial unique index), which is how a second start finds the first.
 */
export const reconciliationRuns = sqliteTable(
  "reconciliation_runs",
  {
    id: text("id").primaryKey(),
    status: text("status", { enum: ["running", "completed", "failed"] }).notNull(),
    trigger: text("trigger", { enum: ["manual", "scheduled", "auto"] }).notNull(),
    /** The admin who started it (null: the schedule). */
    startedBy: text("started_by"),
    startedAt: integer("started_at").notNull(),
    /** The cut: balances and totals are those of this instant (see docs/wallets.md). */
    cutoffAt: integer("cutoff_at").notNull(),
    finishedAt: integer("finished_at"),
    walletsChecked: integer("wallets_checked").notNull().default(0),
    pagesDone: integer("pages_done").notNull().default(0),
    totalBalance: integer("total_balance"),
    totalGranted: integer("total_granted"),
    pendingTransfers: integer("pending_transfers"),
    inFlightAmount: integer("in_flight_amount"),
    stuckTransfers: integer("stuck_transfers"),
    discrepancyCount: integer("discrepancy_count").notNull().default(0),
    error: text("error"),
  },
  (t) => [
    uniqueIndex("reconciliation_runs_one_running").on(t.status).where(sql`status = 'running'`),
    index("reconciliation_runs_status_started_idx").on(t.status, t.startedAt),
  ],
);

/**
 * A run's count of `credit_transfer` messages per user (sent and received, transfer ids below the
 * run's settled bound), added up from the chat objects one page of chats at a time; the wallet
 * pages compare each wallet against its row. Rows of earlier runs are deleted by the next run.
 */
export const reconciliationMessageTotals = sqliteTable(
  "reconciliation_message_totals",
  {
    runId: text("run_id").notNull(),
    userId: text("user_id").notNull(),
    sentCount: integer("sent_count").notNull(),
    sentAmount: integer("sent_amount").notNull(),
    receivedCount: integer("received_count").notNull(),
    receivedAmount: integer("received_amount").notNull(),
  },
  (t) => [primaryKey({ columns: [t.runId, t.userId] })],
);

/**
 * The pages of chats a run has added into `reconciliation_message_totals`, written in the same
 * batch as their totals: a retried step finds its page here and adds nothing twice.
 */
export const reconciliationChatPages = sqliteTable(
  "reconciliation_chat_pages",
  {
    runId: text("run_id").notNull(),
    page: integer("page").notNull(),
    /** The page's last chat id (the next page starts after it); null: it was the last page. */
    nextAfter: text("next_after"),
    chats: integer("chats").notNull(),
  },
  (t) => [primaryKey({ columns: [t.runId, t.page] })],
);

/** Confirmed discrepancies of a run; `key` (kind + transfer or wallet) makes each one reported once. */
export const reconciliationDiscrepancies = sqliteTable(
  "reconciliation_discrepancies",
  {
    runId: text("run_id").notNull(),
    key: text("key").notNull(),
    kind: text("kind").notNull(),
    userId: text("user_id"),
    transferId: text("transfer_id"),
    detail: text("detail").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.runId, t.key] })],
);

/**
 * What admins did (API.md: GET /api/v1/admin/audit): one row per grant, suspension, reinstatement
 * and reconciliation start, newest first by (created_at, id). Written with the action (a
 * suspension in its own batch, a grant right after the wallet applied it, under the grant's own
 * id so a replay of its Idempotency-Key cannot write it twice). Never updated or deleted.
 */
export const adminAudit = sqliteTable(
  "admin_audit",
  {
    id: text("id").primaryKey(),
    /** The admin who acted; `operator` for a role change made by `npm run admin` (scripts/admin.ts). */
    actorId: text("actor_id").notNull(),
    action: text("action", {
      enum: ["grant", "suspension", "reinstatement", "reconciliation_start", "role_grant", "role_revoke"],
    }).notNull(),
    /** The user granted, suspended or reinstated; the reconciliation run started. */
    targetId: text("target_id").notNull(),
    /** JSON object: what the action said (amount and reason, reason, trigger). */
    detail: text("detail").notNull(),
    /** The server's own id of the request that acted (its X-Request-Id), or the operator command's run id. */
    requestId: text("request_id").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("admin_audit_created_idx").on(t.createdAt, t.id)],
);

export type UserRow = typeof users.$inferSelect;
export type ChatRow = typeof chats.$inferSelect;
export type ChatMemberRow = typeof chatMembers.$inferSelect;
