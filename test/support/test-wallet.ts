import type { ProtocolHooks } from "../../src/durable-objects/wallet/effects";
import type { GrantAnswer } from "../../src/durable-objects/wallet/grants";
import { MAX_GROUP } from "../../src/durable-objects/wallet/group-commit";
import { WalletObject } from "../../src/durable-objects/wallet/wallet-do";
import type {
  CreditCommand,
  FaultPoint,
  GrantCommand,
  TransferCommand,
  TransferResult,
} from "../../src/durable-objects/wallet/wallet-types";
import { walletEffects } from "../../src/services/wallet-effects";
import { countedEnv } from "./d1-counter";

/** What the fault switch throws. */
export class InjectedFault extends Error {
  override readonly name = "InjectedFault";
}

const CLOCK_KEY = "test_clock_offset_ms";
const CREDIT_FAILURES_KEY = "test_credit_failures";
const CREDIT_HANGS_KEY = "test_credit_hangs";
const TRANSFER_FAILURES_KEY = "test_transfer_failures";
const GRANT_FAILURES_KEY = "test_grant_failures";
const SESSION_REPLACEMENT_FAILURES_KEY = "test_session_replacement_failures";

/**
 * The test double of the wallet's protocol hooks (src/durable-objects/wallet/effects.ts): every
 * hook runs where production runs its no-op, so after an injected failure the wallet takes the
 * branch production takes after the same failure.
 */
class TestHooks implements ProtocolHooks {
  readonly armed = new Map<FaultPoint, { left: number; mode: "stop" | "crash" }>();
  hold: { released: Promise<void>; release: () => void } | null = null;
  readonly groupSizes: number[] = [];

  constructor(private readonly ctx: DurableObjectState) {}

  now(): number {
    return Date.now() + (this.ctx.storage.kv.get<number>(CLOCK_KEY) ?? 0);
  }

  reached(point: FaultPoint): void {
    const armed = this.armed.get(point);
    if (!armed) return;
    if (armed.left <= 1) this.armed.delete(point);
    else armed.left -= 1;
    if (armed.mode === "crash") this.ctx.abort(`injected crash ${point}`);
    throw new InjectedFault(`injected fault ${point}`);
  }

  async beforeGroup(waiting: () => number): Promise<void> {
    if (this.hold) await this.hold.released;
    this.groupSizes.push(Math.min(waiting(), MAX_GROUP));
  }

  async beforeCredit(command: CreditCommand): Promise<void> {
    // A hung recipient: this credit never answers (the sender's timeout must give up on it).
    if (this.take(CREDIT_HANGS_KEY)) await new Promise(() => {});
    if (this.take(CREDIT_FAILURES_KEY)) throw new Error(`injected credit failure for ${command.transferId}`);
  }

  /** A request of this amount throws at its step 1, every time (memory: a rolled-back transaction cannot undo it). */
  failingBeginAmount: number | null = null;

  beforeBegin(command: TransferCommand): void {
    if (command.amount === this.failingBeginAmount)
      throw new InjectedFault(`injected failure at the step 1 of ${command.amount}`);
  }

  take(key: string): boolean {
    const left = this.ctx.storage.kv.get<number>(key) ?? 0;
    if (left > 0) this.ctx.storage.kv.put(key, left - 1);
    return left > 0;
  }
}

/**
 * The wallet object with test hooks, reached with `runInDurableObject`:
 * - `armFault(point, times, mode)`: the next `times` transfers stop after `point` ("stop": that
 *   step throws, as any failure there would; "crash": the object is reset there with `ctx.abort`,
 *   memory lost);
 * - `advanceClock(ms)`: this object's protocol clock runs `ms` ahead (kept in storage, so it
 *   survives a crash), e.g. past a transfer's void deadline; `clock()` reads it;
 * - `failBeginsOf(amount)`: every transfer request of that amount throws inside its step 1 (in the
 *   group's transaction, and again when begun alone); null turns it off;
 * - `failTransfers(times)`: the next `times` transfer calls throw before doing anything;
 * - `failGrants(times)`: the next `times` grants to this wallet throw before doing anything (a 5xx);
 * - `failSessionReplacements(times)`: the next `times` password changes' session replacements
 *   throw, after committing when `committed` (an answer lost on the way back), else before;
 * - `failCredits(times)` / `hangCredits(times)`: the next `times` credits to this wallet throw, or
 *   never answer (a recipient whose credit cannot happen); voids still work;
 * - `holdGroups()` / `releaseGroups()`: transfer requests queue up without being committed until
 *   released, so a test can fill one group with requests in a known order (`waitingCount()`);
 *   `groupSizes` lists the size of every group committed since this instance started (memory);
 *   `creditBatchSizes` the credits committed per transaction as a recipient.
 */
