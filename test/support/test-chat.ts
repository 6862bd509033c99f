import { ChatObject } from "../../src/durable-objects/chat/chat-do";
import type {
  ChatFact,
  CreatedChat,
  NewChat,
  RemovedMember,
  RemoveMember,
  SendCommand,
  SendResult,
  TransferAppend,
} from "../../src/durable-objects/chat/chat-types";
import type { Outcome } from "../../src/lib/errors";
import type { Message } from "../../src/schemas/message";
import { chatEffects } from "../../src/services/chat-effects";
import { countedEnv } from "./d1-counter";

/**
 * The chat fault switch (one per test isolate: the objects run in the suites' isolate). A suite
 * sets `failTransferAppends` to make every chat object refuse the transfer messages it matches, as
 * a chat that is down would; `failSends` / `failRemovals` make a send or a removal throw, before
 * the chat ran it (`"before"`) or after it committed (`"after"`: the answer lost on the way back).
 * Each suite clears them afterwards.
 */
export const chatFaults: {
  failTransferAppends: ((transfer: TransferAppend) => boolean) | null;
  failSends: ((cmd: SendCommand) => "before" | "after" | null) | null;
  failRemovals: ((cmd: RemoveMember) => "before" | "after" | null) | null;
  /** Appends matching this wait (a hung chat) until `hangUntil` resolves. */
  hangTransferAppends: ((transfer: TransferAppend) => boolean) | null;
  hangUntil: Promise<void>;
  /** How many appends have hung so far (a test waits for its hung chat to be reached). */
  hung: number;
  /** Chats that refuse every fact delivered to them (an undeliverable chat), by chat id. */
  refuseFacts: Set<string>;
  /** Facts deliveries received by chat objects (a connect must make none). */
  factsCalls: number;
  /** Awaited after a member's object admitted them (answering their facts) and before the chat keeps them (a slow creation). */
  holdMemberFacts: Promise<void> | null;
  /** How many admissions (each answering a member's facts) chat objects received. */
  memberFactsRead: number;
  /** Chat objects' directory writes fail (D1 down for them): the chats' outboxes keep them owed. */
  failSummaries: boolean;
  /** Every chat a chat object of this isolate created (the directory lists them only behind the answers). */
  created: Set<string>;
} = {
  failTransferAppends: null,
  failSends: null,
  failRemovals: null,
  hangTransferAppends: null,
  hangUntil: Promise.resolve(),
  hung: 0,
  refuseFacts: new Set(),
  factsCalls: 0,
  holdMemberFacts: null,
  memberFactsRead: 0,
  failSummaries: false,
  created: new Set(),
};

/** The production chat object with the fault switch in front of its transfer appends (bound as CHAT in the suites). */
export class TestChatDO extends ChatObject {
  constructor(ctx: DurableObjectState, env: Env) {
    const effects = chatEffects(countedEnv(env));
    super(ctx, env, {
      effects: {
        ...effects,
        admitMember: async (userId, admission) => {
          const answer = await effects.admitMember(userId, admission);
          chatFaults.memberFactsRead += 1;
          if (chatFaults.holdMemberFacts) await chatFaults.holdMemberFacts;
          return answer;
        },
        writeSummary: async (summary) => {
          if (chatFaults.failSummaries) throw new Error("injected failure: the directory is unreachable");
          return effects.writeSummary(summary);
        },
      },
    });
  }

  override async create(cmd: NewChat): Promise<Outcome<CreatedChat>> {
    const result = await super.create(cmd);
    if (result.ok) chatFaults.created.add(cmd.chatId);
    return result;
  }

  override async applyFacts(chatId: string, facts: readonly ChatFact[]): Promise<void> {
    chatFaults.factsCalls += 1;
    if (chatFaults.refuseFacts.has(chatId)) throw new Error(`injected chat failure: chat ${chatId} refuses facts`);
    return super.applyFacts(chatId, facts);
  }

  override async appendTransfers(chatId: string, transfers: readonly TransferAppend[]): Promise<Outcome<Message[]>> {
    const fail = chatFaults.failTransferAppends;
    if (fail && transfers.some(fail)) throw new Error("injected chat failure: transfer message refused");
    const hang = chatFaults.hangTransferAppends;
    if (hang && transfers.some(hang)) {
      chatFaults.hung += 1;
      await chatFaults.hangUntil;
    }
    return super.appendTransfers(chatId, transfers);
  }

  override async send(cmd: SendCommand): Promise<SendResult> {
    const when = chatFaults.failSends?.(cmd) ?? null;
    if (when === "before") throw new Error("injected chat failure: send");
    const result = await super.send(cmd);
    if (when === "after") throw new Error("injected chat failure: send answered, answer lost");
    return result;
  }

  override async removeMember(cmd: RemoveMember): Promise<Outcome<RemovedMember>> {
    const when = chatFaults.failRemovals?.(cmd) ?? null;
    if (when === "before") throw new Error("injected chat failure: removal");
    const result = await super.removeMember(cmd);
    if (when === "after") throw new Error("injected chat failure: removal done, answer lost");
    return result;
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

/**
 * Runs `fn` with transfer appends matching `hang` held by their chat objects (a hung chat) until
 * `fn` calls `release` or ends; then clears the switch.
 */
export async function withHungTransferAppends<T>(
  hang: (transfer: TransferAppend) => boolean,
  fn: (release: () => void) => Promise<T>,
) {
  let release = () => {};
  chatFaults.hangUntil = new Promise<void>((resolve) => {
    release = resolve;
  });
  chatFaults.hangTransferAppends = hang;
  try {
    return await fn(() => {
      chatFaults.hangTransferAppends = null;
      release();
    });
  } finally {
    chatFaults.hangTransferAppends = null;
    release();
  }
}
