import {
  and,
  asc,
  desc,
  eq,
  exists,
  getTableColumns,
  gt,
  inArray,
  lt,
  notExists,
  or,
  type Placeholder,
  type SQL,
  type SQLWrapper,
  sql,
} from "drizzle-orm";
import type { BatchItem, BatchResponse } from "drizzle-orm/batch";
import { z } from "zod";
import type { Database } from "../db/client";
import { insertWhere } from "../db/insert-where";
import { batchPrepared, type Param, preparedPerDatabase } from "../db/prepared";
import { connectedMembersQuery, isConnected } from "../db/presence";
import { chatMembers, chats, type MessageRow, messages, realtimePresence, type UserRow, users } from "../db/schema";
import type { TransferMessage } from "../durable-objects/wallet/effects";
import { decodeCursor, toPage } from "../lib/cursor";
import { successBody } from "../lib/envelope";
import { ApiError } from "../lib/errors";
import { type IdempotencyClaim, isBatchClaim } from "../lib/idempotency";
import { ID_PATTERN, newId } from "../lib/ids";
import { type Message, toMessage } from "../schemas/message";
import {
  type BatchClaim,
  type BatchClaimSql,
  batchClaimValues,
  type KeyClaim,
  keyClaimStatements,
  keyFreeInBatchSql,
  readKeyClaim,
  recordMessageOnClaim,
  restoreBatchOutcome,
} from "./idempotency";
import { blockedInDirectChatSql, directChatStatements, isMemberSql } from "./membership";
import { assertActiveUser, assertMaySend, assertSendToFacts, canSendToSql, isActiveSql, recipientBlocked } from "./users";

/**
 * The only module that reads or writes the `messages` table (ARCHITECTURE.md §10: message storage
 * may move to one Durable Object per chat; everything else goes through these functions).
 */

/** A message to append; `id` is drawn when absent (a transfer's message has its transfer's id). */
type NewMessage = Omit<typeof messages.$inferInsert, "id" | "seq" | "chatId"> & { id?: string };

/** A message row as an append binds it: every column but the chat's, each a value or a named placeholder. */
type AppendInput = { [K in keyof Required<NewMessage>]: Param<Required<NewMessage>[K]> };

/**
 * A posted message; only when this call created it, `connectedMemberIds`: the members of the chat
 * when it was posted who had an open realtime socket (the others are not pushed to).
 */
export type Posted = { message: Message; created: true; connectedMemberIds: string[] } | { message: Message; created: false };

/** What decides where and whether a message goes in; all of it is evaluated inside the append's batch. */
type AppendRule = {
  /** The chat: its id (or placeholder), or SQL for it (e.g. `directChatStatements().chatId`). */
  chatId: Param<string> | SQL;
  /** Must hold for the insert to happen (the sender's checks); absent: always. */
  allowed?: SQL | undefined;
  /** A predicate on `messages` naming "the same message": if a row matches, nothing is inserted and that row is the result. */
  sameMessage?: SQL | undefined;
  /** A claim-first Idempotency-Key claim (services/idempotency.ts): the batch records the new message's id on it. */
  recordOn?: IdempotencyClaim | undefined;
  /**
   * A claim the batch takes (`keyClaimStatements`: its values or placeholders), with the 201's body
   * around the chat id and seq the batch fills in (`createdBodyParts`); the message's id is the claim's.
   */
  takes?: { claim: BatchClaimSql; body: { head: Param<string>; tail: Param<string> } } | undefined;
  /** Read the chat's members with an open socket (for the push); a transfer's message is pushed by its transfer. */
  readConnected?: boolean;
  /**
   * Facts to read in the append's last statement, beside the message (the sender's checks, read
   * for a refusal's name in the same snapshot). Aliased with names no column of `messages` has:
   * D1 batch rows are keyed by column name.
   */
  facts?: Record<string, SQL.Aliased> | undefined;
};

/** The append's last read: its facts, the message (null when none), and what the batch reports back. */
type ReadBack = { message: MessageRow | null; connected?: string[]; keyLive?: boolean } & Record<string, unknown>;

const OPTIONAL_FIELDS_UNSET = {
  content: null,
  replyToMessageId: null,
  clientMessageId: null,
  transferId: null,
  transferRecipientId: null,
  transferAmount: null,
  transferNote: null,
  editedAt: null,
  deletedAt: null,
} as const;

