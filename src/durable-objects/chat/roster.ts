import { asc, eq, gt, lt, sql } from "drizzle-orm";
import type { DrizzleSqliteDODatabase } from "drizzle-orm/durable-sqlite";
import { invariant, type Outcome, type Refusal, refuse } from "../../lib/errors";
import type { Log, NewChatMessage } from "./append";
import { admissions, type ChatMeta, chatRow, type chatSchema, departed, members } from "./chat-schema";
import type { AddMember, MemberFact, MemberFacts, NewChat, RemoveMember } from "./chat-types";
import type { IndexRow, UserLink } from "./effects";
import { chatNotFound, type Members } from "./members";

type Db = DrizzleSqliteDODatabase<typeof chatSchema>;

/** A place held for an add longer than this was abandoned (a crash between its two steps): given up by the alarm. */
export const ADMISSION_TIMEOUT_MS = 60_000;

const notADirectChange = () =>
  refuse("validation_failed", "chatId: a direct chat always has exactly its two people; create a group chat instead");

/**
 * What the chat keeps of the members it takes in, from their own objects' answers (`answers[i]`
 * is `memberIds[i]`'s; none: not reached, taken as active at version 0, which any fact from the
 * owner overrides). Blocks count in a direct chat only: each ordered pair, stamped with the
 * blocker's version (an absent block is "not blocked" at that version).
 */
export function memberFactsOf(
  memberIds: readonly string[],
  answers: readonly (MemberFact | undefined)[],
  direct: boolean,
): MemberFacts {
  const facts: MemberFacts = { suspended: {}, online: {}, versions: {}, blocks: [] };
  memberIds.forEach((userId, i) => {
    facts.suspended[userId] = answers[i]?.suspended === true;
    facts.online[userId] = false;
    facts.versions[userId] = answers[i]?.version ?? 0;
  });
  if (!direct || memberIds.length !== 2) return facts;
  facts.blocks = memberIds.map((blockerId, i) => {
    const blockedId = memberIds[1 - i]!;
    const answer = answers[i];
    return { blockerId, blockedId, blocked: answer?.blockedIds.includes(blockedId) === true, version: answer?.version ?? 0 };
  });
  return facts;
}

/**
 * Who is in the chat, decided here and nowhere else (ARCHITECTURE.md §11): creation, adds,
 * removals, leaving and the owner's handover, each in the caller's one `transactionSync` with its
 * system message. Every change bumps the chat's membership version and stamps the rows it
 * changed; the outbox (summary.ts) carries them to the D1 index and the users' objects, which
 * apply them forward only. Rules (also in the OpenAPI descriptions): a direct chat never changes;
 * only a group's owner adds or removes others; anyone leaves; an owner who leaves hands the group
 * to the longest-standing member; removing someone already gone repeats the first answer.
 */
export class Roster {
  constructor(
    private readonly db: Db,
    private readonly log: Log,
    private readonly members: Members,
  ) {}

  /** Writes the chat and its first members (the creator first: a group's owner) at membership version 1. */
  create(cmd: NewChat, facts: MemberFacts): ChatMeta {
    this.db
      .insert(chatRow)
      .values({
        id: 1,
        chatId: cmd.chatId,
        type: cmd.type,
        title: cmd.title,
        createdBy: cmd.createdBy,
        createdAt: cmd.at,
        routeTag: cmd.routeTag,
        lastSeq: 0,
        lastActivityAt: cmd.at,
        flushedSeq: 0,
        summaryVersion: 0,
        flushedVersion: 0,
        indexVersion: 1,
        flushedIndexVersion: 0,
        toldIndexVersion: 0,
      })
      .run();
    cmd.memberIds.forEach((userId, i) => {
      const role = cmd.type === "group" && i === 0 ? "owner" : "member";
      this.insertMember(userId, role, cmd.at, 0, facts, 1);
    });
    for (const block of facts.blocks) this.members.apply({ kind: "block", ...block });
    const meta = this.log.meta();
    invariant(meta?.chatId === cmd.chatId, `chat ${cmd.chatId} was not created`);
    return meta;
  }

