import { createDb } from "../db/client";
import type { WalletEffects } from "../durable-objects/wallet/effects";
import { walletStub } from "../durable-objects/wallet/wallet-stub";
import { accountFactsEffects } from "./account-facts";
import { recordAuditEntries } from "./audit";
import { chatStub } from "./chat-objects";
import { transferDirectChat } from "./chats";
import { postCreditTransferMessages } from "./messages";
import type { WaitUntil } from "./realtime";
import { publishTransferEvent } from "./transfer-events";

/**
 * What a wallet object reaches outside its own storage, bound to this deployment: the direct chat
 * in the D1 directory and the `credit_transfer` messages in its chat object (the chat module), realtime frames, the other
 * party's wallet object, the audit rows of its outbox, and the account facts' deliveries (the D1 index, the user's chats:
 * account-facts.ts). Handed to every WalletDO by the Worker's entry (src/index.ts).
 */
export function walletEffects(env: Env, waitUntil: WaitUntil): WalletEffects {
  return {
    directChat: (senderId, recipientId, at) => transferDirectChat(env, senderId, recipientId, at),
    postTransferMessages: (messages) => postCreditTransferMessages(env, messages),
    announce: (event) => publishTransferEvent(env, waitUntil, event),
    recipient: (userId) => walletStub(env, userId),
    sender: (userId) => walletStub(env, userId),
    recordAudit: (entries) => recordAuditEntries(createDb(env.DB), entries),
    ...accountFactsEffects(env),
    tellChat: (chatId, facts) => chatStub(env, chatId).applyFacts(chatId, facts),
  };
}
