import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { reconcile } from "../../src/services/reconciliation/runs";
import { armFault, NO_RATE_LIMIT, rowsOf, seedWalletUser, transfer } from "../support/wallets";

const HOUR = 3_600_000;

/** A transfer through the API under `voidAfterSeconds`, left pending by a fault after the debit, that recovery will not touch during the test. */
async function pendingUnder(from: { id: string; token: string }, to: { id: string }, amount: number, voidAfterSeconds: number) {
  await armFault(from.id, "after_debit");
  const res = await transfer(
    from.token,
    { recipientId: to.id, amount },
    { vars: { ...NO_RATE_LIMIT, TRANSFER_VOID_AFTER_SECONDS: String(voidAfterSeconds) } },
  );
  expect(res.status).toBe(202);
  const [row] = await rowsOf(from.id, `SELECT transfer_id FROM transfers_out WHERE state = 'pending' AND amount = ${amount}`);
  const transferId = String(row!.transfer_id);
  await rowsOf(from.id, `UPDATE transfers_out SET retry_at = ${Date.now() + 100 * HOUR} WHERE transfer_id = '${transferId}'`);
  return transferId;
}

describe("a stuck transfer is one past its own void deadline", () => {
  it("whatever TRANSFER_VOID_AFTER_SECONDS says at the run", async () => {
    const [alice, bob] = await Promise.all([seedWalletUser(), seedWalletUser()]);
    const debitedAt = Date.now();
    // Debited under a 3-hour deadline, and under a 20-minute one.
    const longDeadline = await pendingUnder(alice, bob, 4, 3 * 3600);
    const shortDeadline = await pendingUnder(alice, bob, 6, 20 * 60);
    // Runs two hours later: the first is still within its deadline, the second an hour and a half past it,
    // whether the var was since lowered (to a minute, to the hour) or raised (to a day).
    const twoHoursLater = debitedAt + 2 * HOUR;
    for (const seconds of [60, 3600, 86_399]) {
      const report = await reconcile({ ...env, TRANSFER_VOID_AFTER_SECONDS: String(seconds) }, twoHoursLater);
      const stuck = report.discrepancies.filter((d) => d.kind === "stuck_transfer");
      expect(
        stuck.map((d) => d.transferId),
        `TRANSFER_VOID_AFTER_SECONDS=${seconds}`,
      ).toEqual([shortDeadline]);
      expect(report.stuckTransfers, `TRANSFER_VOID_AFTER_SECONDS=${seconds}`).toBe(1);
      expect(report.discrepancies, `TRANSFER_VOID_AFTER_SECONDS=${seconds}`).toHaveLength(1);
    }
    // Past its own deadline too, the long one is stuck.
    const report = await reconcile(env, debitedAt + 4 * HOUR);
    expect(report.discrepancies.map((d) => d.transferId).sort()).toEqual([longDeadline, shortDeadline].sort());
  });
});