const chatNotFound = (chatId: string | SQL) =>
  new ApiError("chat_not_found", [
    typeof chatId === "string" ? `No chat ${chatId} among your chats` : "No such chat among your chats",
  ]);

/**
 * Runs `before` and then the append of a message, as ONE D1 batch (one transaction; D1 runs
 * batches one at a time), so a send is one round trip:
 * 1. `INSERT … SELECT` from the chat row with `seq = last_seq + 1`, only where `rule.allowed` holds,
 *    no `rule.sameMessage` exists and a key its batch claims is free;
 * 2. keyed by the new message's id, so they do nothing when step 1 inserted nothing: the chat's
 *    `last_seq` and activity move to it, the sender's read marker moves to it (your own messages
 *    are never unread), every membership's activity time is stamped (the indexed chat list), and
 *    the Idempotency-Key claim records it;
 * 3. ONE read: the new message or the existing same message, `rule.facts`, and the members with
 *    an open realtime socket (presence), so the push skips the others at no extra round trip.
 * Statements are what a batch costs (each one is a unit of D1's work, and under Miniflare about a
 * tenth of a millisecond of the one thread: bench/README.md), so the reads are one.
 * So seqs run 1, 2, 3… with no gap and no repeat, and any number of concurrent or repeated calls
 * with one `sameMessage` key end in one message. `posted` is undefined when `allowed` did not
 * hold (or the chat does not exist); `facts` and `before`'s results (read in the same
 * transaction) say why. With a fixed `input.id` (a transfer's message), a repeat reads as
 * `created`: such callers use only the message.
 * A claim for the batch to take (`isBatchClaim`) adds the key's statements (services/
 * idempotency.ts `keyClaimStatements`): the insert only while the key is free (else
 * KeyHeldError, nothing written), and the key's row written with the message and its 201; the
 * message takes the claim's id. The hot sends run the same statements prepared once
 * (`preparedChatSend`).
 */
async function appendInBatch<B extends readonly BatchItem<"sqlite">[]>(
  db: Database,
  before: B,
  input: NewMessage,
  rule: Omit<AppendRule, "recordOn" | "takes"> & { claim?: KeyClaim | null | undefined },
): Promise<{ before: BatchResponse<B>; posted: Posted | undefined; facts: Record<string, unknown> }> {
  const { claim, ...where } = rule;
  const batchClaim = isBatchClaim(claim) ? claim : undefined;
  const row = { ...OPTIONAL_FIELDS_UNSET, ...input, id: batchClaim?.messageId ?? input.id ?? newId(input.createdAt) };
  const body = batchClaim && createdBodyParts(row);
  const append = appendStatements(db, row, {
    ...where,
    recordOn: claim && !batchClaim ? claim : undefined,
    takes: batchClaim && body && { claim: batchClaimValues(batchClaim), body },
  });
  const batch = [...before, ...append.statements];
  if (batchClaim) batchClaim.batch = "sent";
  const results = (await db.batch(batch as unknown as [BatchItem<"sqlite">])) as unknown[];
  const settled = await settleAppend(
    db,
    append,
    row.id,
    results.slice(before.length),
    batchClaim && body && { claim: batchClaim, timestamp: body.timestamp },
  );
  return { before: results.slice(0, before.length) as BatchResponse<B>, ...settled };
}

/**
 * What an append's batch answered, read the same way for a batch built per call or prepared:
 * the claim it took (KeyHeldError when its key was held), the posted message and the facts, and
 * the 201 stored with it checked against the row as D1 stored it.
 */
async function settleAppend(
  db: Database,
  append: Pick<ReturnType<typeof appendStatements>, "read" | "readClaim">,
  id: string,
  results: readonly unknown[],
  taken: { claim: BatchClaim; timestamp: string } | undefined,
): Promise<{ posted: Posted | undefined; facts: Record<string, unknown> }> {
  if (taken) append.readClaim(taken.claim, results);
  const { found, posted, facts } = append.read(results, id);
  if (taken?.claim.outcome && posted?.created && found) await checkStoredBody(db, taken.claim, taken.timestamp, found);
  return { posted, facts };
}

/**
 * The statements of one append (appendInBatch has the steps), each value of `input` and `rule` a
 * value or a named placeholder, so a hot path can prepare them once per database: `statements`,
 * and readers of their results (this append's own, in the order of `statements`):
 * `read(results, id)` gives the posted message (`id`: the message id as bound), the row read
 * back and the facts; `readClaim(claim, results)` reads the key's part onto a batch claim.
 * Several appends without a claim can share one batch: each one's statements name only its own
 * message id, and the chat's `last_seq` moves between them in batch order.
 */
