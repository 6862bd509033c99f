import { sql } from "drizzle-orm";
import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import { applyMigrations } from "../object-migrations";

/**
 * The ChatDO's own SQLite schema, typed once here (Drizzle, `drizzle-orm/durable-sqlite`) and
 * created by MIGRATIONS below (test/chats/chat-schema.test.ts checks the two agree column by
 * column). One object per chat (`idFromName(chatId)`), so nothing here carries a chat id but the
 * one `chat` row. Times are epoch ms.
 *
 * Invariants the schema holds itself: `seq` is the primary key of `messages` (never two messages
 * at one seq), a message id and a transfer id appear once, one `clientMessageId` per sender, one
 * stored outcome per (caller, key).
 */

/** The chat itself (one row): identity, the seq counter, the outbox's bookkeeping. */
export const chatRow = sqliteTable("chat", {
  id: integer("id").primaryKey(),
  chatId: text("chat_id").notNull(),
  type: text("type", { enum: ["direct", "group"] }).notNull(),
  title: text("title"),
  createdBy: text("created_by").notNull(),
  createdAt: integer("created_at").notNull(),
  /** The 6 bytes (12 hex) every message id of this chat carries, so a message id finds its chat. */
  routeTag: text("route_tag").notNull(),
  /** The highest seq given out: the next message takes `last_seq + 1` in the same transaction. */
  lastSeq: integer("last_seq").notNull(),
  lastActivityAt: integer("last_activity_at").notNull(),
  /** The summary (last seq, message, activity) last written to the D1 directory row. */
  flushedSeq: integer("flushed_seq").notNull(),
  /** Bumped by every change the directory must learn (an edit of the last message, a member change). */
  summaryVersion: integer("summary_version").notNull(),
  flushedVersion: integer("flushed_version").notNull(),
  /**
   * The membership's version: bumped by every member change (creation, add, remove, handover) and
   * stamped on the rows it changed, so the outbox (summary.ts) sends the directory and the users'
   * objects each member's latest state, which they apply forward only.
   */
  indexVersion: integer("index_version").notNull().default(0),
  /** The highest `index_version` the directory acknowledged. */
  flushedIndexVersion: integer("flushed_index_version").notNull().default(0),
  /** The highest `index_version` the users' objects acknowledged (told by the alarm, not by requests). */
  toldIndexVersion: integer("told_index_version").notNull().default(0),
});

export const members = sqliteTable(
  "members",
  {
    userId: text("user_id").primaryKey(),
    role: text("role", { enum: ["owner", "member"] }).notNull(),
    joinedAt: integer("joined_at").notNull(),
    lastReadSeq: integer("last_read_seq").notNull(),
    /** The marker last written to the member's own directory row (chat_members.last_read_seq). */
    flushedReadSeq: integer("flushed_read_seq").notNull(),
    /** The user's status as their object last told this chat (wallet/facts-outbox.ts), at `facts_version`. */
    suspended: integer("suspended", { mode: "boolean" }).notNull(),
    /** Unused since v3: frames go to every member's realtime object, which knows its sockets (no presence here). */
    online: integer("online", { mode: "boolean" }).notNull(),
    /** The chat's `index_version` of this member's last change (outbox: summary.ts). */
    indexVersion: integer("index_version").notNull().default(0),
    /** The owner's version `suspended` was told at (v3): a fact with a version at or below it is old news. */
    factsVersion: integer("facts_version").notNull().default(0),
  },
  (t) => [index("members_joined").on(t.joinedAt, t.userId), index("members_index_version").on(t.indexVersion)],
);

/**
 * Who left or was removed (and admissions that did not complete), with the version of that change:
 * a removal repeated answers 200 and finishes what is owed, and the outbox tells the directory
 * and the user's object that the user is gone. Cleared when the user joins again.
 */
export const departed = sqliteTable(
  "departed",
  {
    userId: text("user_id").primaryKey(),
    leftAt: integer("left_at").notNull(),
    indexVersion: integer("index_version").notNull(),
  },
  (t) => [index("departed_index_version").on(t.indexVersion)],
);

/**
 * An add in progress: the place is held in the group (counted against MAX_GROUP_MEMBERS) while the
 * user's object is asked whether the user may join (MAX_CHATS_PER_USER, MAX_GROUPS_OWNED). The
 * alarm gives up a place held longer than an admission can take (a crash between the two steps).
 */
export const admissions = sqliteTable("admissions", {
  userId: text("user_id").primaryKey(),
  role: text("role", { enum: ["owner", "member"] }).notNull(),
  startedAt: integer("started_at").notNull(),
});

/**
 * Block facts between the members of a direct chat (blocks do not apply in groups), as the
 * blocker's object told them, each at its version (v2); a lifted block stays as `blocked = 0`, so
 * an older "blocked" still in flight cannot land over it.
 */
export const blocks = sqliteTable(
  "blocks",
  {
    blockerId: text("blocker_id").notNull(),
    blockedId: text("blocked_id").notNull(),
    blocked: integer("blocked", { mode: "boolean" }).notNull().default(true),
    version: integer("version").notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.blockerId, t.blockedId] }), index("blocks_blocked").on(t.blockedId)],
);

