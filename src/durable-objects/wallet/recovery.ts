import { IDEMPOTENCY_RETENTION_MS } from "../../lib/idempotency";
import { log } from "../../lib/log";
import type { AuditOutbox } from "./audit-outbox";
import type { ProtocolHooks, WalletEffects } from "./effects";
import type { Finisher } from "./finisher";
import type { GrantClaims } from "./grant-claims";
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
    private readonly audit: AuditOutbox,
    /** An admin's grant-key claims, expired here like the keys (they have their own retention). */
    private readonly claims: GrantClaims,
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
    await this.audit.deliver(now);
    this.expireKeys(now);
    this.scheduleNext(now);
  }

  /**
   * After a failed attempt: try again later, doubling up to MAX_RETRY_DELAY_MS. Before the void
   * deadline the wait ends at the deadline at the latest (the void is due then); past it, the
   * doubling goes on: a credited transfer whose chat is down, or a void whose recipient is down,
   * is retried ever less often, never every IN_FLIGHT_MS for good.
   */
  private backOff(row: TransferOutRow, now: number): void {
    const delay = Math.min(IN_FLIGHT_MS * 2 ** Math.min(row.attempts, 10), MAX_RETRY_DELAY_MS);
    const retryAt = now < row.void_at ? Math.min(now + delay, row.void_at) : now + delay;
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
      this.claims.expire(now, EXPIRY_BATCH);
    });
  }

  /** The next alarm: the next pending transfer's turn, audit row due, key or grant-claim expiry; none when none. */
  private scheduleNext(now: number): void {
    const first = (query: string) => this.storage.sql.exec<{ t: number | null }>(query).one().t;
    const keyTimes = [RECOVERY_SQL.oldestTransferKey, RECOVERY_SQL.oldestRefusal, RECOVERY_SQL.oldestGrantKey]
      .map(first)
      .filter((t): t is number => t !== null)
      .map((t) => t + IDEMPOTENCY_RETENTION_MS + 1);
    const due = [first(RECOVERY_SQL.nextDue), this.audit.nextAt(), this.claims.nextExpiryAt()].filter(
      (t): t is number => t !== null,
    );
    const candidates = [...due, ...keyTimes];
    if (candidates.length > 0) this.wakeAt(Math.max(Math.min(...candidates), now));
  }
}

export function logRecoveryFailure(transferId: string, error: unknown): void {
  log.error("transfer_recovery_failed", { transferId, error });
}
