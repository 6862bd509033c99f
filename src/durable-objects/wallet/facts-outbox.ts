import { log } from "../../lib/log";
import type { ChatFact } from "../chat/chat-types";
import { type Account, chatTarget, type IndexChange, type IndexEntry } from "./account";
import type { WalletEffects } from "./effects";
import type { Memberships } from "./memberships";

/** Chats read from the owner's own list (memberships.ts) per page of a walk. */
export const FACTS_PAGE = 100;
/** Chats told at once. */
const FACTS_CONCURRENCY = 32;
/** Back-off of a delivery that failed: doubling from 500 ms up to 60 s, and never a last attempt. */
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 60_000;
/**
 * One flush stops starting new pages after this long and leaves the rest to the alarm (at once).
 * Generous: the change's answer waits for its flush, so what the flush reaches holds the fact by
 * the answer (API.md: within 1 s of it); a page of 100 chats takes milliseconds when they run.
 */
const FLUSH_BUDGET_MS = 20_000;

export const factsRetryDelay = (attempts: number) => Math.min(FIRST_RETRY_MS * 2 ** Math.min(attempts, 10), MAX_RETRY_MS);

type Due = { target: string; version: number; attempts: number };
type Walk = { after_chat_id: string; version: number; attempts: number; retry_at: number };

/**
 * Delivers what the account owes (account.ts): the D1 index rows, then the current facts to the
 * chats. Run right after every change (so a chat hears within the request) and by the alarm
 * until everything is acknowledged, with back-off and no maximum number of attempts; what is
 * owed is in storage, so it survives restarts. A chat is always told the facts as they are now
 * (stamped with the current version), so a late or repeated delivery can only move it forward.
 */
