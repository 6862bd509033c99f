import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { walletStub } from "../../src/services/wallets";
import { seedUser } from "../support/users";
import { inWallet, rowsOf, seedWalletUser, transfer } from "../support/wallets";
import { craftEntry, craftTransferMessage, type Found, runToCompletion } from "./support";

afterEach(() => vi.restoreAllMocks());

type Person = { id: string; token: string };

/**
 * A transfer that really ends voided through the protocol: the recipient's credits fail, the
 * deadline is moved into the past (with the real clock, so every timestamp is before the run's
 * cut), and the sender's recovery voids it.
 */
async function voided(from: Person, to: Person, amount: number): Promise<string> {
  await inWallet(to.id, (wallet) => wallet.failCredits(1000));
  expect((await transfer(from.token, { recipientId: to.id, amount })).status).toBe(202);
  const [row] = await rowsOf(from.id, "SELECT transfer_id FROM transfers_out WHERE state = 'pending'");
  const transferId = String(row!.transfer_id);
  await rowsOf(from.id, `UPDATE transfers_out SET void_at = 0, retry_at = 0 WHERE transfer_id = '${transferId}'`);
  expect(await runDurableObjectAlarm(walletStub(env, from.id))).toBe(true);
  await inWallet(to.id, (wallet) => wallet.failCredits(0));
  expect(await rowsOf(from.id, `SELECT state FROM transfers_out WHERE transfer_id = '${transferId}'`)).toEqual([
    { state: "voided" },
  ]);
  return transferId;
}

describe("crafted books around voided transfers", () => {
  it("a clean void is no discrepancy; a voided transfer credited anyway, with a message, or never refunded is reported once each", async () => {
    const admin = await seedUser({ role: "admin" });
    const u = await Promise.all(Array.from({ length: 8 }, () => seedWalletUser()));
    const clean = await voided(u[0]!, u[1]!, 4);
    // Credited anyway: the recipient holds a credit for a transfer its sender voided.
    const credited = await voided(u[2]!, u[3]!, 5);
    await craftEntry(u[3]!.id, { transferId: credited, kind: "transfer_in", amount: 5, counterpartyId: u[2]!.id });
    // A message for a transfer that never moved money.
    const messaged = await voided(u[4]!, u[5]!, 6);
    await craftTransferMessage(u[4]!.id, u[5]!.id, messaged, 6);
    // The void recorded, but the amount never went back to the sender.
    const unrefunded = await voided(u[6]!, u[7]!, 7);
    await runInDurableObject(walletStub(env, u[6]!.id), (_instance, state) =>
      state.storage.transactionSync(() => {
        const sql = state.storage.sql;
        sql.exec("DELETE FROM entries WHERE transfer_id = ? AND kind = 'reversal_in'", unrefunded);
        sql.exec("UPDATE wallet_totals SET reversed_in = reversed_in - 7, reversed_in_count = reversed_in_count - 1");
        sql.exec("UPDATE wallet SET balance = balance - 7");
      }),
    );

    vi.spyOn(console, "error").mockImplementation(() => {});
    const run = await runToCompletion(admin.token);
    const found = (run.discrepancies as Found[]).filter((d) => d.transferId !== null).map((d) => [d.kind, d.transferId]);
    expect(found.sort()).toEqual(
      [
        ["unrefunded_void", unrefunded],
        ["voided_transfer_credited", credited],
        ["voided_transfer_message", messaged],
      ].sort(),
    );
    expect(found.some(([, transferId]) => transferId === clean)).toBe(false);
  });
});