function appendStatements(db: Database, input: AppendInput, rule: AppendRule) {
  const { id } = input;
  const ourId = sql`(SELECT ${messages.id} FROM ${messages} WHERE ${messages.id} = ${id})`;
  const ourChat = sql`(SELECT ${messages.chatId} FROM ${messages} WHERE ${messages.id} = ${id})`;
  const ourSeq = sql`(SELECT ${messages.seq} FROM ${messages} WHERE ${messages.id} = ${id})`;
  const row = { ...input, chatId: sql`${chats.id}`, seq: sql`${chats.lastSeq} + 1` };
  const sameMessage = rule.sameMessage && db.select({ one: sql`1` }).from(messages).where(rule.sameMessage);
  const takes = rule.takes;
  const keyClaim =
    takes &&
    keyClaimStatements(db, takes.claim, {
      messageId: ourId,
      kept: sameMessage && exists(sameMessage),
      outcome: { status: 201, body: createdBodySql(takes.body, id) },
    });
  const mayInsert = and(eq(chats.id, rule.chatId), rule.allowed, keyClaim?.free, sameMessage && notExists(sameMessage))!;
  const writes = [
    insertWhere(db, messages, row, sql`${chats}`, mayInsert),
    db
      .update(chats)
      // max(): when nothing was inserted and `id` names an existing message (a transfer's message
      // posted again), the chat and the marker must not move back to that message's seq.
      .set({
        lastSeq: sql`max(${chats.lastSeq}, ${ourSeq})`,
        lastActivityAt: sql`max(${chats.lastActivityAt}, ${input.createdAt})`,
      })
      .where(eq(chats.id, ourChat)),
    // One statement for every membership of the chat: the activity time (the indexed chat list),
    // and for the sender also the read marker.
    db
      .update(chatMembers)
      .set({
        lastActivityAt: sql`max(${chatMembers.lastActivityAt}, ${input.createdAt})`,
        lastReadSeq: sql`CASE WHEN ${chatMembers.userId} = ${input.senderId} THEN max(${chatMembers.lastReadSeq}, ${ourSeq}) ELSE ${chatMembers.lastReadSeq} END`,
      })
      .where(eq(chatMembers.chatId, ourChat)),
    ...(rule.recordOn ? [recordMessageOnClaim(db, rule.recordOn, ourId)] : []),
    ...(keyClaim ? [keyClaim.claim] : []),
  ];
  const connected = sql<string[]>`(SELECT json_group_array(${chatMembers.userId}) FROM ${chatMembers}
    JOIN ${realtimePresence} ON ${isConnected(chatMembers.userId)} WHERE ${chatMembers.chatId} = ${ourChat})`.mapWith(
    (value: string) => JSON.parse(value) as string[],
  );
  // From a one-row base, so the facts come back whether or not there is a message.
  const readBack = db
    .select({
      ...rule.facts,
      ...(keyClaim ? { keyLive: keyClaim.live.as("key_live") } : {}),
      ...(rule.readConnected === false ? {} : { connected: connected.as("connected") }),
      message: getTableColumns(messages),
    })
    .from(sql`(SELECT 1)`)
    .leftJoin(messages, rule.sameMessage ? or(eq(messages.id, id), rule.sameMessage) : eq(messages.id, id))
    .limit(1);
  const statements = [...writes, readBack];
  const claimAt = keyClaim ? writes.indexOf(keyClaim.claim) : -1;
  const readAt = statements.length - 1;
  const readBackOf = (results: readonly unknown[]) => (results[readAt] as ReadBack[])[0] as ReadBack;
  const read = (results: readonly unknown[], boundId: string) => {
    const { message, connected: connectedIds, keyLive: _, ...facts } = readBackOf(results);
    const found = message ?? undefined;
    let posted: Posted | undefined;
    if (found === undefined) posted = undefined;
    else if (found.id !== boundId) posted = { message: toMessage(found), created: false };
    else posted = { message: toMessage(found), created: true, connectedMemberIds: connectedIds ?? [] };
    return { found, posted, facts };
  };
  const readClaim = (claim: BatchClaim, results: readonly unknown[]) =>
    readKeyClaim(claim, results[claimAt] as Parameters<typeof readKeyClaim>[1], readBackOf(results).keyLive === true);
  return { statements, read, readClaim };
}

