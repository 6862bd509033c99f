import { introspectWorkflow, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { newId } from "../../src/lib/ids";
import { walletStub } from "../../src/services/wallets";
import { call, expectError } from "../support/http";
import { seedUser } from "../support/users";
import { armFault, rowsOf, seedWalletUser, transfer } from "../support/wallets";
import { craftEntry, craftTransferMessage, dropEntry, runToCompletion, waitForRun } from "./support";

type Found = { kind: string; userId: string | null; transferId: string | null; detail: string };

const sent = async (from: { token: string }, to: { id: string }, amount: number): Promise<string> => {
  const res = await transfer(from.token, { recipientId: to.id, amount });
  expect(res.status, res.text).toBe(201);
  return res.json.data.transferId;
};

afterEach(() => vi.restoreAllMocks());

describe("a run during a storm of transfers", () => {
  it("reports zero discrepancies and totals that add up at its cut", async () => {
    const admin = await seedUser({ role: "admin" });
    const people = await Promise.all(Array.from({ length: 12 }, () => seedWalletUser()));
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
    const run = await runToCompletion(admin.token);
    stop = true;
    await storm;
    expect(made).toBeGreaterThan(20);
    expect(run.discrepancies).toEqual([]);
    expect(run.totalBalance + run.inFlightAmount).toBe(run.totalGranted);
    expect(run.totalGranted).toBe(12 * 100);
  });
});
