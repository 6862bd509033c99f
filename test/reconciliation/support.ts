import { introspectWorkflowInstance, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import { createDb } from "../../src/db/client";
import { recordEntry, recordTransferState } from "../../src/durable-objects/wallet/wallet-totals";
import { directChatIdOf } from "../../src/lib/direct-chat";
import { newId } from "../../src/lib/ids";
import { answer, chatStub } from "../../src/services/chat-objects";
import { transferDirectChat } from "../../src/services/chats";
import { walletStub } from "../../src/services/wallets";
import { flushDirectory } from "../support/chats";
import { call } from "../support/http";
import { chatFaults } from "../support/test-chat";
import { transfer } from "../support/wallets";

/**
 * POST /admin/reconciliations, then waits for that run's Workflow instance to finish; returns the
 * run. The chats made so far are listed in the directory first (their outboxes, at once instead of
 * within the second the API allows), as they are for a daily run: the walk visits listed chats.
 */
export async function runToCompletion(adminToken: string) {
  await flushDirectory(chatFaults.created);
  const started = await call("POST", "/api/v1/admin/reconciliations", { token: adminToken });
  expect([200, 202], started.text).toContain(started.status);
  const runId: string = started.json.data.id;
  await waitForRun(runId);
  const run = await call("GET", `/api/v1/admin/reconciliations/${runId}`, { token: adminToken });
  expect(run.status).toBe(200);
  return run.json.data;
}

export async function waitForRun(runId: string) {
  await using instance = await introspectWorkflowInstance(env.RECONCILIATION, runId);
  await instance.waitForStatus("complete");
  return instance.getOutput();
}

/**
 * Writes an entry into a wallet the way the wallet itself does (balance, entry, running totals in
 * one transaction), for books that are wrong across wallets but right inside each one.
 */
export async function craftEntry(
  userId: string,
  entry: { transferId: string; kind: "transfer_in" | "transfer_out"; amount: number; counterpartyId: string; createdAt?: number },
) {
  await runInDurableObject(walletStub(env, userId), (_instance, state) =>
    state.storage.transactionSync(() => {
      const sql = state.storage.sql;
      const now = entry.createdAt ?? Date.now();
      const balance = sql.exec<{ balance: number }>("SELECT balance FROM wallet").one().balance + entry.amount;
      sql.exec("UPDATE wallet SET balance = ?", balance);
      sql.exec(
        "INSERT INTO entries (id, transfer_id, kind, amount, balance_after, counterparty_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        newId(now),
        entry.transferId,
        entry.kind,
        entry.amount,
        balance,
        entry.counterpartyId,
        now,
      );
      recordEntry(sql, entry.kind, entry.amount, balance);
    }),
  );
}

/**
 * A transfer left `pending` by its sender as the wallet writes one (the debit, the pending row, the
 * pending count), with its own void deadline; its next recovery attempt is a day off, so nothing
 * voids or credits it during a test.
 */
export async function craftPending(
  senderId: string,
  recipientId: string,
  transfer: { amount: number; createdAt: number; voidAt: number },
): Promise<string> {
  const transferId = newId(transfer.createdAt);
  await craftEntry(senderId, {
    transferId,
    kind: "transfer_out",
    amount: -transfer.amount,
    counterpartyId: recipientId,
    createdAt: transfer.createdAt,
  });
  await runInDurableObject(walletStub(env, senderId), (_instance, state) =>
    state.storage.transactionSync(() => {
      const sql = state.storage.sql;
      sql.exec(
        `INSERT INTO transfers_out (transfer_id, state, recipient_id, amount, sender_balance, message_id, created_at, void_at, retry_at)
         VALUES (?, 'pending', ?, ?, (SELECT balance FROM wallet), ?, ?, ?, ?)`,
        transferId,
        recipientId,
        transfer.amount,
        transferId,
        transfer.createdAt,
        transfer.voidAt,
        Date.now() + 86_400_000,
      );
      recordTransferState(sql, { from: "new", to: "pending" }, transfer.amount);
    }),
  );
  return transferId;
}

/** A SqlStorage that keeps every query run through it, its bindings and its cursor (for `rowsRead`). */
export function recordingSql(sql: SqlStorage) {
  const runs: { query: string; bindings: unknown[]; cursor: SqlStorageCursor<Record<string, SqlStorageValue>> }[] = [];
  const recording = {
    exec(query: string, ...bindings: unknown[]) {
      const cursor = sql.exec(query, ...bindings);
      runs.push({ query, bindings, cursor });
      return cursor;
    },
  } as SqlStorage;
  return { sql: recording, runs };
}

/** Removes an entry and undoes its effect on the balance and the totals (a wallet that never saw it). */
export async function dropEntry(userId: string, transferId: string, kind: "transfer_in" | "transfer_out") {
  await runInDurableObject(walletStub(env, userId), (_instance, state) =>
    state.storage.transactionSync(() => {
      const sql = state.storage.sql;
      const row = sql
        .exec<{ amount: number }>("DELETE FROM entries WHERE transfer_id = ? AND kind = ? RETURNING amount", transferId, kind)
        .one();
      const column = kind === "transfer_in" ? "received" : "sent";
      sql.exec(`UPDATE wallet_totals SET ${column} = ${column} - ?, ${column}_count = ${column}_count - 1`, Math.abs(row.amount));
      sql.exec("UPDATE wallet SET balance = balance - ?", row.amount);
      if (kind === "transfer_in") sql.exec("DELETE FROM transfers_in WHERE transfer_id = ?", transferId);
    }),
  );
}

/**
 * Appends a credit_transfer message into the pair's direct chat through its object, as the wallet's
 * effects do (the chat found or created and marked as carrying transfers first), whether or not a
 * transfer is behind it; its id (the transfer id).
 */
export async function craftTransferMessage(senderId: string, recipientId: string, transferId: string, amount: number) {
  const chatId = await transferDirectChat(env, senderId, recipientId, Date.now());
  const appended = await answer(
    chatStub(env, chatId).appendTransfers(chatId, [
      { transferId, messageId: transferId, senderId, recipientId, amount, note: null, createdAt: Date.now() },
    ]),
  );
  return appended[0]!.id;
}

/**
 * Changes a transfer's message in its chat object the way the object's log writes (the row and its
 * sender's running totals in one transaction): a new amount, or (null) no message at all.
 */
export async function rewriteTransferMessage(senderId: string, recipientId: string, transferId: string, amount: number | null) {
  const chatId = await directChatIdOf(senderId, recipientId);
  expect(chatId, `no direct chat between ${senderId} and ${recipientId}`).not.toBeNull();
  await runInDurableObject(chatStub(env, chatId!), (_instance, state) =>
    state.storage.transactionSync(() => {
      const sql = state.storage.sql;
      const row = sql
        .exec<{ transfer_amount: number }>("SELECT transfer_amount FROM messages WHERE transfer_id = ?", transferId)
        .one();
      if (amount === null) {
        sql.exec("DELETE FROM messages WHERE transfer_id = ?", transferId);
        sql.exec(
          "UPDATE transfer_totals SET count = count - 1, amount = amount - ? WHERE sender_id = ?",
          row.transfer_amount,
          senderId,
        );
      } else {
        sql.exec("UPDATE messages SET transfer_amount = ? WHERE transfer_id = ?", amount, transferId);
        sql.exec("UPDATE transfer_totals SET amount = amount + ? WHERE sender_id = ?", amount - row.transfer_amount, senderId);
      }
    }),
  );
}

/** A discrepancy as the API reports it. */
export type Found = { kind: string; userId: string | null; transferId: string | null; detail: string };

/** A transfer through the API that must succeed; its id. */
export async function sent(from: { token: string }, to: { id: string }, amount: number): Promise<string> {
  const res = await transfer(from.token, { recipientId: to.id, amount });
  expect(res.status, res.text).toBe(201);
  return res.json.data.transferId;
}