/** The 201 of a send, as the routes answer it (`ok(c, message, 201)`), with a given envelope `timestamp`. */
export function createdMessageBody(message: Message, timestamp: string = new Date().toISOString()): string {
  return JSON.stringify({ ...successBody(message, 201), timestamp });
}

const SPLICED = `"chatId":"","seq":0,`;

/**
 * The 201 body of a message about to be inserted, in two parts around what its batch fills in:
 * everything is known before the batch but the chat id (a direct chat may be created by it) and
 * the `seq` it allocates, which `createdBodySql` reads from the inserted row. They are the 2nd and
 * 3rd members of `data`, after fixed-format ones, so the first occurrence of the placeholder is theirs.
 */
function createdBodyParts(row: Omit<MessageRow, "chatId" | "seq">) {
  const timestamp = new Date().toISOString();
  const text = createdMessageBody(toMessage({ ...row, chatId: "", seq: 0 }), timestamp);
  const at = text.indexOf(SPLICED);
  if (at < 0) throw new Error("a message's 201 body does not carry chatId and seq where expected");
  return { head: `${text.slice(0, at)}"chatId":"`, tail: `,${text.slice(at + SPLICED.length)}`, timestamp };
}

/** SQL: the 201 body of the message `id` as inserted (its chat id and seq between the parts of `createdBodyParts`). */
const createdBodySql = (body: { head: Param<string>; tail: Param<string> }, id: Param<string>) =>
  sql`(SELECT ${body.head} || ${messages.chatId} || ${'","seq":'} || ${messages.seq} || ${body.tail} FROM ${messages} WHERE ${messages.id} = ${id})`;

/**
 * The body stored with the message must be the message as D1 stored it (what a GET shows): built
 * before the batch from the input, it is checked against the row read back in the same batch and
 * replaced in the rare case they differ (text D1 does not store as given, e.g. a lone surrogate).
 */
async function checkStoredBody(db: Database, claim: BatchClaim, timestamp: string, found: MessageRow) {
  const exact = createdMessageBody(toMessage(found), timestamp);
  if (claim.outcome?.body !== exact) await restoreBatchOutcome(db, claim, exact);
}

/**
 * Appends a message to a chat by id (system messages; the sends below carry more checks). With
 * `senderMustBeMember`, a sender who is not (or no longer) a member gets 404 `chat_not_found` and
 * nothing changes: the check is part of the insert, not a read before it.
 */
export async function appendMessage(
  db: Database,
  input: NewMessage & { chatId: string },
  options: { senderMustBeMember?: boolean } = {},
): Promise<Posted> {
  const { chatId, ...message } = input;
  const allowed = options.senderMustBeMember ? isMemberSql(chatId, input.senderId) : undefined;
  const { posted } = await appendInBatch(db, [], message, { chatId, allowed });
  if (!posted) throw chatNotFound(chatId);
  return posted;
}

/** A credited transfer's message, as the wallet hands it over (durable-objects/wallet/effects.ts). */
export type CreditTransferMessageInput = TransferMessage;

/**
 * Posts the `credit_transfer` messages of transfers, each into the direct chat of its payer and
 * payee, all in ONE batch (one D1 round trip for a sender's whole group commit), each keyed by its
 * `transferId` (UNIQUE): any number of calls, concurrent or repeated by the transfer protocol's
 * recovery, return the one message with one seq per transfer. The sender is the payer; `content`
 * is null, the transfer is in `creditTransfer`. Blocks and suspension are NOT checked here: the
 * transfer protocol checked them before moving credits, and a transfer that moved credits must
 * get its message. Called only after the recipients' credits (API.md: nobody sees a transfer
 * message for credits that are not in the recipient's balance). The messages come back in the
 * order of `inputs` (undefined where the chat does not exist); a D1 failure fails them all (none is
 * half-written: a batch is one transaction).
 */
export async function postCreditTransferMessages(
  db: Database,
  inputs: readonly CreditTransferMessageInput[],
): Promise<(Message | undefined)[]> {
  if (inputs.length === 0) return [];
  const { queries, read } = preparedCreditTransferAppend(db);
  const results = (await batchPrepared(
    db,
    inputs.flatMap(() => queries),
    inputs.flatMap((input) => queries.map(() => input)),
  )) as unknown[];
  return inputs.map(
    (input, i) => read(results.slice(i * queries.length, (i + 1) * queries.length), input.messageId).posted?.message,
  );
}

