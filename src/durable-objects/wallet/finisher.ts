import { invariant } from "../../lib/errors";
import type { ProtocolHooks, TransferMessage, WalletEffects } from "./effects";
import type { Ledger } from "./ledger";
import type { Ending, Sender } from "./sender";
import { endedReply } from "./views";
import type { TransferOutRow } from "./wallet-schema";
import { CALL_TIMEOUT_MS, type CreditCommand, type CreditResult } from "./wallet-types";

/** The most messages one call to a chat posts. */
export const MAX_WAVE = 32;

/** How long a due message waits for the other credits in flight before its wave goes anyway. */
export const WAVE_WAIT_MS = 5;

type Credited = { row: TransferOutRow; senderId: string; chatId: string; credit: CreditResult & { credited: true } };
type Posting = Credited & { answer: (ending: Ending) => void; fail: (error: unknown) => void };

/** What a call out of the object that did not answer in time rejects with. */
export class CallTimeout extends Error {
  override readonly name = "CallTimeout";
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CallTimeout(`${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** What the sender's wallet hands the recipient's to credit (or void) the transfer of `row`. */
export function creditCommandOf(row: TransferOutRow, senderId: string, signupCredits: number): CreditCommand {
  return {
    transferId: row.transfer_id,
    senderId,
    recipientId: row.recipient_id,
    amount: row.amount,
    note: row.note,
    senderBalance: row.sender_balance,
    messageId: row.message_id,
    chatId: row.chat_id,
    createdAt: row.created_at,
    signupCredits,
  };
}

/**
 * Steps 2–5 of a debited transfer (the class comment of WalletObject has the protocol): the
 * recipient's credit, or past the deadline its void; after a credit only, the pair's direct chat
 * and the `credit_transfer` message; then `posted`. Safe to repeat and to run concurrently with
 * itself (every step is idempotent by transfer id), which is how a request, a retry, a read and
 * recovery all push the same transfer. Each transfer goes on its own: a slow or hung recipient
 * delays only its own transfer (every call out has a timeout). Messages are posted per chat: a
 * chat's messages that become due while its call is in flight go together in its next (one call
 * and one transaction for N), and each chat's share of a wave goes on its own, so a slow or hung
 * chat delays only its own transfers' messages. A wave that fails as a whole is retried one
 * transfer at a time, so one poison transfer never fails the others.
 */
export class Finisher {
  /** Credited transfers whose message is due, not yet handed to their chat's lane. */
  private readonly due: Posting[] = [];
  /** Per chat: its messages waiting for the wave in flight to that chat; a chat in `busy` has one in flight. */
  private readonly lanes = new Map<string, Posting[]>();
  private readonly busy = new Set<string>();
  /** Transfers between the start of their credit and their place in a wave. */
  private crediting = 0;
  private waveTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly ledger: Ledger,
    private readonly sender: Sender,
    private readonly effects: WalletEffects,
    private readonly hooks: ProtocolHooks,
    /** SIGNUP_CREDITS, for a recipient whose wallet opens with the credit. */
    private readonly signupCredits: () => number,
  ) {}

  async finish(row: TransferOutRow): Promise<Ending> {
    if (row.state !== "pending") return { reply: endedReply(row, false), event: null };
    this.crediting += 1;
    let credited: Credited | null;
    try {
      credited = await this.creditOrVoid(row);
    } finally {
      this.crediting -= 1;
      this.kick();
    }
    if (!credited) return this.storage.transactionSync(() => this.sender.endVoided(row.transfer_id, this.hooks.now()));
    return new Promise((answer, fail) => {
      this.due.push({ ...credited, answer, fail });
      this.kick();
    });
  }

  /** Steps 2–3: the credit (or the void, past the deadline); after a credit, the chat. Null: voided. */
  private async creditOrVoid(row: TransferOutRow): Promise<Credited | null> {
    const senderId = this.ledger.wallet().user_id;
    const recipient = this.effects.recipient(row.recipient_id);
    const command = creditCommandOf(row, senderId, this.signupCredits());
    const voiding = this.hooks.now() >= row.void_at;
    const call = voiding ? recipient.voidUnlessCredited(command) : recipient.credit(command);
    const outcome = await withTimeout(call, CALL_TIMEOUT_MS, `recipient ${row.recipient_id} of transfer ${row.transfer_id}`);
    if (!outcome.credited) return null;
    this.hooks.reached("after_credit", row.transfer_id);
    const chatId = row.chat_id ?? (await this.resolveChat(row, senderId));
    return { row, senderId, chatId, credit: outcome };
  }

  /**
   * Starts a wave when one is due: at once when no other transfer of this object is still being
   * credited (its message would make the next batch) or the wave is full; otherwise after at most
   * WAVE_WAIT_MS, so the credits of one group post together and a slow one delays nobody long.
   */
  private kick(): void {
    if (this.due.length === 0) return;
    if (this.crediting === 0 || this.due.length >= MAX_WAVE) {
      if (this.waveTimer !== null) clearTimeout(this.waveTimer);
      this.waveTimer = null;
      this.startWave();
    } else if (this.waveTimer === null) {
      this.waveTimer = setTimeout(() => {
        this.waveTimer = null;
        this.startWave();
      }, WAVE_WAIT_MS);
    }
  }

  /**
   * Hands the due messages to their chats: each chat's share of the wave is posted on its own, so
   * a slow or hung chat delays only its own transfers' messages. A chat with a wave in flight
   * takes the new ones in its next.
   */
  private startWave(): void {
    for (const posting of this.due.splice(0)) {
      const lane = this.lanes.get(posting.chatId);
      if (lane) lane.push(posting);
      else this.lanes.set(posting.chatId, [posting]);
    }
    for (const chatId of this.lanes.keys()) if (!this.busy.has(chatId)) void this.postLane(chatId);
  }

  /** Step 3 for a first transfer between two people, after its credit: their direct chat, kept on the transfer. */
  private async resolveChat(row: TransferOutRow, senderId: string): Promise<string> {
    const chatId = await withTimeout(
      this.effects.directChat(senderId, row.recipient_id, row.created_at),
      CALL_TIMEOUT_MS,
      `the direct chat of transfer ${row.transfer_id}`,
    );
    this.storage.sql.exec(
      "UPDATE transfers_out SET chat_id = ? WHERE transfer_id = ? AND chat_id IS NULL",
      chatId,
      row.transfer_id,
    );
    return chatId;
  }

  /** One chat's messages, a wave at a time, until its lane is empty. */
  private async postLane(chatId: string): Promise<void> {
    this.busy.add(chatId);
    try {
      for (let lane = this.lanes.get(chatId); lane && lane.length > 0; lane = this.lanes.get(chatId)) {
        const wave = lane.splice(0, MAX_WAVE);
        try {
          await this.post(wave);
        } catch (error) {
          if (wave.length === 1) wave[0]?.fail(error);
          // The batch or its posting write failed as a whole: each on its own, so only a poison one fails.
          else for (const posting of wave) await this.post([posting]).catch(posting.fail);
        }
      }
    } finally {
      this.lanes.delete(chatId);
      this.busy.delete(chatId);
    }
  }

  /**
   * Steps 4–5 for one chat's wave: its messages in ONE call to the chat, then ONE transaction marking them posted.
   * Throws (having answered nobody) when the batch or the transaction fails as a whole.
   */
  private async post(wave: readonly Posting[]): Promise<void> {
    const messages = await withTimeout(
      this.effects.postTransferMessages(wave.map(toTransferMessage)),
      CALL_TIMEOUT_MS,
      `the messages of ${wave.length} transfers`,
    );
    const ready = wave.flatMap((posting, i) => {
      const message = messages[i];
      const transferId = posting.row.transfer_id;
      try {
        invariant(message, `credit_transfer message of ${transferId} neither inserted nor found in chat ${posting.chatId}`);
        this.hooks.reached("after_message", transferId);
        return [{ posting, message }];
      } catch (error) {
        posting.fail(error);
        return [];
      }
    });
    const now = this.hooks.now();
    const endings = this.storage.transactionSync(() =>
      ready.map(({ posting, message }) => this.sender.endPosted(posting.row.transfer_id, posting.credit, message, now)),
    );
    ready.forEach(({ posting }, i) => posting.answer(endings[i] as Ending));
  }
}

function toTransferMessage({ row, senderId, chatId }: Credited): TransferMessage {
  return {
    transferId: row.transfer_id,
    messageId: row.message_id,
    chatId,
    senderId,
    recipientId: row.recipient_id,
    amount: row.amount,
    note: row.note,
    createdAt: row.created_at,
  };
}
