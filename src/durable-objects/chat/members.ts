import { and, asc, eq, lt, ne, sql } from "drizzle-orm";
import type { DrizzleSqliteDODatabase } from "drizzle-orm/durable-sqlite";
import { invariant, type Refusal, refuse } from "../../lib/errors";
import type { ChatMember } from "../../schemas/chat";
import { blocks, type ChatMeta, type chatSchema, type MemberRow, members } from "./chat-schema";
import type { ChatFact, MemberSnapshot } from "./chat-types";

type Db = DrizzleSqliteDODatabase<typeof chatSchema>;

export const chatNotFound = (chatId: string): Refusal => refuse("chat_not_found", `No chat ${chatId} among your chats`);

/**
 * The chat's members: who may read and send, their roles and read markers, and the copies of
 * their owners' facts (suspension, blocks), versioned. The only writer of `members` and `blocks`.
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
        .where(and(eq(blocks.blockedId, userId), ne(blocks.blockerId, userId), eq(blocks.blocked, true)))
        .prepare(),
      markRead: db
        .update(members)
        .set({ lastReadSeq: sql`max(${members.lastReadSeq}, ${sql.placeholder("seq")})` })
        .where(eq(members.userId, userId))
        .returning({ lastReadSeq: members.lastReadSeq })
        .prepare(),
      everyone: db.select({ userId: members.userId }).from(members).prepare(),
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

  /** A member taken in; a member already here keeps the newer of its status and the snapshot's (by version). */
  insert(member: MemberSnapshot): void {
    const factsVersion = member.factsVersion ?? 0;
    this.db
      .insert(members)
      .values({ ...member, factsVersion, flushedReadSeq: member.lastReadSeq })
      .onConflictDoUpdate({
        target: members.userId,
        set: {
          role: member.role,
          suspended: sql`CASE WHEN ${factsVersion} > ${members.factsVersion} THEN ${member.suspended ? 1 : 0} ELSE ${members.suspended} END`,
          factsVersion: sql`max(${members.factsVersion}, ${factsVersion})`,
        },
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

  /**
   * Applies a fact its owner delivered, forward only: a version at or below the one held is old
   * news (a late or repeated delivery) and changes nothing. A status fact about a non-member is
   * ignored (it concerns other chats); a block fact is kept (with its version) even before both
   * are members, so a member added later cannot bring an older state in.
   */
  apply(fact: ChatFact): void {
    if (fact.kind === "suspended") {
      this.db
        .update(members)
        .set({ suspended: fact.suspended, factsVersion: fact.version })
        .where(and(eq(members.userId, fact.userId), lt(members.factsVersion, fact.version)))
        .run();
      return;
    }
    const { blockerId, blockedId, blocked, version } = fact;
    this.db
      .insert(blocks)
      .values({ blockerId, blockedId, blocked, version })
      .onConflictDoUpdate({
        target: [blocks.blockerId, blocks.blockedId],
        set: { blocked, version },
        setWhere: lt(blocks.version, version),
      })
      .run();
  }

  /** Every member: a frame goes to each member's realtime object, which alone knows whether it has sockets. */
  everyone(): string[] {
    return this.prepared.everyone.all().map((row) => row.userId);
  }
}

export function toChatMember(row: MemberRow): ChatMember {
  return { userId: row.userId, role: row.role, joinedAt: new Date(row.joinedAt).toISOString() };
}
