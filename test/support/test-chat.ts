import { ChatObject } from "../../src/durable-objects/chat/chat-do";
import type { ChatFact, TransferAppend } from "../../src/durable-objects/chat/chat-types";
import type { Outcome } from "../../src/lib/errors";
import type { Message } from "../../src/schemas/message";
import { chatEffects } from "../../src/services/chat-effects";
import { countedEnv } from "./d1-counter";

/**
 * The chat fault switch (one per test isolate: the objects run in the suites' isolate). A suite
 * sets `failTransferAppends` to make every chat object refuse the transfer messages it matches, as
 * a chat that is down would, and clears it afterwards.
 */
export const chatFaults: {
  failTransferAppends: ((transfer: TransferAppend) => boolean) | null;
  /** Chats that refuse every fact delivered to them (an undeliverable chat), by chat id. */
  refuseFacts: Set<string>;
  /** Awaited after a chat read its snapshot from the directory and before it keeps it (a slow first load). */
  holdSnapshot: Promise<void> | null;
  /** Facts deliveries received by chat objects (a connect must make none). */
  factsCalls: number;
  /** Snapshots chat objects read from the directory. */
  snapshotsRead: number;
} = {
  failTransferAppends: null,
  refuseFacts: new Set(),
  holdSnapshot: null,
  factsCalls: 0,
  snapshotsRead: 0,
};

/** The production chat object with the fault switch in front of its transfer appends (bound as CHAT in the suites). */
export class TestChatDO extends ChatObject {
  constructor(ctx: DurableObjectState, env: Env) {
    const effects = chatEffects(countedEnv(env));
    super(ctx, env, {
      effects: {
        ...effects,
        loadSnapshot: async (chatId) => {
          const snapshot = await effects.loadSnapshot(chatId);
          chatFaults.snapshotsRead += 1;
          if (chatFaults.holdSnapshot) await chatFaults.holdSnapshot;
          return snapshot;
        },
      },
    });
  }

  override async applyFacts(chatId: string, facts: readonly ChatFact[]): Promise<void> {
    chatFaults.factsCalls += 1;
    if (chatFaults.refuseFacts.has(chatId)) throw new Error(`injected chat failure: chat ${chatId} refuses facts`);
    return super.applyFacts(chatId, facts);
  }

  override async appendTransfers(chatId: string, transfers: readonly TransferAppend[]): Promise<Outcome<Message[]>> {
    const fail = chatFaults.failTransferAppends;
    if (fail && transfers.some(fail)) throw new Error("injected chat failure: transfer message refused");
    return super.appendTransfers(chatId, transfers);
  }
}

/** Runs `fn` with transfer appends matching `fail` refused by every chat object, then clears the switch. */
export async function withFailingTransferAppends<T>(fail: (transfer: TransferAppend) => boolean, fn: () => Promise<T>) {
  chatFaults.failTransferAppends = fail;
  try {
    return await fn();
  } finally {
    chatFaults.failTransferAppends = null;
  }
}
