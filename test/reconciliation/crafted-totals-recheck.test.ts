import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { getConfig } from "../../src/lib/config";
import { newId } from "../../src/lib/ids";
import { inFlightAt } from "../../src/services/reconciliation/checks";
import { runReconciliation, type StepFn } from "../../src/services/reconciliation/run";
import { runParams } from "../../src/services/reconciliation/runs";
import { rowsOf, seedWalletUser } from "../support/wallets";
import { craftEntry, craftTransferMessage } from "./support";

/** The run in-process at `cutoffAt`, with the names of the steps it took. */
async function runAt(cutoffAt: number) {
  const steps: string[] = [];
  const step: StepFn = (name, fn) => {
    steps.push(name);
    return fn();
  };
  const report = await runReconciliation(env, runParams(getConfig(env), newId(), cutoffAt), step, { persist: false });
  return { report, steps };
}

describe("crafted totals, re-read before they are reported", () => {
  it("a transfer in flight across the cut, beyond the in-flight horizon, makes the totals look wrong; the recount is clean", async () => {
    const [a, b] = await Promise.all([seedWalletUser(), seedWalletUser()]);
    const transferId = newId();
    // Debited two hours before the cut under a three-hour deadline (the var is one hour now), so
    // the in-flight horizon (the var plus slack) does not cover it; credited and posted just after the cut.
    const cut = Date.now();
    const debitedAt = cut - 2 * 3_600_000;
    await craftEntry(a.id, { transferId, kind: "transfer_out", amount: -20, counterpartyId: b.id, createdAt: debitedAt });
    const messageId = await craftTransferMessage(a.id, b.id, transferId, 20);
    await rowsOf(
      a.id,
      `INSERT INTO transfers_out (transfer_id, state, recipient_id, amount, sender_balance, recipient_balance, message_id,
         chat_id, response, created_at, void_at, retry_at, posted_at)
       VALUES ('${transferId}', 'posted', '${b.id}', 20, 80, 120, '${messageId}', 'chat', '{}',
         ${debitedAt}, ${debitedAt + 3 * 3_600_000}, ${debitedAt}, ${cut + 1})`,
    );
    await craftEntry(b.id, { transferId, kind: "transfer_in", amount: 20, counterpartyId: a.id, createdAt: cut + 1 });
    await new Promise((resolve) => setTimeout(resolve, 5));

    const { report, steps } = await runAt(cut);
    // At the cut, 20 left A and had not reached B, and nothing bounds it: the first reading is off...
    expect(inFlightAt(report.sums) - report.sums.inFlightBound).toBe(20);
    // ...so the books were added up again at a later cut, where the transfer has landed: nothing to report.
    expect(report.findings).toEqual([]);
    expect(steps).toContain("recount cut");
    expect(steps).toContain("recount 1");
    // Totals that look right at once are not recounted.
    expect((await runAt(Date.now())).steps.some((name) => name.startsWith("recount"))).toBe(false);
  });

  it("credits created stay wrong at the recount: reported once", async () => {
    const [a, b] = await Promise.all([seedWalletUser(), seedWalletUser()]);
    const transferId = newId();
    await craftEntry(b.id, { transferId, kind: "transfer_in", amount: 30, counterpartyId: a.id });
    await new Promise((resolve) => setTimeout(resolve, 5));
    const { report, steps } = await runAt(Date.now());
    expect(steps).toContain("recount 1");
    expect(report.findings.map((f) => [f.kind, f.transferId]).sort()).toEqual(
      [
        ["orphan_transfer_in", transferId],
        ["totals", null],
      ].sort(),
    );
    expect(report.findings.find((f) => f.kind === "totals")?.detail).toMatch(/^30 more credits arrived or returned/);
  });
});