export const messages = sqliteTable(
  "messages",
  {
    seq: integer("seq").primaryKey(),
    id: text("id").notNull(),
    senderId: text("sender_id").notNull(),
    type: text("type", { enum: ["text", "credit_transfer", "system"] }).notNull(),
    content: text("content"),
    replyToMessageId: text("reply_to_message_id"),
    clientMessageId: text("client_message_id"),
    transferId: text("transfer_id"),
    transferRecipientId: text("transfer_recipient_id"),
    transferAmount: integer("transfer_amount"),
    transferNote: text("transfer_note"),
    createdAt: integer("created_at").notNull(),
    editedAt: integer("edited_at"),
    deletedAt: integer("deleted_at"),
  },
  (t) => [
    uniqueIndex("messages_id_unique").on(t.id),
    uniqueIndex("messages_transfer_unique").on(t.transferId).where(sql`transfer_id IS NOT NULL`),
    uniqueIndex("messages_client_unique").on(t.senderId, t.clientMessageId).where(sql`client_message_id IS NOT NULL`),
  ],
);

/** Stored outcomes of keyed sends into this chat (API.md §1): the exact status and body a replay answers. */
export const sendKeys = sqliteTable(
  "send_keys",
  {
    userId: text("user_id").notNull(),
    key: text("key").notNull(),
    fingerprint: text("fingerprint").notNull(),
    status: integer("status").notNull(),
    body: text("body").notNull(),
    messageId: text("message_id").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.key] }), index("send_keys_created").on(t.createdAt)],
);

/** Running totals of this chat's `credit_transfer` messages per sender: reconciliation's view of the messages. */
export const transferTotals = sqliteTable("transfer_totals", {
  senderId: text("sender_id").primaryKey(),
  count: integer("count").notNull(),
  amount: integer("amount").notNull(),
});

export const chatSchema = { chatRow, members, departed, admissions, blocks, messages, sendKeys, transferTotals };

export type ChatMeta = typeof chatRow.$inferSelect;
export type MemberRow = typeof members.$inferSelect;
export type ChatMessageRow = typeof messages.$inferSelect;
export type SendKeyRow = typeof sendKeys.$inferSelect;
export type DepartedRow = typeof departed.$inferSelect;

/** Each entry is one version, applied in order in one transaction from the constructor. Never edit a shipped one. */
export const MIGRATIONS: readonly string[] = [
  // v1
  `
  CREATE TABLE chat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    chat_id TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('direct', 'group')),
    title TEXT,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    route_tag TEXT NOT NULL,
    last_seq INTEGER NOT NULL CHECK (last_seq >= 0),
    last_activity_at INTEGER NOT NULL,
    legacy_up_to INTEGER NOT NULL,
    imported_up_to INTEGER NOT NULL,
    flushed_seq INTEGER NOT NULL,
    summary_version INTEGER NOT NULL,
    flushed_version INTEGER NOT NULL
  );
  CREATE TABLE members (
    user_id TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    joined_at INTEGER NOT NULL,
    last_read_seq INTEGER NOT NULL CHECK (last_read_seq >= 0),
    flushed_read_seq INTEGER NOT NULL,
    suspended INTEGER NOT NULL,
    online INTEGER NOT NULL
  );
  CREATE TABLE blocks (
    blocker_id TEXT NOT NULL,
    blocked_id TEXT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
  );
  CREATE INDEX blocks_blocked ON blocks (blocked_id);
  CREATE TABLE messages (
    seq INTEGER PRIMARY KEY CHECK (seq >= 1),
    id TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('text', 'credit_transfer', 'system')),
    content TEXT,
    reply_to_message_id TEXT,
    client_message_id TEXT,
    transfer_id TEXT,
    transfer_recipient_id TEXT,
    transfer_amount INTEGER,
    transfer_note TEXT,
    created_at INTEGER NOT NULL,
    edited_at INTEGER,
    deleted_at INTEGER
  );
  CREATE UNIQUE INDEX messages_id_unique ON messages (id);
  CREATE UNIQUE INDEX messages_transfer_unique ON messages (transfer_id) WHERE transfer_id IS NOT NULL;
  CREATE UNIQUE INDEX messages_client_unique ON messages (sender_id, client_message_id) WHERE client_message_id IS NOT NULL;
  CREATE TABLE send_keys (
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    message_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
  );
  CREATE INDEX send_keys_created ON send_keys (created_at);
  CREATE TABLE transfer_totals (
    sender_id TEXT PRIMARY KEY,
    count INTEGER NOT NULL CHECK (count >= 0),
    amount INTEGER NOT NULL CHECK (amount >= 0)
  );
  `,
  // v2: membership owned by the chat (created here first; the directory and users follow from the
  // outbox), and no history outside the chat (no deployment ever held D1 history: the legacy marks go)
  `
  ALTER TABLE chat DROP COLUMN legacy_up_to;
  ALTER TABLE chat DROP COLUMN imported_up_to;
  ALTER TABLE chat ADD COLUMN index_version INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE chat ADD COLUMN flushed_index_version INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE chat ADD COLUMN told_index_version INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE members ADD COLUMN index_version INTEGER NOT NULL DEFAULT 0;
  CREATE INDEX members_joined ON members (joined_at, user_id);
  CREATE INDEX members_index_version ON members (index_version);
  CREATE TABLE departed (
    user_id TEXT PRIMARY KEY,
    left_at INTEGER NOT NULL,
    index_version INTEGER NOT NULL
  );
  CREATE INDEX departed_index_version ON departed (index_version);
  CREATE TABLE admissions (
    user_id TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    started_at INTEGER NOT NULL
  );
  `,
  // v3 "versioned facts": the members' status and the blocks carry their owner's version and
  // move forward only (ARCHITECTURE.md §11); a lifted block is kept as blocked = 0.
  `
  ALTER TABLE members ADD COLUMN facts_version INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE blocks ADD COLUMN blocked INTEGER NOT NULL DEFAULT 1;
  ALTER TABLE blocks ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
  `,
];

/** Applies every migration newer than the stored version, in one transaction. */
export function migrate(storage: DurableObjectStorage): void {
  applyMigrations(storage, MIGRATIONS);
}
