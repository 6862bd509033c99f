import { MAX_GROUP, WalletDO } from "../../src/durable-objects/wallet/wallet-do";
import type {
  CreditCommand,
  CreditResult,
  FaultPoint,
  TransferCommand,
  TransferResult,
} from "../../src/durable-objects/wallet/wallet-types";
import { refuse } from "../../src/lib/errors";

/** What the fault switch throws. */
class InjectedFault extends Error {
  override readonly name = "InjectedFault";
}

const CLOCK_KEY = "test_clock_offset_ms";
const CREDIT_FAILURES_KEY = "test_credit_failures";
const TRANSFER_FAILURES_KEY = "test_transfer_failures";

/**
 * The wallet object with test hooks, reached with `runInDurableObject`:
 * - `armFault(point, times, mode)`: the next `times` transfers stop after `point` ("stop": the
 *   request answers 500 and the books stay as a crash there leaves them; "crash": the object is
 *   reset there with `ctx.abort`, memory lost);
 * - `advanceClock(ms)`: this object's protocol clock runs `ms` ahead (kept in storage, so it
 *   survives a crash), e.g. past a transfer's void deadline;
 * - `failCredits(times)`: the next `times` credits to this wallet throw (a recipient whose credit
 *   cannot happen); voids still work;
 * - `failTransfers(times)`: the next `times` transfer calls throw before doing anything (a wallet
 *   that fails before execution: nothing was executed, so nothing may be kept);
 * - `holdGroups()` / `releaseGroups()`: transfer requests queue up without being committed until
 *   released, so a test can fill one group with requests in a known order (`waitingCount()`);
 *   `groupSizes` lists the size of every group committed since this instance started (memory).
 */
export class TestWalletDO extends WalletDO {
  private readonly armed = new Map<FaultPoint, { left: number; mode: "stop" | "crash" }>();
  private hold: { released: Promise<void>; release: () => void } | null = null;
  readonly groupSizes: number[] = [];

  holdGroups(): void {
    let release = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.hold = { released, release };
  }

  releaseGroups(): void {
    this.hold?.release();
    this.hold = null;
  }

  waitingCount(): number {
    return this.waiting.length;
  }

  protected override async beforeGroup(): Promise<void> {
    if (this.hold) await this.hold.released;
    this.groupSizes.push(Math.min(this.waiting.length, MAX_GROUP));
  }

  armFault(point: FaultPoint, times = 1, mode: "stop" | "crash" = "stop"): void {
    this.armed.set(point, { left: times, mode });
  }

  advanceClock(ms: number): void {
    this.ctx.storage.kv.put(CLOCK_KEY, (this.ctx.storage.kv.get<number>(CLOCK_KEY) ?? 0) + ms);
  }

  failCredits(times: number): void {
    this.ctx.storage.kv.put(CREDIT_FAILURES_KEY, times);
  }

  failTransfers(times: number): void {
    this.ctx.storage.kv.put(TRANSFER_FAILURES_KEY, times);
  }

  protected override now(): number {
    return Date.now() + (this.ctx.storage.kv.get<number>(CLOCK_KEY) ?? 0);
  }

  protected override reached(point: FaultPoint): void {
    const armed = this.armed.get(point);
    if (!armed) return;
    if (armed.left <= 1) this.armed.delete(point);
    else armed.left -= 1;
    if (armed.mode === "crash") this.ctx.abort(`injected crash ${point}`);
    throw new InjectedFault(`injected fault ${point}`);
  }

  override credit(command: CreditCommand): CreditResult {
    if (this.takeFailure(CREDIT_FAILURES_KEY)) throw new Error(`injected credit failure for ${command.transferId}`);
    return super.credit(command);
  }

  private takeFailure(key: string): boolean {
    const left = this.ctx.storage.kv.get<number>(key) ?? 0;
    if (left > 0) this.ctx.storage.kv.put(key, left - 1);
    return left > 0;
  }

  /** An injected stop answers 500 like a crash would, without the runtime's report of a thrown RPC error in the logs. */
  override async transfer(command: TransferCommand): Promise<TransferResult> {
    if (this.takeFailure(TRANSFER_FAILURES_KEY)) throw new Error("injected failure before execution");
    try {
      return await super.transfer(command);
    } catch (error) {
      if (error instanceof InjectedFault) return refuse("internal_error", error.message);
      throw error;
    }
  }
}