/**
 * One transfer's message append, prepared once per database; bound with a `CreditTransferMessageInput`'s
 * fields. Exposed so a test can EXPLAIN its statements.
 */
export const preparedCreditTransferAppend = preparedPerDatabase((db) => {
  const transferId = sql.placeholder("transferId");
  const append = appendStatements(
    db,
    {
      ...OPTIONAL_FIELDS_UNSET,
      id: sql.placeholder("messageId"),
      senderId: sql.placeholder("senderId"),
      type: "credit_transfer",
      transferId,
      transferRecipientId: sql.placeholder("recipientId"),
      transferAmount: sql.placeholder("amount"),
      transferNote: sql.placeholder("note"),
      createdAt: sql.placeholder("createdAt"),
    },
    { chatId: sql.placeholder("chatId"), sameMessage: eq(messages.transferId, transferId), readConnected: false },
  );
  return { queries: append.statements.map((statement) => statement.prepare()), read: append.read };
});

/** The message at each chat's `last_seq` (its last message), for the chats `chatIds` selects (ids or a subquery). */
export function lastMessagesQuery(db: Database, chatIds: string[] | SQLWrapper) {
  return db
    .select(getTableColumns(messages))
    .from(chats)
    .innerJoin(messages, and(eq(messages.chatId, chats.id), eq(messages.seq, chats.lastSeq)))
    .where(inArray(chats.id, chatIds));
}

/** A message by id (no membership check: for callers that already know it is the caller's). */
export async function findMessage(db: Database, messageId: string): Promise<Message | undefined> {
  const row = await db.select().from(messages).where(eq(messages.id, messageId)).get();
  return row && toMessage(row);
}

/**
 * v1: a text message to a user, in your direct chat with them (created if missing). One batch:
 * the checks of `assertCanSendTo` (read for the refusal, and as the insert's precondition), the
 * chat created if missing, the append. A refused send changes nothing.
 */
export async function sendDirectMessage(
  db: Database,
  senderId: string,
  recipientId: string,
  content: string,
  claim: KeyClaim | null = null,
): Promise<Posted> {
  if (recipientId === senderId) throw new ApiError("validation_failed", ["recipientId: cannot message yourself"]);
  const now = Date.now();
  const checks = canSendToSql(db, senderId, recipientId);
  // A request whose key its batch finds held creates no chat either.
  const direct = directChatStatements(db, senderId, recipientId, now, and(checks.allowed, keyFreeInBatchSql(db, claim)));
  const { before, posted } = await appendInBatch(
    db,
    [checks.facts, ...direct.statements] as const,
    { senderId, type: "text", content, createdAt: now },
    { chatId: direct.chatId, allowed: and(checks.allowed, isMemberSql(direct.chatId, senderId)), claim },
  );
  assertSendToFacts(before[0][0], recipientId);
  if (!posted) throw chatNotFound(direct.chatId);
  return posted;
}

/**
 * v2: a text message into a chat you are a member of, in one batch whose insert carries every
 * check; the same batch reads them, so a refusal is named from the same snapshot. Checks, in
 * order: you are active (403 `account_suspended`); the chat is yours (404 `chat_not_found`); a
 * known `clientMessageId` of yours in this chat returns the original (`created: false`, answered
 * 200); in a direct chat, the other person has not blocked you (403 `recipient_blocked`; blocks do
 * not apply inside groups); `replyToMessageId` is a message of this chat (400).
 */
