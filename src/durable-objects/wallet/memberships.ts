import type { Outcome } from "../../lib/errors";
import type { UserAdmission } from "../chat/effects";
import type { ChatLinkRow } from "./wallet-schema";

/**
 * The owner's chats, counted where one owner decides (API.md: a user is in at most
 * `MAX_CHATS_PER_USER` chats and owns at most `MAX_GROUPS_OWNED` groups; past either, creating or
 * joining is 409 `chat_limit_reached`). A chat asks here before it takes the owner in (`admit`,
 * idempotent per chat id, so concurrent or repeated asks by one chat count it once), then tells
 * the owner's place as it changes (`link`, stamped with the chat's membership version, applied
 * forward only: an older word never overwrites a newer one). Rows of chats the owner left stay
 * (role NULL) so a delayed older word cannot count them again. Why here and not the D1 index:
 * the index lags and two joins racing through it could both pass; this object serializes them.
 *
 * A count an admission made that no chat ever confirmed (version 0: the chat refused for another
 * member, or crashed before it committed) is dropped by that chat's release when it can send one.
 */
export class Memberships {
  constructor(private readonly storage: DurableObjectStorage) {}

  admit(admission: UserAdmission): Outcome<true> {
    return this.storage.transactionSync((): Outcome<true> => {
      const row = this.row(admission.chatId);
      const ownsIt = row?.role === "owner";
      const inIt = row?.role === "owner" || row?.role === "member";
      const wantsOwner = admission.role === "owner";
      const { limits } = admission;
      if (limits && !inIt && this.count(null) >= limits.maxChatsPerUser) {
        return limitReached(`user ${admission.userId} is already in ${limits.maxChatsPerUser} chats (MAX_CHATS_PER_USER)`);
      }
      if (limits && wantsOwner && !ownsIt && this.count("owner") >= limits.maxGroupsOwned) {
        return limitReached(`user ${admission.userId} already owns ${limits.maxGroupsOwned} groups (MAX_GROUPS_OWNED)`);
      }
      const role = wantsOwner || ownsIt ? "owner" : "member";
      this.storage.sql.exec(
        "INSERT INTO chat_links (chat_id, role, version) VALUES (?, ?, 0) ON CONFLICT (chat_id) DO UPDATE SET role = excluded.role",
        admission.chatId,
        role,
      );
      return { ok: true, value: true };
    });
  }

  /**
   * The owner's place in `chatId` as that chat knows it at `version`: applied when newer than what
   * is here. Version 0 (a release of an unconfirmed admission) applies only to a count no chat
   * confirmed yet.
   */
  link(chatId: string, role: "owner" | "member" | null, version: number): void {
    this.storage.sql.exec(
      `INSERT INTO chat_links (chat_id, role, version) VALUES (?, ?, ?)
       ON CONFLICT (chat_id) DO UPDATE SET role = excluded.role, version = excluded.version
       WHERE excluded.version > chat_links.version OR (excluded.version = 0 AND chat_links.version = 0)`,
      chatId,
      role,
      version,
    );
  }

  /**
   * A page of the chats the owner is in (or was just admitted to), in id order after
   * `afterChatId`: the chats that must hear the owner's facts. Admission writes the row before it
   * answers the chat the facts, so a change after it always reaches that chat.
   */
  page(afterChatId: string, limit: number): string[] {
    return this.storage.sql
      .exec<{ chat_id: string }>(
        "SELECT chat_id FROM chat_links WHERE role IS NOT NULL AND chat_id > ? ORDER BY chat_id LIMIT ?",
        afterChatId,
        limit,
      )
      .toArray()
      .map((row) => row.chat_id);
  }

  private row(chatId: string): ChatLinkRow | undefined {
    return this.storage.sql.exec<ChatLinkRow>("SELECT * FROM chat_links WHERE chat_id = ?", chatId).toArray()[0];
  }

  /** How many chats the owner is in (`null`) or owns (`"owner"`). */
  private count(role: "owner" | null): number {
    const query =
      role === null
        ? "SELECT count(*) AS n FROM chat_links WHERE role IS NOT NULL"
        : "SELECT count(*) AS n FROM chat_links WHERE role = 'owner'";
    return this.storage.sql.exec<{ n: number }>(query).one().n;
  }
}

const limitReached = (detail: string): Outcome<never> => ({ ok: false, code: "chat_limit_reached", details: [detail] });
