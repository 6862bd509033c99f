import { and, eq, sql } from "drizzle-orm";
import { createDb, type Database } from "../db/client";
import { chatMembers, chats } from "../db/schema";
import type { MemberFact } from "../durable-objects/chat/chat-types";
import type { ChatEffects, DirectorySummary, UserLink } from "../durable-objects/chat/effects";
import type { AccountFacts } from "../durable-objects/wallet/account";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import { fanOut } from "./realtime";

/**
 * What a chat object reaches outside its own storage, bound to this deployment: the users' own
 * objects (their chat counts, and their facts as the chat takes them in), the D1
 * directory (its row and membership index, behind the answers), and realtime frames. Handed to
 * every ChatDO by the Worker's entry (src/index.ts).
 */
export function chatEffects(env: Env): ChatEffects {
  const db = () => createDb(env.DB);
  return {
    admitMember: async (userId, admission) => {
      const answer = await walletStub(env, userId).admitChat(admission);
      return answer.ok ? { ok: true, value: memberFactOf(answer.value) } : answer;
    },
    writeSummary: (summary) => writeDirectorySummary(db(), summary),
    tellUsers: (chatId, links) => tellUsers(env, chatId, links),
    push: async (userIds, events) => (await fanOut(env, userIds, events)).unreached,
  };
}

/** The chat's view of a user's facts from their owner's answer (null: no account opened yet, active at version 0). */
export function memberFactOf(facts: AccountFacts | null): MemberFact {
  if (!facts) return { suspended: false, version: 0, blockedIds: [] };
  const blockedIds = facts.blocks.filter((block) => block.blocked).map((block) => block.blockedId);
  return { suspended: facts.status === "suspended", version: facts.version, blockedIds };
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