  /**
   * An add's first step: the owner's checks, then a place held in the group (counted with the
   * members, so two adds racing for the last place cannot both win). `already`: a member now.
   */
  beginAdd(meta: ChatMeta, cmd: AddMember, now: number): Outcome<{ already: boolean }> {
    const refusal = this.refusalToManage(meta, cmd.actorId, cmd.userId);
    if (refusal) return refusal;
    const actor = this.members.get(cmd.actorId);
    // The owner's status as this chat holds it (their object keeps it current); the added user's
    // existence and blocks are their object's to answer (the admission).
    if (actor?.suspended) return refuse("account_suspended", "This account is suspended: it cannot add members");
    if (this.members.get(cmd.userId)) return { ok: true, value: { already: true } };
    if (this.db.select().from(admissions).where(eq(admissions.userId, cmd.userId)).get()) {
      return { ok: true, value: { already: false } };
    }
    const held = this.db
      .select({ n: sql<number>`(SELECT count(*) FROM members) + (SELECT count(*) FROM admissions)` })
      .from(chatRow)
      .get()?.n;
    if ((held ?? 0) >= cmd.limits.maxMembers) {
      return refuse("group_full", `userId: a group chat holds at most ${cmd.limits.maxMembers} members`);
    }
    this.db.insert(admissions).values({ userId: cmd.userId, role: "member", startedAt: now }).run();
    return { ok: true, value: { already: false } };
  }

  /**
   * An add's last step, after the user's object answered: the member in with the system message,
   * or the place given back. `admitted: null` (the user's object could not be reached) also tells
   * that object later that the user is not in this chat, in case it counted them.
   */
  finishAdd(meta: ChatMeta, cmd: AddMember, facts: MemberFacts, admitted: boolean | null) {
    const held = this.db.delete(admissions).where(eq(admissions.userId, cmd.userId)).returning().get();
    if (this.members.get(cmd.userId)) return null;
    if (!admitted) {
      if (held && admitted === null) this.depart(cmd.userId, cmd.at);
      return null;
    }
    this.insertMember(cmd.userId, "member", cmd.at, meta.lastSeq, facts, this.nextVersion());
    this.db.delete(departed).where(eq(departed.userId, cmd.userId)).run();
    return this.log.append(meta, { senderId: cmd.actorId, type: "system", content: cmd.content, createdAt: cmd.at });
  }

  /**
   * Removes `userId` (the owner removing, or the user leaving) with its system message; hands an
   * owner's group to the longest-standing member. A removal of someone already gone (a repeat)
   * changes nothing and answers as the first did: `row: null`.
   */
  remove(meta: ChatMeta, cmd: RemoveMember) {
    const leaving = cmd.actorId === cmd.userId;
    const gone = this.db.select().from(departed).where(eq(departed.userId, cmd.userId)).get();
    if (leaving && gone && !this.members.get(cmd.userId)) return this.repeated();
    const refusal = this.refusalToManage(meta, cmd.actorId, cmd.userId);
    if (refusal) return refusal;
    const target = this.members.get(cmd.userId);
    if (!target) {
      if (gone) return this.repeated();
      return refuse("user_not_found", `userId: ${cmd.userId} is not a member of this chat`);
    }
    const version = this.nextVersion();
    this.members.remove(cmd.userId, null);
    this.depart(cmd.userId, cmd.at, version);
    if (target.role === "owner") this.handOver(version);
    const content = leaving ? `${cmd.names.actor} left` : `${cmd.names.actor} removed ${cmd.names.user}`;
    const system: NewChatMessage = { senderId: cmd.actorId, type: "system", content, createdAt: cmd.at };
    return { ok: true as const, value: { row: this.log.append(meta, system), ownerId: this.ownerId() } };
  }