export async function sendChatMessage(
  db: Database,
  senderId: string,
  input: {
    chatId: string;
    content: string;
    replyToMessageId?: string | null | undefined;
    clientMessageId?: string | null | undefined;
  },
  claim: KeyClaim | null = null,
): Promise<Posted> {
  const { chatId } = input;
  // An explicit null means absent (the Message resource types both fields string|null).
  const replyToMessageId = input.replyToMessageId ?? null;
  const clientMessageId = input.clientMessageId ?? null;
  const createdAt = Date.now();
  const values: ChatSendValues = { senderId, chatId, content: input.content, replyToMessageId, clientMessageId, createdAt };
  let settled: { posted: Posted | undefined; facts: Record<string, unknown> };
  if (claim === null || isBatchClaim(claim)) {
    settled = await runPreparedChatSend(db, values, claim);
  } else {
    // A claim-first retry (services/idempotency.ts) records its message on its claim: built per call, rare.
    const message = { senderId, type: "text" as const, content: input.content, replyToMessageId, clientMessageId, createdAt };
    settled = await appendInBatch(db, [], message, { ...chatSendStatements(db, values).rule, claim });
  }
  const { posted } = settled;
  const sender = settled.facts as ChatSendFacts;
  assertMaySend(sender.status === null ? undefined : { status: sender.status });
  if (!sender.member) throw chatNotFound(chatId);
  if (posted) return posted;
  if (sender.blocked) throw recipientBlocked();
  if (!sender.replyInChat) throw new ApiError("validation_failed", ["replyToMessageId: no such message in this chat"]);
  throw new Error(`message to chat ${chatId} neither inserted nor refused`);
}

/** A v2 send's values, each bound as a value or as the placeholder of the same name (`preparedChatSend`). */
type ChatSendValues = {
  senderId: string;
  chatId: string;
  content: string;
  replyToMessageId: string | null;
  clientMessageId: string | null;
  createdAt: number;
};
/** The sender's facts a v2 send reads (`status` null: no such user). */
type ChatSendFacts = { status: UserRow["status"] | null; member: boolean; blocked: boolean; replyInChat: boolean };

/**
 * The sender's facts (read for a refusal's name, in the same snapshot) and the append rule of a
 * v2 send, from values or placeholders: `values` names which optional parts the send has (a
 * reply, a client message id), so a prepared shape binds only what it uses.
 */
function chatSendStatements(
  db: Database,
  values: { [K in keyof ChatSendValues]: Param<ChatSendValues[K]> },
  extra: Pick<AppendRule, "recordOn" | "takes"> = {},
) {
  const { senderId, chatId, replyToMessageId, clientMessageId } = values;
  const member = isMemberSql(chatId, senderId);
  const blocked = blockedInDirectChatSql(chatId, senderId);
  const replyInChat =
    replyToMessageId === null
      ? sql`1`.mapWith(Boolean)
      : sql`EXISTS (SELECT 1 FROM ${messages} WHERE ${messages.id} = ${replyToMessageId} AND ${messages.chatId} = ${chatId})`.mapWith(
          Boolean,
        );
  const status = sql<UserRow["status"] | null>`(SELECT ${users.status} FROM ${users} WHERE ${users.id} = ${senderId})`;
  const rule: AppendRule = {
    chatId,
    facts: {
      status: status.as("status"),
      member: member.as("member"),
      blocked: blocked.as("blocked"),
      replyInChat: replyInChat.as("reply_in_chat"),
    },
    allowed: sql`${isActiveSql(senderId)} AND ${member} AND NOT ${blocked} AND ${replyInChat}`,
    sameMessage:
      clientMessageId === null
        ? undefined
        : and(eq(messages.chatId, chatId), eq(messages.senderId, senderId), eq(messages.clientMessageId, clientMessageId)),
    ...extra,
  };
  const input = { senderId, type: "text" as const, content: values.content, replyToMessageId, clientMessageId };
  return { rule, input };
}

/**
 * The v2 send's batch, prepared once per database for each shape: with or without a key the
 * batch claims, a reply, a client message id (Drizzle building it on every send was a fifth of a
 * send's thread time: bench/README.md). Placeholders are named as `ChatSendValues`, the claim's
 * as `BatchClaimSql` (`messageId` is the message's id) and the 201 body's parts `bodyHead`, `bodyTail`.
 * Exposed so a test can EXPLAIN its statements.
 */
export const preparedChatSend = preparedPerDatabase((db) => {
  const shapes = new Map<string, ReturnType<typeof prepareChatSend>>();
  return (shape: { keyed: boolean; reply: boolean; clientId: boolean }) => {
    const name = `${shape.keyed}:${shape.reply}:${shape.clientId}`;
    let prepared = shapes.get(name);
    if (!prepared) {
      prepared = prepareChatSend(db, shape);
      shapes.set(name, prepared);
    }
    return prepared;
  };
});

