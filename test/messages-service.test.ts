import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { chatMembers, chats } from "../src/db/schema";
import type { TransferMessage } from "../src/durable-objects/wallet/effects";
import { getConfig } from "../src/lib/config";
import { newId } from "../src/lib/ids";
import { messageSchema } from "../src/schemas/message";
import { createDirectChat, memberLimitsOf, transferDirectChat } from "../src/services/chats";
import { directKeyOf } from "../src/services/membership";
import { postCreditTransferMessages } from "../src/services/messages";
import { flushDirectory } from "./support/chats";
import { seedUser } from "./support/users";

const db = createDb(env.DB);

/** As the transfer protocol does it: the pair's direct chat (created if missing), then the message, whose id is the transfer's. */
async function postForTransfer(input: Omit<TransferMessage, "chatId" | "messageId">) {
  const chatId = await transferDirectChat(env, input.senderId, input.recipientId, input.createdAt);
  const [message] = await postCreditTransferMessages(env, [{ ...input, chatId, messageId: input.transferId }]);
  if (!message) throw new Error(`no message for ${input.transferId}`);
  return message;
}

describe("postCreditTransferMessages", () => {
  it("posts the payer's credit_transfer message, with the transfer's id, into their direct chat", async () => {
    const payer = await seedUser();
    const payee = await seedUser();
    const transferId = newId();
    const createdAt = Date.now();
    const message = await postForTransfer({
      transferId,
      senderId: payer.id,
      recipientId: payee.id,
      amount: 25,
      note: "lunch",
      createdAt,
    });
    expect(messageSchema.parse(message)).toEqual(message);
    expect(message).toMatchObject({
      id: transferId,
      seq: 1,
      senderId: payer.id,
      type: "credit_transfer",
      content: null,
      creditTransfer: { transferId, recipientId: payee.id, amount: 25, note: "lunch" },
      createdAt: new Date(createdAt).toISOString(),
      editedAt: null,
      deletedAt: null,
    });
    // The directory hears of it behind the answer (here: now, instead of within the second).
    await flushDirectory([message.chatId]);
    const chat = await db.select().from(chats).where(eq(chats.id, message.chatId)).get();
    expect(chat).toMatchObject({ type: "direct", directKey: directKeyOf(payer.id, payee.id), lastSeq: 1 });
    expect(JSON.parse(chat!.lastMessage!)).toEqual(message);
    const members = await db.select().from(chatMembers).where(eq(chatMembers.chatId, message.chatId)).all();
    expect(members.map((m) => m.userId).sort()).toEqual([payer.id, payee.id].sort());
    // The payer's own message is read; the payee has one unread.
    expect(members.find((m) => m.userId === payer.id)?.lastReadSeq).toBe(1);
    expect(members.find((m) => m.userId === payee.id)?.lastReadSeq).toBe(0);
  });

  it("returns the one message for repeated and concurrent calls with the same transferId, without burning seqs", async () => {
    const payer = await seedUser();
    const payee = await seedUser();
    const input = {
      transferId: newId(),
      senderId: payer.id,
      recipientId: payee.id,
      amount: 7,
      note: null,
      createdAt: Date.now(),
    };
    const results = await Promise.all(Array.from({ length: 12 }, () => postForTransfer(input)));
    const ids = new Set(results.map((m) => m.id));
    expect(ids.size).toBe(1);
    expect(results[0]?.seq).toBe(1);
    const again = await postForTransfer(input);
    expect(again.id).toBe(results[0]?.id);

    const next = await postForTransfer({
      ...input,
      transferId: newId(),
      senderId: payee.id,
      recipientId: payer.id,
    });
    expect(next.chatId).toBe(results[0]?.chatId);
    expect(next.seq).toBe(2);
    await flushDirectory([next.chatId]);
    const chat = await db.select().from(chats).where(eq(chats.id, next.chatId)).get();
    expect(chat?.lastSeq).toBe(2);
  });
  it("different transfers of a new pair at once: one chat, created by one of them, seqs 1..n without gaps", async () => {
    const payer = await seedUser();
    const payee = await seedUser();
    const transfer = (i: number) => ({
      transferId: newId(),
      senderId: i % 2 === 0 ? payer.id : payee.id,
      recipientId: i % 2 === 0 ? payee.id : payer.id,
      amount: i + 1,
      note: null,
      createdAt: Date.now(),
    });
    const inputs = Array.from({ length: 10 }, (_, i) => transfer(i));
    // Each transfer posted twice at once, as a retry racing the alarm would.
    const results = await Promise.all([...inputs, ...inputs].map((input) => postForTransfer(input)));
    expect(new Set(results.map((m) => m.chatId)).size).toBe(1);
    expect(new Set(results.map((m) => m.id)).size).toBe(10);
    expect(new Set(results.map((m) => m.seq))).toEqual(new Set(Array.from({ length: 10 }, (_, i) => i + 1)));
    await flushDirectory([results[0]!.chatId]);
    const chat = await db.select().from(chats).where(eq(chats.id, results[0]!.chatId)).get();
    expect(chat?.lastSeq).toBe(10);
    expect(await db.select().from(chatMembers).where(eq(chatMembers.chatId, chat!.id)).all()).toHaveLength(2);
  });
});

describe("createDirectChat", () => {
  it("both sides creating at once end up with one chat", async () => {
    const a = await seedUser();
    const b = await seedUser();
    const limits = memberLimitsOf(getConfig(env));
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        i % 2 === 0 ? createDirectChat(env, a.id, b.id, limits) : createDirectChat(env, b.id, a.id, limits),
      ),
    );
    expect(new Set(results.map((r) => r.chat.id)).size).toBe(1);
    expect(results.filter((r) => r.created).length).toBe(1);
    const members = await db.select().from(chatMembers).where(eq(chatMembers.chatId, results[0]!.chat.id)).all();
    expect(members).toHaveLength(2);
  });
});
