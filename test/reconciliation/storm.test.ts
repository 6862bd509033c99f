import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { ReconciliationOutput } from "../../src/workflows/reconciliation-workflow";
import { call } from "../support/http";
import { seedUser } from "../support/users";
import { armFault, rowsOf, seedWalletUser, transfer } from "../support/wallets";
import { waitForRun } from "./support";

describe("a run during a storm of transfers", () => {
  // Its own timeout: the run's steps take seconds each while twelve wallets pay each other flat out on this shared machine.
  it("reports zero discrepancies, and totals at its cut that its wallets' own ledgers confirm", { timeout: 60_000 }, async () => {
    const admin = await seedUser({ role: "admin" });
    const people = await Promise.all(Array.from({ length: 12 }, () => seedWalletUser()));
    const grant = await call("POST", `/api/v1/admin/wallets/${people[2]!.id}/grants`, {
      token: admin.token,
      body: { amount: 7, reason: "storm" },
    });
    expect(grant.status).toBe(201);
    // What the test put in: SIGNUP_CREDITS (100) per wallet and its grant. Transfers only move it.
    const putIn = 12 * 100 + 7;
    // Some transfers stop half-way (credited but not posted; posted message but not marked), so
    // the run certainly meets transfers in flight: they make pages look wrong and must not be reported.
    await armFault(people[0]!.id, "after_credit", 2);
    await armFault(people[1]!.id, "after_message", 2);
    let stop = false;
    let made = 0;
    const storm = Promise.all(
      people.map(async (from, i) => {
        for (let n = 0; !stop; n += 1) {
          const to = people[(i + 1 + (n % (people.length - 1))) % people.length]!;
          const res = await transfer(from.token, { recipientId: to.id, amount: 1 + (n % 3) });
          if (res.status === 201) made += 1;
        }
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    const started = await call("POST", "/api/v1/admin/reconciliations", { token: admin.token });
    const output = (await waitForRun(started.json.data.id)) as ReconciliationOutput;
    stop = true;
    await storm;
    const run = (await call("GET", `/api/v1/admin/reconciliations/${started.json.data.id}`, { token: admin.token })).json.data;
    // Transfers in flight made pages look wrong: the run drilled and re-read them (steps beyond
    // its tidy, chat pages, wallet pages and finish), and found nothing.
    const chatPages = await env.DB.prepare("SELECT COUNT(*) AS n FROM reconciliation_chat_pages WHERE run_id = ?")
      .bind(run.id)
      .first<{ n: number }>();
    expect(chatPages!.n).toBeGreaterThanOrEqual(1);
    expect(output.steps).toBeGreaterThan(1 + chatPages!.n + run.pagesDone + 1);
    expect(made).toBeGreaterThan(20);
    expect(run.discrepancies).toEqual([]);
    expect(run.totalGranted).toBe(putIn);
    // Every request has returned and none stopped before its credit: all the money is in balances.
    const balances = await Promise.all(people.map((p) => rowsOf(p.id, "SELECT balance FROM wallet")));
    expect(balances.reduce((sum, [row]) => sum + Number(row!.balance), 0)).toBe(putIn);
    // The run's balance at its cut (from the running totals) against each wallet's last entry before it.
    const cut = Date.parse(run.cutoffAt);
    const atCut = await Promise.all(
      people.map((p) => rowsOf(p.id, `SELECT balance_after FROM entries WHERE created_at < ${cut} ORDER BY seq DESC LIMIT 1`)),
    );
    expect(run.totalBalance).toBe(atCut.reduce((sum, [row]) => sum + Number(row?.balance_after ?? 0), 0));
    expect(run.inFlightAmount).toBeGreaterThanOrEqual(0);
  });
});
