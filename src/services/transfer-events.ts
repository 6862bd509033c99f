import type { TransferEvent } from "../durable-objects/wallet/wallet-types";
import { publish, type WaitUntil } from "./realtime";

/**
 * The realtime frames of a transfer that just ended (docs/realtime.md), published by whoever drove
 * it to its end from what the wallet returned: the Worker for a request, the wallet's alarm for
 * recovery. One push per person (one RealtimeDO call each, which knows whether it has sockets:
 * no presence is read), after the commit.
 *
 * Posted: the sender gets its wallet right after the debit and the `credit_transfer` message; the
 * recipient its wallet right after the credit, the message and the transfer. The balance frames
 * go out with the announcement rather than at each commit, so every frame for a person costs one
 * call; each carries the wallet as of its own change (`updatedAt`).
 * Voided: the sender gets `transfer.voided` and its wallet with the amount restored; the recipient
 * gets nothing (nothing reached them).
 */
export function publishTransferEvent(env: Env, waitUntil: WaitUntil, event: TransferEvent): void {
  if (event.kind === "voided") {
    publish(
      env,
      waitUntil,
      [event.transfer.senderId],
      [
        { type: "transfer.voided", data: event.transfer },
        { type: "wallet.updated", data: event.senderWallet },
      ],
    );
    return;
  }
  const { transfer, message } = event;
  publish(
    env,
    waitUntil,
    [transfer.senderId],
    [
      {
        type: "wallet.updated",
        data: { userId: transfer.senderId, balance: transfer.senderBalance, updatedAt: event.debitedAt },
      },
      { type: "message.created", data: message },
    ],
  );
  publish(
    env,
    waitUntil,
    [transfer.recipientId],
    [
      {
        type: "wallet.updated",
        data: { userId: transfer.recipientId, balance: transfer.recipientBalance, updatedAt: event.creditedAt },
      },
      { type: "message.created", data: message },
      { type: "transfer.received", data: transfer },
    ],
  );
}
