import { and, eq, inArray, sql } from "drizzle-orm";
import { createDb, type Database } from "../db/client";
import { blocks, chatMembers, chats, users } from "../db/schema";
import type { MemberFacts } from "../durable-objects/chat/chat-types";
import type { ChatEffects, DirectorySummary, UserLink } from "../durable-objects/chat/effects";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import { inChunks, MAX_BOUND_PARAMETERS } from "./chats";
import { fanOut } from "./realtime";

/**
 * What a chat object reaches outside its own storage, bound to this deployment: what the outside
 * world says of the users it takes in, the users' own objects (their chat counts), the D1
 * directory (its row and membership index, behind the answers), and realtime frames. Handed to
 * every ChatDO by the Worker's entry (src/index.ts).
 */
export function chatEffects(env: Env): ChatEffects {
  const db = () => createDb(env.DB);
  return {
    memberFacts: (userIds) => loadMemberFacts(db(), userIds),
    admitMember: (userId, admission) => walletStub(env, userId).admitChat(admission),
    writeSummary: (summary) => writeDirectorySummary(db(), summary),
    tellUsers: (chatId, links) => tellUsers(env, chatId, links),
    push: async (userIds, events) => (await fanOut(env, userIds, events)).unreached,
  };
}

/**
 * What a chat takes in with its new members, in one batch: each one's status with the version of
 * their owner's facts (users.facts_version, written by the owner's outbox), and for a direct chat
 * the block state of each ordered pair, stamped with the blocker's version (an absent row is "not
 * blocked" at that version). Read once per member a chat takes in, never on a send; what is newer
 * reaches the chat from the owners' outboxes and moves it forward only.
 */
export async function loadMemberFacts(db: Database, userIds: readonly string[]): Promise<MemberFacts> {
  const ids = [...new Set(userIds)];
  const facts: MemberFacts = { suspended: {}, online: {}, versions: {}, blocks: [] };
  const [first, ...rest] = inChunks(ids, MAX_BOUND_PARAMETERS).map((chunk) =>
    db
      .select({ id: users.id, status: users.status, factsVersion: users.factsVersion })
      .from(users)
      .where(inArray(users.id, chunk)),
  );
  if (!first) return facts;
  // Blocks count only in a direct chat (two people): a group's members are not read for them.
  const between = db
    .select({ blockerId: blocks.blockerId, blockedId: blocks.blockedId })
    .from(blocks)
    .where(and(inArray(blocks.blockerId, ids), inArray(blocks.blockedId, ids)));
  const results = await db.batch([first, ...rest, ...(ids.length === 2 ? [between] : [])]);
  const blockRows = ids.length === 2 ? (results.pop() as { blockerId: string; blockedId: string }[]) : [];
  const rows = (results as { id: string; status: string; factsVersion: number }[][]).flat();
  for (const row of rows) {
    facts.suspended[row.id] = row.status === "suspended";
    facts.online[row.id] = false;
    facts.versions[row.id] = row.factsVersion;
  }
  const blocked = new Set(blockRows.map((b) => `${b.blockerId}:${b.blockedId}`));
  const pairs = rows.length === 2 ? [[rows[0]!, rows[1]!] as const, [rows[1]!, rows[0]!] as const] : [];
  facts.blocks = pairs.map(([a, b]) => ({
    blockerId: a.id,
    blockedId: b.id,
    blocked: blocked.has(`${a.id}:${b.id}`),
    version: a.factsVersion,
  }));
  return facts;
}

/** Tells each user's own object their place in the chat; throws when any could not be told (the outbox retries). */
async function tellUsers(env: Env, chatId: string, links: readonly UserLink[]): Promise<void> {
  const results = await Promise.allSettled(
    links.map((link) => walletStub(env, link.userId).linkChat({ chatId, role: link.role, version: link.version })),
  );
  const failed = results.find((result) => result.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

/**
 * The chat's directory row, its membership index and the members' markers that moved, in one
 * batch (one transaction), each forward only so a write delayed in flight cannot undo a newer one:
 * the row is created if missing; seq, activity and markers only grow; the membership rows and the
 * member count are written only by a batch whose version is above the row's (the version is
 * raised first, and each membership statement runs only where the row now holds this version).
 * Rows written: the chat's, one per member whose membership or marker changed; never one per
 * member per message.
 */
export async function writeDirectorySummary(db: Database, summary: DirectorySummary): Promise<void> {
  const { chatId, lastSeq, lastMessage, lastActivityAt, identity, index } = summary;
  const thisVersion = index
    ? sql`(SELECT ${chats.indexVersion} FROM ${chats} WHERE ${chats.id} = ${chatId}) = ${index.version}`
    : sql`0`;
  const membership = (index?.rows ?? []).map((row) =>
    row.role === null
      ? db.delete(chatMembers).where(and(eq(chatMembers.chatId, chatId), eq(chatMembers.userId, row.userId), thisVersion))
      : db
          .insert(chatMembers)
          .select(
            sql`SELECT ${chatId}, ${row.userId}, ${row.role}, ${row.lastReadSeq}, ${row.joinedAt}, ${row.joinedAt} WHERE ${thisVersion}`,
          )
          .onConflictDoUpdate({ target: [chatMembers.chatId, chatMembers.userId], set: { role: sql`excluded.role` } }),
  );
  await db.batch([
    db
      .insert(chats)
      .values({ id: chatId, ...identity, lastSeq: 0, lastMessage: null, lastActivityAt: identity.createdAt })
      .onConflictDoNothing(),
    db
      .update(chats)
      .set({
        lastMessage: sql`CASE WHEN ${lastSeq} >= ${chats.lastSeq} AND ${lastMessage} IS NOT NULL THEN ${lastMessage} ELSE ${chats.lastMessage} END`,
        lastSeq: sql`max(${chats.lastSeq}, ${lastSeq})`,
        lastActivityAt: sql`max(${chats.lastActivityAt}, ${lastActivityAt})`,
        carriesTransfers: sql`max(${chats.carriesTransfers}, ${summary.carriesTransfers ? 1 : 0})`,
        ...(index
          ? {
              indexVersion: sql`max(${chats.indexVersion}, ${index.version})`,
              memberCount: sql`CASE WHEN ${index.version} > ${chats.indexVersion} THEN ${index.memberCount} ELSE ${chats.memberCount} END`,
            }
          : {}),
      })
      .where(eq(chats.id, chatId)),
    ...membership,
    ...summary.markers.map((marker) =>
      db
        .update(chatMembers)
        .set({ lastReadSeq: sql`max(${chatMembers.lastReadSeq}, ${marker.lastReadSeq})` })
        .where(and(eq(chatMembers.chatId, chatId), eq(chatMembers.userId, marker.userId))),
    ),
  ]);
}
