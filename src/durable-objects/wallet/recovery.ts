import { IDEMPOTENCY_RETENTION_MS } from "../../lib/idempotency";
import { log } from "../../lib/log";
import type { ProtocolHooks, WalletEffects } from "./effects";
import type { Finisher } from "./finisher";
import { RECOVERY_SQL, type TransferOutRow } from "./wallet-schema";
import { IN_FLIGHT_MS, MAX_RETRY_DELAY_MS, RECOVERY_PAGE } from "./wallet-types";

/** Key expiry rows touched per statement per alarm run; the alarm comes back for the rest. */
const EXPIRY_BATCH = 500;

/**
 * The wallet's one alarm: pending transfers pushed to their end when their turn comes, and
 * idempotency keys expired past their retention. The alarm is set for the earliest of the next
 * pending transfer's turn and the next key expiry, and for nothing else, so it is idle between
 * due times: a pending transfer's key is never expired (its state decides) and never counted as
 * due for expiry, so it cannot keep the alarm firing.
 */
export class Recovery {
  /** The alarm time this object last set (null: none), so frequent transfers do not keep pushing it later. */
  private alarmAt: number | null = null;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly finisher: Finisher,
    private readonly effects: WalletEffects,
    private readonly hooks: ProtocolHooks,
  ) {}

  /** From the constructor, under blockConcurrencyWhile. */
  async load(): Promise<void> {
    this.alarmAt = await this.storage.getAlarm();
  }

  /** Asks for the alarm at `at` unless an earlier one is set already. */
  wakeAt(at: number): void {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    void this.storage.setAlarm(at);
  }

  /** The alarm: a page of due transfers (at-least-once: any step may have run already), key expiry, the next alarm. */
  async run(): Promise<void> {
    this.alarmAt = null;
    const now = this.hooks.now();
    const due = this.storage.sql.exec<TransferOutRow>(RECOVERY_SQL.due, now, RECOVERY_PAGE).toArray();
    const endings = await Promise.allSettled(due.map((row) => this.finisher.finish(row)));
    endings.forEach((ending, i) => {
      const row = due[i] as TransferOutRow;
      if (ending.status === "rejected") {
        logRecoveryFailure(row.transfer_id, ending.reason);
        this.backOff(row, now);
      } else if (ending.value.event) {
        this.effects.announce(ending.value.event);
      }
    });
    this.expireKeys(now);
    this.scheduleNext(now);
  }

  /** After a failed attempt: try again later, doubling, but never past the void deadline by much. */
  private backOff(row: TransferOutRow, now: number): void {
    const delay = Math.min(IN_FLIGHT_MS * 2 ** Math.min(row.attempts, 10), MAX_RETRY_DELAY_MS);
    const retryAt = Math.min(now + delay, Math.max(row.void_at, now + IN_FLIGHT_MS));
    this.storage.sql.exec(
      "UPDATE transfers_out SET attempts = attempts + 1, retry_at = ? WHERE transfer_id = ? AND state = 'pending'",
      retryAt,
      row.transfer_id,
    );
  }

  private expireKeys(now: number): void {
    const cutoff = now - IDEMPOTENCY_RETENTION_MS;
    const sql = this.storage.sql;
    this.storage.transactionSync(() => {
      sql.exec(RECOVERY_SQL.expireTransferKeys, cutoff, EXPIRY_BATCH);
      sql.exec(RECOVERY_SQL.expireRefusals, cutoff, EXPIRY_BATCH);
      sql.exec(RECOVERY_SQL.expireGrantKeys, cutoff, EXPIRY_BATCH);
    });
  }

  /** The next alarm: the next pending transfer's turn, or the next key expiry; none when neither. */
  private scheduleNext(now: number): void {
    const first = (query: string) => this.storage.sql.exec<{ t: number | null }>(query).one().t;
    const keyTimes = [RECOVERY_SQL.oldestTransferKey, RECOVERY_SQL.oldestRefusal, RECOVERY_SQL.oldestGrantKey]
      .map(first)
      .filter((t): t is number => t !== null)
      .map((t) => t + IDEMPOTENCY_RETENTION_MS + 1);
    const nextDue = first(RECOVERY_SQL.nextDue);
    const candidates = nextDue === null ? keyTimes : [nextDue, ...keyTimes];
    if (candidates.length > 0) this.wakeAt(Math.max(Math.min(...candidates), now));
  }
}

export function logRecoveryFailure(transferId: string, error: unknown): void {
  log.error("transfer_recovery_failed", { transferId, error });
}
