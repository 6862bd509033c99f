import { type BigChat, type KeyCursor, legacyTableExists, moveChatPage, moveKeyPage, moveMessagePage } from "./steps";

/**
 * The chat migration (docs/chat-migration.md): moves an existing deployment's D1 history into the
 * chat objects while the API keeps answering, written against a `step` function so the same walk
 * runs as a Cloudflare Workflow (workflows/chat-migration-workflow.ts: each step persisted when it
 * returns, retried when it throws, skipped on replay) and in-process for tests.
 *
 * 1. `keys N`: the live message-send keys of the old design, a page at a time (keys first: they
 *    expire within a day, and until moved a retry of one is answered from D1 by its chat).
 * 2. `chats N`: the chats in id order, a page at a time: markers, and small chats whole.
 * 3. `chat <id> <seq>`: a page of a big chat's messages, from where its object says it stands.
 * Every position is recomputed from what the objects report, so a second run moves nothing and a
 * run that dies anywhere is finished by the next. An instance stops after `stepsPerInstance` steps
 * (the platform caps steps per instance) and hands its position to a successor.
 */

export const CHATS_PER_PAGE = 50;
/** Legacy messages per step: one D1 batch and one object call (a chat with fewer left moves in its chats step). */
export const MESSAGES_PER_PAGE = 500;
export const KEYS_PER_PAGE = 100;
/** Under the free plan's 1,024 steps per instance (paid: 10,000), with room for the hand-on step. */
export const STEPS_PER_INSTANCE = 900;

export type MigrationPosition = { phase: "keys"; after: KeyCursor | null } | { phase: "chats"; from: string };

export type MigrationTotals = {
  /** Send keys stored in chat objects, and registered in their owners' wallets. */
  keys: number;
  walletKeys: number;
  /** Chats walked (each run walks every chat), markers moved forward, messages stored. */
  chats: number;
  markers: number;
  messages: number;
  /** D1 messages above their chat's legacy range, left behind (docs/chat-migration.md). */
  strays: number;
  steps: number;
};

export type Tuning = { chatsPerPage: number; messagesPerPage: number; keysPerPage: number; stepsPerInstance: number };

export type ChatMigrationParams = {
  /** The first instance's id: the run's id; a successor is `<runId>-<part>`. */
  runId: string;
  part: number;
  position: MigrationPosition;
  /** What the instances before this one moved. */
  carried: MigrationTotals;
  /** Smaller pages and budgets, to exercise many of them (tests). */
  tuning?: Partial<Tuning>;
};

export type ChatMigrationOutput = {
  runId: string;
  part: number;
  /** Totals of the whole run so far (this instance and those before it). */
  totals: MigrationTotals;
  /** The successor instance that carries on (null: the run is complete). */
  continuedAs: string | null;
  /** True when D1's `messages` was already dropped: nothing left to move. */
  legacyGone: boolean;
};

export type StepFn = <T>(name: string, fn: () => Promise<T>) => Promise<T>;

/** Starts the successor at `position` with the totals so far; returns its instance id. */
export type HandOn = (position: MigrationPosition, totals: MigrationTotals) => Promise<string>;

export const NO_TOTALS: MigrationTotals = { keys: 0, walletKeys: 0, chats: 0, markers: 0, messages: 0, strays: 0, steps: 0 };

export const firstParams = (runId: string, tuning?: Partial<Tuning>): ChatMigrationParams => ({
  runId,
  part: 1,
  position: { phase: "keys", after: null },
  carried: NO_TOTALS,
  ...(tuning ? { tuning } : {}),
});

function tuningOf(params: ChatMigrationParams): Tuning {
  return {
    chatsPerPage: CHATS_PER_PAGE,
    messagesPerPage: MESSAGES_PER_PAGE,
    keysPerPage: KEYS_PER_PAGE,
    stepsPerInstance: STEPS_PER_INSTANCE,
    ...params.tuning,
  };
}

/** Thrown inside the walk when the instance's step budget is spent: the position to hand on. */
class OutOfSteps {
  constructor(readonly position: MigrationPosition) {}
}

export async function runChatMigration(
  env: Env,
  params: ChatMigrationParams,
  step: StepFn,
  handOn: HandOn,
): Promise<ChatMigrationOutput> {
  const tuning = tuningOf(params);
  const totals = { ...params.carried };
  let taken = 0;
  const run = <T>(position: MigrationPosition, name: string, fn: () => Promise<T>): Promise<T> => {
    // One step is kept for the hand-on.
    if (taken >= tuning.stepsPerInstance - 1) throw new OutOfSteps(position);
    taken += 1;
    totals.steps += 1;
    return step(name, fn);
  };
  const output = (continuedAs: string | null, legacyGone = false) => ({
    runId: params.runId,
    part: params.part,
    totals,
    continuedAs,
    legacyGone,
  });
  try {
    if (!(await run(params.position, "start", () => legacyTableExists(env.DB)))) return output(null, true);
    const walk = new Walk(env, tuning, totals, run);
    const chatsFrom = params.position.phase === "keys" ? await walk.keys(params.position.after) : params.position.from;
    await walk.chats(chatsFrom);
    return output(null);
  } catch (error) {
    if (!(error instanceof OutOfSteps)) throw error;
    return output(await step("hand on", () => handOn(error.position, totals)));
  }
}

type Run = <T>(position: MigrationPosition, name: string, fn: () => Promise<T>) => Promise<T>;

/** The walk's phases; every position they pass to `run` is where a successor would start. */
class Walk {
  constructor(
    private readonly env: Env,
    private readonly tuning: Tuning,
    private readonly totals: MigrationTotals,
    private readonly run: Run,
  ) {}

  /** Every live send key, a page a step; returns where the chats phase starts (the first chat). */
  async keys(start: KeyCursor | null): Promise<string> {
    let after = start;
    for (let n = 1; ; n += 1) {
      const from = after;
      const page = await this.run({ phase: "keys", after: from }, `keys ${n}`, () =>
        moveKeyPage(this.env, from, this.tuning.keysPerPage, Date.now()),
      );
      this.totals.keys += page.keys;
      this.totals.walletKeys += page.walletKeys;
      if (page.next === null) return "";
      after = page.next;
    }
  }

  async chats(start: string): Promise<void> {
    const { chatsPerPage, messagesPerPage } = this.tuning;
    for (let n = 1, from: string | null = start; from !== null; n += 1) {
      const first: string = from;
      const page = await this.run({ phase: "chats", from: first }, `chats ${n}`, () =>
        moveChatPage(this.env, first, chatsPerPage, messagesPerPage),
      );
      this.totals.chats += page.chats;
      this.totals.markers += page.markers;
      this.totals.messages += page.messages;
      this.totals.strays += page.strays;
      for (const big of page.big) await this.bigChat(big);
      from = page.next;
    }
  }

  /** A big chat's messages, a page a step, from where its object stood when its page was read. */
  private async bigChat(chat: BigChat): Promise<void> {
    const { chatId, legacyUpTo } = chat;
    for (let next = chat.importedUpTo + 1; next <= legacyUpTo; ) {
      const from = next;
      const to = Math.min(legacyUpTo, from + this.tuning.messagesPerPage - 1);
      // A successor restarts at this chat's page, which finds the chat where its object stands.
      const moved = await this.run({ phase: "chats", from: chatId }, `chat ${chatId} ${from}`, () =>
        moveMessagePage(this.env, chatId, from, to),
      );
      this.totals.messages += moved.inserted;
      next = moved.importedUpTo + 1;
    }
  }
}
