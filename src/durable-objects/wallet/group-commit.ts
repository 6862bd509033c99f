import { invariant } from "../../lib/errors";
import type { ProtocolHooks } from "./effects";
import type { Finisher } from "./finisher";
import { logRecoveryFailure } from "./recovery";
import type { Begun, Ending, Sender } from "./sender";
import { endedReply, pendingReply } from "./views";
import type { TransferOutRow } from "./wallet-schema";
import { REQUEST_SETTLE_MS, type TransferCommand, type TransferEvent, type TransferResult } from "./wallet-types";

/**
 * The most transfer requests one group debits together: bounds one transaction and how long the
 * last of a group waits for the first.
 */
export const MAX_GROUP = 32;

type Waiting = { command: TransferCommand; answer: (result: TransferResult) => void; fail: (error: unknown) => void };
type Going = Extract<Begun, { kind: "continue" }>;

/**
 * Group commit of a hot sender's transfer requests. A request that arrives while a group's debits
 * are being made durable waits for the next group, which takes every request waiting by then (up
 * to MAX_GROUP), in arrival order: ONE transaction and one durable write for N debits. Each
 * debited transfer then goes on to its end on its own (`Finisher`), while the next group is
 * already being debited; its messages are posted in waves. Nothing else changes for a request:
 * its key, its checks and its refusal are its own, decided in arrival order against the balance
 * and limits the requests before it left; an idle wallet commits a request at once (a group of one).
 *
 * Every request is answered: its refusal or stored outcome; its transfer's end (201 posted, 409
 * voided); or, when the end does not come within REQUEST_SETTLE_MS or a step after the debit
 * failed, 202 with the transfer `pending` (recovery ends it later). Never a bare failure after a debit.
 */
export class GroupCommit {
  private readonly waiting: Waiting[] = [];
  private committing = false;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly sender: Sender,
    private readonly finisher: Finisher,
    private readonly hooks: ProtocolHooks,
    private readonly wakeAt: (at: number) => void,
    /** Publishes the end of a transfer whose request was answered before it (202). */
    private readonly announce: (event: TransferEvent) => void,
  ) {}

  get waitingCount(): number {
    return this.waiting.length;
  }

  transfer(command: TransferCommand): Promise<TransferResult> {
    return new Promise((answer, fail) => {
      this.waiting.push({ command, answer, fail });
      if (!this.committing) void this.commitWaiting();
    });
  }

  private async commitWaiting(): Promise<void> {
    this.committing = true;
    try {
      while (this.waiting.length > 0) {
        await this.hooks.beforeGroup(() => this.waiting.length);
        this.commitGroup(this.waiting.splice(0, MAX_GROUP));
        // The next group forms while this one's debits become durable.
        await this.storage.sync();
      }
    } finally {
      this.committing = false;
    }
  }

  /**
   * Step 1 for each request in ONE transaction, in arrival order; then each debited transfer goes on
   * alone. When that transaction fails, each request is begun again in its own (still in arrival
   * order), so one request whose step 1 throws fails alone and the others are answered.
   */
  private commitGroup(group: readonly Waiting[]): void {
    const now = this.hooks.now();
    const beginOne = ({ command }: Waiting): Begun => {
      this.hooks.beforeBegin(command);
      return this.sender.begin(command, now);
    };
    let begun: (Begun | null)[];
    try {
      begun = this.storage.transactionSync(() => group.map(beginOne));
    } catch {
      begun = group.map((request) => {
        try {
          return this.storage.transactionSync(() => beginOne(request));
        } catch (error) {
          request.fail(error);
          return null;
        }
      });
    }
    const fresh = begun.flatMap((b) => (b?.kind === "continue" && !b.replayed ? [b.row.retry_at] : []));
    if (fresh.length > 0) this.wakeAt(Math.min(...fresh));
    // A retry of a key still pending names the same transfer as its original: finished once, announced once.
    const ends = new Map<string, { ending: Promise<Ending>; announced: boolean }>();
    group.forEach((request, i) => {
      const started = begun[i];
      // Null: this request's own step 1 failed, and it was answered with that failure.
      if (started === null) return;
      invariant(started, "a request of the group has no beginning");
      if (started.kind === "answered") return request.answer(started.result);
      const id = started.row.transfer_id;
      const end = ends.get(id) ?? { ending: this.finishAfterDebit(started.row), announced: false };
      ends.set(id, end);
      void this.answerAtEnd(request, started, end);
    });
  }

  private async finishAfterDebit(row: TransferOutRow): Promise<Ending> {
    this.hooks.reached("after_debit", row.transfer_id);
    return this.finisher.finish(row);
  }

  /** The request's answer once its transfer ended, or 202 `pending` when it did not in time. */
  private async answerAtEnd(request: Waiting, begun: Going, end: { ending: Promise<Ending>; announced: boolean }): Promise<void> {
    const transferId = begun.row.transfer_id;
    const ending = await settleWithin(end.ending, REQUEST_SETTLE_MS);
    if (ending.status !== "fulfilled") {
      if (ending.status === "rejected") logRecoveryFailure(transferId, ending.reason);
      // Answered 202 before its end: when the end comes, this object announces it (once).
      else
        void end.ending.then(
          (late) => this.announceOnce(end, late),
          () => undefined,
        );
      return request.answer({
        ok: true,
        reply: this.currentReply(transferId, begun.replayed),
        rateLimit: begun.rateLimit,
        event: null,
      });
    }
    try {
      this.hooks.reached("after_posted", transferId);
    } catch (error) {
      return request.fail(error);
    }
    const event = end.announced ? null : ending.value.event;
    end.announced = true;
    request.answer({ ok: true, reply: { ...ending.value.reply, replayed: begun.replayed }, rateLimit: begun.rateLimit, event });
  }

  private announceOnce(end: { announced: boolean }, ending: Ending): void {
    if (end.announced || !ending.event) return;
    end.announced = true;
    this.announce(ending.event);
  }

  /** What the transfer is now: pending (202), or ended meanwhile by another path (its stored reply). */
  private currentReply(transferId: string, replayed: boolean) {
    const row = this.sender.transferOut(transferId);
    invariant(row, `transfer ${transferId} disappeared`);
    if (row.state !== "pending") return endedReply(row, replayed);
    return pendingReply(this.sender.senderId(), row, replayed);
  }
}

type Settled<T> = PromiseSettledResult<T> | { status: "late" };

function settleWithin<T>(promise: Promise<T>, ms: number): Promise<Settled<T>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<Settled<T>>((resolve) => {
    timer = setTimeout(() => resolve({ status: "late" }), ms);
  });
  const settled = promise.then(
    (value): Settled<T> => ({ status: "fulfilled", value }),
    (reason): Settled<T> => ({ status: "rejected", reason }),
  );
  return Promise.race([settled, late]).finally(() => clearTimeout(timer));
}