  /** Gives up places held longer than ADMISSION_TIMEOUT_MS; returns when the next one times out (null: none held). */
  expireAdmissions(now: number): number | null {
    const stale = this.db
      .delete(admissions)
      .where(lt(admissions.startedAt, now - ADMISSION_TIMEOUT_MS))
      .returning()
      .all();
    for (const row of stale) if (!this.members.get(row.userId)) this.depart(row.userId, now);
    const next = this.db
      .select({ at: sql<number | null>`min(${admissions.startedAt})` })
      .from(admissions)
      .get()?.at;
    return next === null || next === undefined ? null : next + ADMISSION_TIMEOUT_MS + 1;
  }

  /** The membership rows changed after version `after`, for the D1 index and the users' objects. */
  changedSince(after: number): { index: IndexRow[]; links: UserLink[] } {
    const present = this.db.select().from(members).where(gt(members.indexVersion, after)).all();
    const gone = this.db.select().from(departed).where(gt(departed.indexVersion, after)).all();
    const index: IndexRow[] = [
      ...present.map((m) => ({ userId: m.userId, role: m.role, joinedAt: m.joinedAt, lastReadSeq: m.lastReadSeq })),
      ...gone.map((d) => ({ userId: d.userId, role: null, joinedAt: d.leftAt, lastReadSeq: 0 })),
    ];
    const links: UserLink[] = [
      ...present.map((m) => ({ userId: m.userId, role: m.role, version: m.indexVersion })),
      ...gone.map((d) => ({ userId: d.userId, role: null, version: d.indexVersion })),
    ];
    return { index, links };
  }

  ownerId(): string | null {
    return this.db.select({ userId: members.userId }).from(members).where(eq(members.role, "owner")).get()?.userId ?? null;
  }

  /** Why `actorId` may not change `userId`'s membership: not a member (404), a direct chat (400), not the owner (403). */
  private refusalToManage(meta: ChatMeta, actorId: string, userId: string): Refusal | null {
    const actor = this.members.get(actorId);
    if (!actor) return chatNotFound(meta.chatId);
    if (meta.type === "direct") return notADirectChange();
    if (actorId !== userId && actor.role !== "owner") {
      return refuse("insufficient_permissions", "Only the owner of the group adds or removes other members; anyone may leave");
    }
    return null;
  }

  private repeated() {
    return { ok: true as const, value: { row: null, ownerId: this.ownerId() } };
  }

  private insertMember(
    userId: string,
    role: "owner" | "member",
    at: number,
    lastReadSeq: number,
    facts: MemberFacts,
    version: number,
  ) {
    const snapshot = {
      userId,
      role,
      joinedAt: at,
      lastReadSeq,
      suspended: facts.suspended[userId] === true,
      online: facts.online[userId] === true,
      factsVersion: facts.versions[userId] ?? 0,
    };
    this.members.insert(snapshot);
    this.db.update(members).set({ indexVersion: version }).where(eq(members.userId, userId)).run();
  }

  /** The longest-standing member becomes owner when the owner left (a group always has one while anyone is in it). */
  private handOver(version: number): void {
    const next = this.db.select().from(members).orderBy(asc(members.joinedAt), asc(members.userId)).limit(1).get();
    if (!next) return;
    this.db.update(members).set({ role: "owner", indexVersion: version }).where(eq(members.userId, next.userId)).run();
  }

  private depart(userId: string, at: number, version: number = this.nextVersion()): void {
    this.db
      .insert(departed)
      .values({ userId, leftAt: at, indexVersion: version })
      .onConflictDoUpdate({ target: departed.userId, set: { leftAt: at, indexVersion: version } })
      .run();
  }

  /** Bumps the chat's membership version; returns the new one. */
  private nextVersion(): number {
    const row = this.db
      .update(chatRow)
      .set({ indexVersion: sql`${chatRow.indexVersion} + 1` })
      .where(eq(chatRow.id, 1))
      .returning({ v: chatRow.indexVersion })
      .get();
    invariant(row, "the chat row vanished");
    return row.v;
  }
}
