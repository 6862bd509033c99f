import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { newId } from "../../src/lib/ids";
import { walletStub } from "../../src/services/wallets";
import { seedUser } from "../support/users";
import { armFault, rowsOf, seedWalletUser, transfer } from "../support/wallets";
import {
  craftEntry,
  craftPending,
  craftTransferMessage,
  dropEntry,
  type Found,
  rewriteTransferMessage,
  runToCompletion,
  sent,
} from "./support";

afterEach(() => vi.restoreAllMocks());

describe("crafted books", () => {
  it("reports a crafted discrepancy of each transfer and wallet kind exactly once, after its re-read, and logs each as structured JSON", async () => {
    const admin = await seedUser({ role: "admin" });
    const u = await Promise.all(Array.from({ length: 16 }, () => seedWalletUser()));
    // Credits lost: a posted transfer whose recipient never got the credit.
    const t1 = await sent(u[0]!, u[1]!, 25);
    await dropEntry(u[1]!.id, t1, "transfer_in");
    // Credits created: a credit with no transfer behind it (the same 25, so the totals stay even).
    const x1 = newId();
    await craftEntry(u[2]!.id, { transferId: x1, kind: "transfer_in", amount: 25, counterpartyId: u[3]!.id });
    // The message: lost, wrong, or with no transfer.
    const t2 = await sent(u[4]!, u[5]!, 10);
    await rewriteTransferMessage(u[4]!.id, u[5]!.id, t2, null);
    const t3 = await sent(u[6]!, u[7]!, 5);
    await rewriteTransferMessage(u[6]!.id, u[7]!.id, t3, 6);
    const x2 = newId();
    await craftTransferMessage(u[8]!.id, u[9]!.id, x2, 7);
    // A credit of the wrong amount (one credit created: the totals no longer add up either).
    const t4 = await sent(u[10]!, u[11]!, 8);
    await dropEntry(u[11]!.id, t4, "transfer_in");
    await craftEntry(u[11]!.id, { transferId: t4, kind: "transfer_in", amount: 9, counterpartyId: u[10]!.id });
    // A wallet whose balance disagrees with its own books.
    await rowsOf(u[12]!.id, "UPDATE wallet SET balance = balance + 1");
    // A transfer pending for two hours, past TRANSFER_VOID_AFTER_SECONDS (3600), never voided.
    // Its deadline passed an hour ago; its next recovery attempt is far off (so nothing voids it during the test).
    const twoHoursAgo = Date.now() - 2 * 3_600_000;
    const stuck = await craftPending(u[13]!.id, u[14]!.id, {
      amount: 12,
      createdAt: twoHoursAgo,
      voidAt: twoHoursAgo + 3_600_000,
    });
    // Looks wrong to the page aggregates (debited, no message yet), but it is in flight: never reported.
    await armFault(u[15]!.id, "after_debit");
    expect((await transfer(u[15]!.token, { recipientId: u[0]!.id, amount: 3 })).status).toBe(202);

    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const run = await runToCompletion(admin.token);
    const found = (run.discrepancies as Found[]).map((d) => [d.kind, d.transferId ?? d.userId]).sort();
    expect(found).toEqual(
      [
        ["mismatched_transfer_in", t4],
        ["mismatched_transfer_message", t3],
        ["missing_transfer_message", t2],
        ["orphan_transfer_in", x1],
        ["orphan_transfer_message", x2],
        ["stuck_transfer", stuck],
        ["unpaired_transfer_out", t1],
        ["wallet_ledger", u[12]!.id],
      ].sort(),
    );
    // The one credit created by t4 is hidden in the totals by the 15 credits legitimately in flight
    // (the stuck 12 and the pending 3): the totals are a net check; the transfer checks name the cause.
    expect(run.discrepancyCount).toBe(8);
    expect(run.stuckTransfers).toBe(1);
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM reconciliation_discrepancies WHERE run_id = ?")
      .bind(run.id)
      .first<{ n: number }>();
    expect(rows!.n).toBe(8);
    const logged = errors.mock.calls
      .map(([line]) => {
        try {
          return JSON.parse(String(line));
        } catch {
          return null;
        }
      })
      .filter((line) => line?.runId === run.id);
    expect(logged).toHaveLength(8);
    expect(logged.every((line) => line.level === "error")).toBe(true);
    expect(logged.find((line) => line.kind === "stuck_transfer")).toMatchObject({
      event: "reconciliation.stuck_transfer",
      transferId: stuck,
    });
  });
});

describe("crafted totals", () => {
  it("credits created with nothing else in flight: the credit and the totals, each once", async () => {
    // Its own wallets, after the run above: only what this test crafts is new.
    const admin = await seedUser({ role: "admin" });
    const before = await runToCompletion(admin.token);
    const [a, b] = await Promise.all([seedWalletUser(), seedWalletUser()]);
    const x = newId();
    await craftEntry(b.id, { transferId: x, kind: "transfer_in", amount: 40, counterpartyId: a.id });
    vi.spyOn(console, "error").mockImplementation(() => {});
    const after = await runToCompletion(admin.token);
    const keys = (run: typeof after) =>
      new Set((run.discrepancies as Found[]).map((d) => `${d.kind}:${d.transferId ?? d.userId}`));
    const added = [...keys(after)].filter((key) => !keys(before).has(key));
    expect(added.sort()).toEqual([`orphan_transfer_in:${x}`, "totals:null"].sort());
    expect(after.totalBalance - before.totalBalance).toBe(240);
    expect(after.totalGranted - before.totalGranted).toBe(200);
  });
});
