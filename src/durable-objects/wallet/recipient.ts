import { invariant } from "../../lib/errors";
import type { TransferWithStatus } from "../../schemas/wallet";
import type { ProtocolHooks, SenderWallet } from "./effects";
import { withTimeout } from "./finisher";
import type { Ledger } from "./ledger";
import { receivedTransfer, voidedTransfer } from "./views";
import type { TransferInRow, VoidedInRow } from "./wallet-schema";
import { CALL_TIMEOUT_MS, type CreditCommand, type CreditResult } from "./wallet-types";

/** The most credits one transaction commits together. */
export const MAX_CREDIT_BATCH = 64;

/** How many of the latest batch sizes a recipient remembers (observability and tests): a bounded record. */
export const BATCH_SIZES_KEPT = 100;

type QueuedCredit = { command: CreditCommand; answer: (result: CreditResult) => void; fail: (error: unknown) => void };

/**
 * The recipient's side of a transfer: credit it once, or record its void, never both (this object
 * runs one call at a time and each decision is one transaction).
 *
 * A hot recipient (a creator tipped by thousands) batches: credits that arrive while a batch is
 * being made durable wait and then commit together, one transaction and one durable write for N
 * credits. Each stays its own: idempotent by transfer id, refused on its own when voided; a batch
 * whose transaction fails is retried one credit at a time, so one bad credit never fails the others.
 */
export class Recipient {
  private readonly queue: QueuedCredit[] = [];
  private flushing = false;
  /** Credits committed per transaction, the latest BATCH_SIZES_KEPT (observability and tests). */
  readonly batchSizes: number[] = [];

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly ledger: Ledger,
    private readonly hooks: ProtocolHooks,
    /** The sender's object of a transfer received here (whether its message is posted). */
    private readonly senderOf: (userId: string) => SenderWallet,
  ) {}

  async credit(command: CreditCommand): Promise<CreditResult> {
    await this.hooks.beforeCredit(command);
    return new Promise((answer, fail) => {
      this.queue.push({ command, answer, fail });
      if (!this.flushing) void this.flush();
    });
  }

  /**
   * Past the transfer's deadline: in one transaction, either answers that it was already credited
   * (the sender then posts it) or records the void, after which `credit` for this id refuses
   * forever. Never opens the wallet: a void moves nothing here.
   */
  voidUnlessCredited(command: CreditCommand): CreditResult {
    return this.storage.transactionSync(() => {
      const known = this.earlierAnswer(command.transferId);
      if (known) return known;
      const now = this.hooks.now();
      this.storage.sql.exec(
        "INSERT INTO voided_in (transfer_id, sender_id, amount, note, sender_balance, created_at, voided_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        command.transferId,
        command.senderId,
        command.amount,
        command.note,
        command.senderBalance,
        command.createdAt,
        now,
      );
      return { credited: false, voidedAt: now };
    });
  }

  /**
   * What this wallet received as transfer `transferId`: credited (posted once its message is) or
   * voided; undefined when neither. A credit not yet known to be posted asks its sender, once
   * posted remembers it, so a recipient never reads `posted` before the message exists.
   */
  async received(recipientId: string, transferId: string): Promise<TransferWithStatus | undefined> {
    const sql = this.storage.sql;
    const row = sql.exec<TransferInRow>("SELECT * FROM transfers_in WHERE transfer_id = ?", transferId).toArray()[0];
    if (!row) {
      const voided = this.voidedIn(transferId);
      return voided ? voidedTransfer(recipientId, voided) : undefined;
    }
    if (row.posted_at !== null) return receivedTransfer(recipientId, row);
    const chatId = await withTimeout(
      this.senderOf(row.sender_id).postedTransferChat(transferId),
      CALL_TIMEOUT_MS,
      `sender ${row.sender_id} of transfer ${transferId}`,
    ).catch(() => null);
    if (chatId === null) return receivedTransfer(recipientId, row);
    const now = this.hooks.now();
    sql.exec(
      "UPDATE transfers_in SET posted_at = ?, chat_id = COALESCE(chat_id, ?) WHERE transfer_id = ?",
      now,
      chatId,
      transferId,
    );
    return receivedTransfer(recipientId, { ...row, posted_at: now, chat_id: row.chat_id ?? chatId });
  }

  voidedIn(transferId: string): VoidedInRow | undefined {
    return this.storage.sql.exec<VoidedInRow>("SELECT * FROM voided_in WHERE transfer_id = ?", transferId).toArray()[0];
  }

  /** Commits the queue in batches; a batch waits for the previous one to be durable, which is when the next forms. */
  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_CREDIT_BATCH);
        this.commit(batch);
        await this.storage.sync();
      }
    } finally {
      this.flushing = false;
    }
  }

  private commit(batch: readonly QueuedCredit[]): void {
    let results: CreditResult[];
    try {
      results = this.storage.transactionSync(() => batch.map(({ command }) => this.creditOne(command)));
      this.recordBatch(batch.length);
    } catch {
      // One of them broke the transaction: each on its own, so only that one fails.
      for (const queued of batch) {
        try {
          queued.answer(this.storage.transactionSync(() => this.creditOne(queued.command)));
          this.recordBatch(1);
        } catch (error) {
          queued.fail(error);
        }
      }
      return;
    }
    batch.forEach((queued, i) => queued.answer(results[i] as CreditResult));
  }

  /** Remembers a batch's size, forgetting the oldest: a long-lived hot recipient holds no growing array. */
  private recordBatch(size: number): void {
    this.batchSizes.push(size);
    if (this.batchSizes.length > BATCH_SIZES_KEPT) this.batchSizes.splice(0, this.batchSizes.length - BATCH_SIZES_KEPT);
  }

  /** One credit inside the batch's transaction: a repeat answers the first credit; a voided transfer is refused. */
  private creditOne(command: CreditCommand): CreditResult {
    const known = this.earlierAnswer(command.transferId);
    if (known) return known;
    const now = this.hooks.now();
    this.ledger.open(command.recipientId, command.signupCredits, now);
    const balanceAfter = this.ledger.credit(
      command.transferId,
      "transfer_in",
      command.amount,
      { counterpartyId: command.senderId, note: command.note, messageId: command.messageId },
      now,
    );
    this.storage.sql.exec(
      "INSERT INTO transfers_in (transfer_id, sender_id, amount, note, sender_balance, recipient_balance, message_id, chat_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      command.transferId,
      command.senderId,
      command.amount,
      command.note,
      command.senderBalance,
      balanceAfter,
      command.messageId,
      command.chatId,
      command.createdAt,
    );
    return { credited: true, balanceAfter, creditedAt: now };
  }

  /** The recipient's earlier answer for a transfer, if it gave one. */
  private earlierAnswer(transferId: string): CreditResult | null {
    const credited = this.storage.sql
      .exec<{ balance_after: number; created_at: number }>(
        "SELECT balance_after, created_at FROM entries WHERE transfer_id = ? AND kind = 'transfer_in'",
        transferId,
      )
      .toArray()[0];
    const voided = this.voidedIn(transferId);
    invariant(!(credited && voided), `transfer ${transferId} both credited and voided`);
    if (credited) return { credited: true, balanceAfter: credited.balance_after, creditedAt: credited.created_at };
    if (voided) return { credited: false, voidedAt: voided.voided_at };
    return null;
  }
}