export class FactsOutbox {
  private running: Promise<void> | null = null;
  private again = false;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly account: Account,
    private readonly memberships: Memberships,
    private readonly effects: WalletEffects,
    private readonly now: () => number,
    private readonly wakeAt: (at: number) => void,
  ) {}

  /** Flushes now; a flush already running runs once more after itself instead. Never throws. */
  flush(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.flushOnce();
        } while (this.again);
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  /** The alarm's share: everything due, then the next wake-up. */
  async run(): Promise<void> {
    await this.flush();
  }

  private async flushOnce(): Promise<void> {
    if (!this.account.row()) return;
    const deadline = this.now() + FLUSH_BUDGET_MS;
    await this.writeIndex().catch((error) => log.warn("facts.index_failed", { error }));
    while (this.now() < deadline && (await this.walkPage())) {}
    await this.deliverTargets();
    this.scheduleNext();
  }

  /** The D1 index rows owed, in version order, in one batch; acknowledged ones leave the outbox. */
  private async writeIndex(): Promise<void> {
    const sql = this.storage.sql;
    const rows = sql
      .exec<{ version: number; change: string }>("SELECT version, change FROM facts_index_outbox ORDER BY version LIMIT 50")
      .toArray();
    if (rows.length === 0) return;
    const entries: IndexEntry[] = rows.map((row) => ({ version: row.version, change: JSON.parse(row.change) as IndexChange }));
    const failedBefore = this.storage.kv.get<number>(INDEX_FAILURES_KEY) ?? 0;
    try {
      await this.effects.writeFactsIndex(this.account.state().userId, entries);
    } catch (error) {
      this.storage.kv.put(INDEX_FAILURES_KEY, failedBefore + 1);
      throw error;
    }
    const last = entries.at(-1)!.version;
    this.storage.transactionSync(() => {
      sql.exec("DELETE FROM facts_index_outbox WHERE version <= ?", last);
      this.storage.kv.delete(INDEX_FAILURES_KEY);
    });
  }

  /** One page of the walk over every chat of the user; false when there is no walk due (or it failed). */
  private async walkPage(): Promise<boolean> {
    const sql = this.storage.sql;
    const walk = sql.exec<Walk>("SELECT after_chat_id, version, attempts, retry_at FROM facts_walk WHERE id = 1").toArray()[0];
    if (!walk || walk.retry_at > this.now()) return false;
    const chatIds = this.memberships.page(walk.after_chat_id, FACTS_PAGE);
    const failed = await this.tellAll(chatIds, () => [this.statusFact()]);
    const now = this.now();
    this.storage.transactionSync(() => {
      for (const chatId of failed) this.account.owe(chatTarget(chatId), now + factsRetryDelay(0));
      const still = sql.exec<Walk>("SELECT after_chat_id, version FROM facts_walk WHERE id = 1").toArray()[0];
      // A change during this page restarted the walk: leave it for the next round.
      if (still?.version !== walk.version || still.after_chat_id !== walk.after_chat_id) return;
      if (chatIds.length < FACTS_PAGE) sql.exec("DELETE FROM facts_walk WHERE id = 1");
      else sql.exec("UPDATE facts_walk SET after_chat_id = ?, attempts = 0 WHERE id = 1", chatIds.at(-1)!);
    });
    return chatIds.length === FACTS_PAGE;
  }

  /** Single chats owed the facts (a page's failures, a pair's direct chat), those due, with back-off on failure. */
  private async deliverTargets(): Promise<void> {
    const sql = this.storage.sql;
    const due = sql
      .exec<Due>(
        "SELECT target, version, attempts FROM facts_targets WHERE retry_at <= ? ORDER BY retry_at LIMIT 200",
        this.now(),
      )
      .toArray();
    if (due.length === 0) return;
    // Each delivery tells the facts as they are at its start, so it acknowledges only what was owed up to then.
    const told = await Promise.all(due.map((row) => this.deliverTarget(row.target).catch(logFailed(row.target))));
    const now = this.now();
    this.storage.transactionSync(() => {
      due.forEach((row, i) => {
        const version = told[i];
        if (version !== null && version !== undefined)
          sql.exec("DELETE FROM facts_targets WHERE target = ? AND version <= ?", row.target, version);
        else
          sql.exec(
            "UPDATE facts_targets SET attempts = attempts + 1, retry_at = ? WHERE target = ? AND version = ?",
            now + factsRetryDelay(row.attempts),
            row.target,
            row.version,
          );
      });
    });
  }

  /** Tells one target the current facts; resolves to the version told. */
  private async deliverTarget(target: string): Promise<number> {
    const { userId, version } = this.account.state();
    if (target.startsWith("chat:")) {
      await this.effects.tellChat(target.slice(5), [this.statusFact()]);
      return version;
    }
    const otherId = target.slice(5);
    // The blocked user's object keeps a copy: its transfers to this user decide on it.
    await this.effects.recipient(otherId).applyPeerFact(userId, this.account.blockFactOf(otherId));
    const chatId = await this.effects.directChatOf(userId, otherId);
    // No chat yet: one made later starts from the directory's index and hears from the members flow.
    if (chatId !== null) await this.effects.tellChat(chatId, [this.statusFact(), this.blockFact(otherId)]);
    return version;
  }

  /** Tells each chat; resolves to the chats that did not acknowledge. */
  private async tellAll(chatIds: readonly string[], facts: () => ChatFact[]): Promise<string[]> {
    const queue = [...chatIds];
    const failed: string[] = [];
    const worker = async () => {
      for (let chatId = queue.pop(); chatId !== undefined; chatId = queue.pop()) {
        await this.effects.tellChat(chatId, facts()).catch((error) => {
          failed.push(chatId);
          log.warn("facts.chat_failed", { chatId, error });
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(FACTS_CONCURRENCY, queue.length) }, worker));
    return failed;
  }

  private statusFact(): ChatFact {
    const state = this.account.state();
    return { kind: "suspended", userId: state.userId, suspended: state.status === "suspended", version: state.version };
  }

  private blockFact(otherId: string): ChatFact {
    const state = this.account.state();
    const blocked = this.account.hasBlocked(otherId);
    return { kind: "block", blockerId: state.userId, blockedId: otherId, blocked, version: state.version };
  }

  /** The next alarm: the earliest retry owed; the index's after its own back-off. */
  private scheduleNext(): void {
    const sql = this.storage.sql;
    const first = (query: string) => sql.exec<{ t: number | null }>(query).one().t;
    const now = this.now();
    const owedIndex = first("SELECT MIN(version) AS t FROM facts_index_outbox") !== null;
    const times = [
      first("SELECT MIN(retry_at) AS t FROM facts_targets"),
      first("SELECT MIN(retry_at) AS t FROM facts_walk"),
      owedIndex ? now + factsRetryDelay(this.storage.kv.get<number>(INDEX_FAILURES_KEY) ?? 0) : null,
    ].filter((t): t is number => t !== null);
    if (times.length > 0) this.wakeAt(Math.max(Math.min(...times), now));
  }
}

const INDEX_FAILURES_KEY = "facts_index_failures";

const logFailed = (target: string) => (error: unknown) => {
  log.warn("facts.target_failed", { target, error });
  return null;
};