function prepareChatSend(db: Database, shape: { keyed: boolean; reply: boolean; clientId: boolean }) {
  const p = sql.placeholder;
  const messageId = p("messageId");
  const senderId = p("senderId");
  const send = chatSendStatements(
    db,
    {
      senderId,
      chatId: p("chatId"),
      content: p("content"),
      replyToMessageId: shape.reply ? p("replyToMessageId") : null,
      clientMessageId: shape.clientId ? p("clientMessageId") : null,
      createdAt: p("createdAt"),
    },
    shape.keyed
      ? {
          takes: {
            claim: {
              userId: p("userId"),
              key: p("key"),
              fingerprint: p("fingerprint"),
              claimedAt: p("claimedAt"),
              messageId,
              expiredBefore: p("expiredBefore"),
            },
            body: { head: p("bodyHead"), tail: p("bodyTail") },
          },
        }
      : {},
  );
  const append = appendStatements(
    db,
    { ...OPTIONAL_FIELDS_UNSET, ...send.input, id: messageId, createdAt: p("createdAt") },
    send.rule,
  );
  return {
    queries: append.statements.map((statement) => statement.prepare()),
    read: append.read,
    readClaim: append.readClaim,
  };
}

/** A v2 send without a key or with one its batch claims: the prepared batch of its shape, bound to this send. */
async function runPreparedChatSend(
  db: Database,
  values: ChatSendValues,
  claim: BatchClaim | null,
): Promise<{ posted: Posted | undefined; facts: Record<string, unknown> }> {
  const messageId = claim?.messageId ?? newId(values.createdAt);
  const prepared = preparedChatSend(db)({
    keyed: claim !== null,
    reply: values.replyToMessageId !== null,
    clientId: values.clientMessageId !== null,
  });
  const body =
    claim &&
    createdBodyParts({
      ...OPTIONAL_FIELDS_UNSET,
      id: messageId,
      senderId: values.senderId,
      type: "text",
      content: values.content,
      replyToMessageId: values.replyToMessageId,
      clientMessageId: values.clientMessageId,
      createdAt: values.createdAt,
    });
  const bound = {
    ...values,
    messageId,
    ...(claim && body ? { ...batchClaimValues(claim), bodyHead: body.head, bodyTail: body.tail } : {}),
  };
  if (claim) claim.batch = "sent";
  const results = (await batchPrepared(db, prepared.queries, bound)) as unknown[];
  return settleAppend(db, prepared, messageId, results, claim && body ? { claim, timestamp: body.timestamp } : undefined);
}

export type PagePosition = { order: "desc" | "asc"; seq: number | null };

/**
 * The list query, exposed so a test can EXPLAIN it: a range of the (chat_id, seq) unique index,
 * walked backwards (newest first) or forwards (catch-up), never sorted in a temp B-tree.
 */
export function messagePageQuery(
  db: Database,
  chatId: string | Placeholder,
  position: { order: PagePosition["order"]; seq: number | Placeholder | null },
  take: number | Placeholder,
) {
  const { order, seq } = position;
  const range = seq === null ? undefined : order === "desc" ? lt(messages.seq, seq) : gt(messages.seq, seq);
  return db
    .select()
    .from(messages)
    .where(and(eq(messages.chatId, chatId), range))
    .orderBy(order === "desc" ? desc(messages.seq) : asc(messages.seq))
    .limit(take);
}

const messageCursorShape = z.object({
  c: z.string().regex(ID_PATTERN),
  s: z.number().int().min(0),
  o: z.enum(["asc", "desc"]),
});

/** The message list's queries built once per database: membership, and a page in each of its three shapes. */
const preparedMessageList = preparedPerDatabase((db) => {
  const [chatId, seq, take] = [sql.placeholder("chatId"), sql.placeholder("seq"), sql.placeholder("take")];
  return {
    membership: db
      .select({ userId: chatMembers.userId })
      .from(chatMembers)
      .where(and(eq(chatMembers.chatId, chatId), eq(chatMembers.userId, sql.placeholder("userId"))))
      .prepare(),
    newest: messagePageQuery(db, chatId, { order: "desc", seq: null }, take).prepare(),
    before: messagePageQuery(db, chatId, { order: "desc", seq }, take).prepare(),
    after: messagePageQuery(db, chatId, { order: "asc", seq }, take).prepare(),
  };
});

/**
 * A page of a chat's messages. Without `afterSeq`: newest first, `cursor` continues below the
 * last seq seen. With `afterSeq`: oldest first from the message after it (catch-up); its
 * `nextCursor` continues forwards. A cursor carries its chat and direction, so it wins over
 * `afterSeq`; a cursor of another chat is 400. Deleted messages keep their place.
 */