export class TestWalletDO extends WalletObject {
  private readonly testHooks: TestHooks;

  constructor(ctx: DurableObjectState, env: Env) {
    const hooks = new TestHooks(ctx);
    super(ctx, env, { effects: walletEffects(countedEnv(env), (promise) => ctx.waitUntil(promise)), hooks });
    this.testHooks = hooks;
  }

  get groupSizes(): number[] {
    return this.testHooks.groupSizes;
  }

  get creditBatchSizes(): number[] {
    return this.recipient.batchSizes;
  }

  /** `failTransfers(times)`: the next `times` transfer calls throw before doing anything (nothing executed, nothing kept). */
  override transfer(command: TransferCommand): Promise<TransferResult> {
    if (this.testHooks.take(TRANSFER_FAILURES_KEY)) return Promise.reject(new Error("injected failure before execution"));
    return super.transfer(command);
  }

  failTransfers(times: number): void {
    this.ctx.storage.kv.put(TRANSFER_FAILURES_KEY, times);
  }

  /** `failGrants(times)`: the next `times` grants to this wallet throw before doing anything (nothing executed, nothing kept). */
  override grant(command: GrantCommand): Promise<GrantAnswer> {
    if (this.testHooks.take(GRANT_FAILURES_KEY)) return Promise.reject(new Error("injected grant failure before execution"));
    return super.grant(command);
  }

  failGrants(times: number): void {
    this.ctx.storage.kv.put(GRANT_FAILURES_KEY, times);
  }

  override replaceSessions(callerSession: string, familyId: string, tokenHash: string): string[] {
    const failure = this.ctx.storage.kv.get<{ left: number; committed: boolean }>(SESSION_REPLACEMENT_FAILURES_KEY);
    if (!failure || failure.left <= 0) return super.replaceSessions(callerSession, familyId, tokenHash);
    this.ctx.storage.kv.put(SESSION_REPLACEMENT_FAILURES_KEY, { ...failure, left: failure.left - 1 });
    if (failure.committed) super.replaceSessions(callerSession, familyId, tokenHash);
    throw new Error("injected failure of a session replacement");
  }

  failSessionReplacements(times: number, committed: boolean): void {
    this.ctx.storage.kv.put(SESSION_REPLACEMENT_FAILURES_KEY, { left: times, committed });
  }

  holdGroups(): void {
    let release = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.testHooks.hold = { released, release };
  }

  releaseGroups(): void {
    this.testHooks.hold?.release();
    this.testHooks.hold = null;
  }

  /** `failBeginsOf(amount)`: every transfer request of this amount throws inside its step 1 (null: none). */
  failBeginsOf(amount: number | null): void {
    this.testHooks.failingBeginAmount = amount;
  }

  waitingCount(): number {
    return this.groups.waitingCount;
  }

  armFault(point: FaultPoint, times = 1, mode: "stop" | "crash" = "stop"): void {
    this.testHooks.armed.set(point, { left: times, mode });
  }

  /** This object's protocol clock now (real time plus what `advanceClock` added). */
  clock(): number {
    return this.testHooks.now();
  }

  advanceClock(ms: number): void {
    this.ctx.storage.kv.put(CLOCK_KEY, (this.ctx.storage.kv.get<number>(CLOCK_KEY) ?? 0) + ms);
  }

  failCredits(times: number): void {
    this.ctx.storage.kv.put(CREDIT_FAILURES_KEY, times);
  }

  hangCredits(times: number): void {
    this.ctx.storage.kv.put(CREDIT_HANGS_KEY, times);
  }
}
