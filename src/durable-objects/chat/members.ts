import { and, asc, eq, ne, sql } from "drizzle-orm";
import type { DrizzleSqliteDODatabase } from "drizzle-orm/durable-sqlite";
import { invariant, type Refusal, refuse } from "../../lib/errors";
import type { ChatMember } from "../../schemas/chat";
import { blocks, type ChatMeta, type chatSchema, type MemberRow, members } from "./chat-schema";
import type { ChatFact, MemberSnapshot } from "./chat-types";

type Db = DrizzleSqliteDODatabase<typeof chatSchema>;

export const chatNotFound = (chatId: string): Refusal => refuse("chat_not_found", `No chat ${chatId} among your chats`);

/**
 * The chat's members: who may read and send, their roles and read markers, and what the outside
 * world told the chat about them (suspension, blocks, an open socket). The only writer of
 * `members` and `blocks`.
 */
export class Members {
  /** The statements every send runs, built once (Drizzle's building was a quarter of a send's thread time: bench/README.md). */
  private readonly prepared;

  constructor(private readonly db: Db) {
    const userId = sql.placeholder("userId");
    this.prepared = {
      get: db.select().from(members).where(eq(members.userId, userId)).prepare(),
      blockedBy: db
        .select({ one: sql`1` })
        .from(blocks)
        .where(and(eq(blocks.blockedId, userId), ne(blocks.blockerId, userId)))
        .prepare(),
      markRead: db
        .update(members)
        .set({ lastReadSeq: sql`max(${members.lastReadSeq}, ${sql.placeholder("seq")})` })
        .where(eq(members.userId, userId))
        .returning({ lastReadSeq: members.lastReadSeq })
        .prepare(),
      online: db.select({ userId: members.userId }).from(members).where(eq(members.online, true)).prepare(),
    };
  }

  get(userId: string): MemberRow | undefined {
    return this.prepared.get.get({ userId });
  }

  /** In joining order (the API's order of `Chat.members`). */
  all(): MemberRow[] {
    return this.db.select().from(members).orderBy(asc(members.joinedAt), asc(members.userId)).all();
  }

  /** Why `userId` may not act in this chat as a sender now, or null: not a member (404), suspended (403). */
  refusalToPost(meta: ChatMeta, userId: string): Refusal | null {
    const member = this.get(userId);
    if (!member) return chatNotFound(meta.chatId);
    if (member.suspended) return refuse("account_suspended", "This account is suspended: it can sign in and read, but not send");
    return null;
  }

  /** 403 `recipient_blocked` when the other person of this direct chat blocked `userId` (blocks do not apply inside groups). */
  refusalByBlock(meta: ChatMeta, userId: string): Refusal | null {
    return meta.type === "direct" && this.isBlockedBy(userId)
      ? refuse("recipient_blocked", "The recipient does not accept messages or credits from you")
      : null;
  }

  /** Whether another member of this (direct) chat blocked `userId`. */
  private isBlockedBy(userId: string): boolean {
    return this.prepared.blockedBy.get({ userId }) !== undefined;
  }

  insert(member: MemberSnapshot): void {
    this.db
      .insert(members)
      .values({ ...member, flushedReadSeq: member.lastReadSeq })
      .onConflictDoUpdate({
        target: members.userId,
        set: { role: member.role, suspended: member.suspended, online: sql`max(${members.online}, ${member.online ? 1 : 0})` },
      })
      .run();
  }

  remove(userId: string, newOwnerId: string | null): void {
    this.db.delete(members).where(eq(members.userId, userId)).run();
    if (newOwnerId !== null) this.db.update(members).set({ role: "owner" }).where(eq(members.userId, newOwnerId)).run();
  }

  /** Moves `userId`'s marker forward to `seq` (never back); returns the marker after. */
  markRead(userId: string, seq: number): number {
    const marker = this.prepared.markRead.get({ userId, seq })?.lastReadSeq;
    invariant(marker !== undefined && marker >= seq, `marker of ${userId} did not reach ${seq}`);
    return marker;
  }

  /** The members whose marker moved since it was last written to the directory. */
  unflushedMarkers(): { userId: string; lastReadSeq: number }[] {
    return this.db
      .select({ userId: members.userId, lastReadSeq: members.lastReadSeq })
      .from(members)
      .where(ne(members.lastReadSeq, members.flushedReadSeq))
      .all();
  }

  markersFlushed(markers: readonly { userId: string; lastReadSeq: number }[]): void {
    for (const { userId, lastReadSeq } of markers) {
      this.db
        .update(members)
        .set({ flushedReadSeq: sql`max(${members.flushedReadSeq}, ${lastReadSeq})` })
        .where(eq(members.userId, userId))
        .run();
    }
  }

  /** Applies a fact pushed by the Worker; a fact about a non-member is ignored (it concerns other chats). */
  apply(fact: ChatFact): void {
    if (fact.kind === "suspended") {
      this.db.update(members).set({ suspended: fact.suspended }).where(eq(members.userId, fact.userId)).run();
    } else if (fact.kind === "online") {
      this.db.update(members).set({ online: true }).where(eq(members.userId, fact.userId)).run();
    } else if (fact.blocked) {
      this.db.insert(blocks).values({ blockerId: fact.blockerId, blockedId: fact.blockedId }).onConflictDoNothing().run();
    } else {
      this.db
        .delete(blocks)
        .where(and(eq(blocks.blockerId, fact.blockerId), eq(blocks.blockedId, fact.blockedId)))
        .run();
    }
  }

  /** The members a push should reach: those who may have a socket. */
  online(): string[] {
    return this.prepared.online.all().map((row) => row.userId);
  }

  /** Members a push found with no socket: not pushed to again until they connect. */
  offline(userIds: readonly string[]): void {
    for (const userId of userIds) this.db.update(members).set({ online: false }).where(eq(members.userId, userId)).run();
  }
}

export function toChatMember(row: MemberRow): ChatMember {
  return { userId: row.userId, role: row.role, joinedAt: new Date(row.joinedAt).toISOString() };
}