export async function listMessages(
  db: Database,
  userId: string,
  chatId: string,
  query: { limit: number; cursor?: string | undefined; afterSeq?: number | undefined },
) {
  let position: PagePosition | undefined;
  let badCursor: unknown;
  try {
    position = pagePositionOf(chatId, query);
  } catch (error) {
    badCursor = error;
  }
  // Membership and the page in one batch (one round trip); a bad cursor is still reported only
  // to members, 404 `chat_not_found` coming first.
  const prepared = preparedMessageList(db);
  if (position === undefined) {
    if (!(await prepared.membership.get({ chatId, userId }))) throw chatNotFound(chatId);
    throw badCursor;
  }
  const page = position.seq === null ? prepared.newest : position.order === "desc" ? prepared.before : prepared.after;
  const [members, rows] = await batchPrepared(db, [prepared.membership, page] as const, {
    chatId,
    userId,
    seq: position.seq,
    take: query.limit + 1,
  });
  if (members.length === 0) throw chatNotFound(chatId);
  const { order } = position;
  return toPage(rows, query.limit, toMessage, (row) => ({ c: chatId, s: row.seq, o: order }));
}

function pagePositionOf(chatId: string, query: { cursor?: string | undefined; afterSeq?: number | undefined }): PagePosition {
  if (query.cursor !== undefined) {
    const decoded = decodeCursor(query.cursor, messageCursorShape);
    if (decoded.c !== chatId) throw new ApiError("validation_failed", ["cursor: belongs to another chat"]);
    return { order: decoded.o, seq: decoded.s };
  }
  if (query.afterSeq !== undefined) return { order: "asc", seq: query.afterSeq };
  return { order: "desc", seq: null };
}

/**
 * The message for an edit or delete by `userId`, checked in API.md's order: not found or not a
 * member → 404 `message_not_found`; not yours → 403; not a live text message → 409 `message_immutable`.
 */
async function ownEditableMessage(db: Database, userId: string, messageId: string): Promise<MessageRow> {
  const row = await db.select().from(messages).where(eq(messages.id, messageId)).get();
  const member =
    row &&
    (await db
      .select({ userId: chatMembers.userId })
      .from(chatMembers)
      .where(and(eq(chatMembers.chatId, row.chatId), eq(chatMembers.userId, userId)))
      .get());
  if (!row || !member) throw new ApiError("message_not_found", [`No message ${messageId} in your chats`]);
  if (row.senderId !== userId) throw new ApiError("insufficient_permissions", ["Only the sender edits or deletes a message"]);
  assertMutable(row);
  return row;
}

function assertMutable(row: Pick<MessageRow, "type" | "deletedAt">) {
  if (row.type !== "text") throw new ApiError("message_immutable", [`A ${row.type} message cannot be edited or deleted`]);
  if (row.deletedAt !== null) throw new ApiError("message_immutable", ["This message was deleted"]);
}

/**
 * Runs a conditional update of a live text message; a concurrent delete between check and write
 * is 409. `notify`: the chat's members with an open socket (read in the same batch).
 */
async function updateLiveText(db: Database, messageId: string, set: Partial<typeof messages.$inferInsert>) {
  const [updated, connected] = await db.batch([
    db
      .update(messages)
      .set(set)
      .where(and(eq(messages.id, messageId), eq(messages.type, "text"), sql`${messages.deletedAt} IS NULL`))
      .returning(),
    connectedMembersQuery(db, sql`(SELECT ${messages.chatId} FROM ${messages} WHERE ${messages.id} = ${messageId})`),
  ]);
  const row = updated[0];
  if (!row) throw new ApiError("message_immutable", ["This message was deleted"]);
  return { message: toMessage(row), notify: connected.map((member) => member.userId) };
}

/** Edits your own text message (a suspended sender cannot: 403 `account_suspended`, after the checks above). */
export async function editMessage(db: Database, userId: string, messageId: string, content: string) {
  await ownEditableMessage(db, userId, messageId);
  await assertActiveUser(db, userId);
  return updateLiveText(db, messageId, { content, editedAt: Date.now() });
}

/** Deletes your own text message: it keeps its place and seq, with `content: null` and `deletedAt`. */
export async function deleteMessage(db: Database, userId: string, messageId: string) {
  await ownEditableMessage(db, userId, messageId);
  return updateLiveText(db, messageId, { content: null, deletedAt: Date.now() });
}
