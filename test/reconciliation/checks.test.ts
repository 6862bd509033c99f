import { describe, expect, it } from "vitest";
import type { OutgoingRow, TransferSides, WalletBooks } from "../../src/durable-objects/wallet/wallet-books";
import type { WalletTotals } from "../../src/durable-objects/wallet/wallet-totals";
import {
  addSums,
  checkPage,
  checkTotals,
  classifyTransfer,
  emptySums,
  findingKey,
  inFlightAt,
  pairIncoming,
  pairOutgoing,
  seenAggregate,
  settledBefore,
  type TransferMessage,
  type TransferReading,
} from "../../src/services/reconciliation/checks";

const A = "64d15f9e2e6c8f4d5a00000a";
const B = "64d15f9e2e6c8f4d5a00000b";
const C = "64d15f9e2e6c8f4d5a00000c";
const T1 = "64d15f9e2e6c8f4d5a000101";
const T2 = "64d15f9e2e6c8f4d5a000102";
const NOW = Date.UTC(2026, 0, 15, 10, 30);

const totals = (t: Partial<Record<keyof WalletTotals, [number, number]>> = {}): WalletTotals => {
  const kinds = ["grant", "transfer_in", "reversal_in", "transfer_out", "reversal_out"] as const;
  return Object.fromEntries(kinds.map((k) => [k, { amount: t[k]?.[0] ?? 0, count: t[k]?.[1] ?? 0 }])) as WalletTotals;
};

/** A wallet's books; unless given, `settled` is every transfer (none made after the run's bound). */
const books = (userId: string, t: WalletTotals, extra: Partial<WalletBooks> = {}): WalletBooks => {
  const pending = extra.pending ?? { count: 0, amount: 0 };
  const voided = extra.voided ?? { count: 0, amount: 0 };
  return {
    userId,
    opened: true,
    problems: [],
    balance: 0,
    totals: t,
    atCut: { balance: 0, totals: t },
    pending,
    voided,
    inFlightBound: 0,
    stuckCount: 0,
    stuck: [],
    settled: {
      posted: {
        count: t.transfer_out.count - pending.count - voided.count,
        amount: t.transfer_out.amount - pending.amount - voided.amount,
      },
      credits: t.transfer_in,
    },
    ...extra,
  };
};

const message = (extra: Partial<TransferMessage> = {}): TransferMessage => ({
  id: "m1",
  chatId: "c1",
  transferId: T1,
  senderId: A,
  recipientId: B,
  amount: 25,
  ...extra,
});

const out = (extra: Partial<OutgoingRow> = {}): OutgoingRow => ({
  transferId: T1,
  recipientId: B,
  amount: 25,
  state: "posted",
  messageId: "m1",
  refunded: false,
  createdAt: NOW - 1000,
  ...extra,
});

describe("checkPage: a page of wallets against its message aggregates", () => {
  it("posted transfers = messages sent and credits = messages received: nothing to drill; sums add up", () => {
    const a = books(A, totals({ grant: [100, 1], transfer_out: [25, 1] }), {
      atCut: { balance: 75, totals: totals({ grant: [100, 1], transfer_out: [25, 1] }) },
    });
    const b = books(B, totals({ grant: [100, 1], transfer_in: [25, 1] }), {
      atCut: { balance: 125, totals: totals({ grant: [100, 1], transfer_in: [25, 1] }) },
    });
    const verdict = checkPage([a, b], new Map([[A, { count: 1, amount: 25 }]]), new Map([[B, { count: 1, amount: 25 }]]));
    expect(verdict).toMatchObject({ ledgerSuspects: [], drillOut: [], drillIn: [], stuck: [] });
    expect(verdict.sums).toMatchObject({ wallets: 2, balance: 200, granted: 200, sent: 25, received: 25 });
  });

  it("a pending or voided transfer is not expected to have a message; any other difference is drilled", () => {
    const a = books(A, totals({ transfer_out: [60, 3], reversal_in: [25, 1] }), {
      pending: { count: 1, amount: 10 },
      voided: { count: 1, amount: 25 },
    });
    expect(checkPage([a], new Map([[A, { count: 1, amount: 25 }]]), new Map()).drillOut).toEqual([]);
    // A void without its refund (refunds are written with the void, so they always match): drilled.
    const unrefunded = books(A, totals({ transfer_out: [60, 3] }), {
      pending: { count: 1, amount: 10 },
      voided: { count: 1, amount: 25 },
    });
    expect(checkPage([unrefunded], new Map([[A, { count: 1, amount: 25 }]]), new Map()).drillOut).toEqual([A]);
    expect(checkPage([a], new Map([[A, { count: 2, amount: 35 }]]), new Map()).drillOut).toEqual([A]);
    expect(checkPage([a], new Map([[A, { count: 1, amount: 24 }]]), new Map()).drillOut).toEqual([A]);
    const b = books(B, totals({ transfer_in: [25, 1] }));
    expect(checkPage([b], new Map(), new Map()).drillIn).toEqual([B]);
  });

  it("compares the transfers below the run's settled bound: one made during the run moves neither side", () => {
    // A sent 25 to B before the bound and 10 after it; the walk counted only the message below it.
    const a = books(A, totals({ transfer_out: [35, 2] }), {
      settled: { posted: { count: 1, amount: 25 }, credits: { count: 0, amount: 0 } },
    });
    const b = books(B, totals({ transfer_in: [35, 2] }), {
      settled: { posted: { count: 0, amount: 0 }, credits: { count: 1, amount: 25 } },
    });
    const verdict = checkPage([a, b], new Map([[A, { count: 1, amount: 25 }]]), new Map([[B, { count: 1, amount: 25 }]]));
    expect(verdict).toMatchObject({ drillOut: [], drillIn: [] });
    // The message of the later transfer counted too (its id below the bound, its wallets not): drilled.
    const counted = new Map([[A, { count: 2, amount: 35 }]]);
    expect(checkPage([a], counted, new Map()).drillOut).toEqual([A]);
  });

  it("passes on a wallet's own problems and its stuck transfers", () => {
    const a = books(A, totals(), {
      problems: ["balance 1 but the running totals say 0"],
      stuck: [{ transferId: T1, recipientId: B, amount: 5, createdAt: NOW - 7_200_000, voidAt: NOW - 3_600_000 }],
      stuckCount: 1,
    });
    const verdict = checkPage([a], new Map(), new Map());
    expect(verdict.ledgerSuspects).toEqual([A]);
    expect(verdict.stuck).toEqual([{ transferId: T1, senderId: A, recipientId: B }]);
    expect(verdict.sums.stuckTransfers).toBe(1);
  });
});

describe("pairOutgoing / pairIncoming: one wallet, transfer by transfer", () => {
  it("a posted transfer with its matching message pairs; pending ones are in flight whatever they have", () => {
    expect(pairOutgoing(A, [out()], [message()])).toEqual([]);
    expect(pairOutgoing(A, [out({ state: "pending", messageId: null })], [])).toEqual([]);
    expect(pairOutgoing(A, [out({ state: "pending", messageId: null })], [message()])).toEqual([]);
  });

  it("posted without message, a wrong message, a voided one with a message, a message without transfer: suspects", () => {
    const suspect = { transferId: T1, senderId: A, recipientId: B };
    expect(pairOutgoing(A, [out()], [])).toEqual([suspect]);
    expect(pairOutgoing(A, [out()], [message({ amount: 26 })])).toEqual([suspect]);
    expect(pairOutgoing(A, [out()], [message({ id: "m2" })])).toEqual([suspect]);
    expect(pairOutgoing(A, [out({ state: "voided", messageId: null, refunded: true })], [message()])).toEqual([suspect]);
    expect(pairOutgoing(A, [out({ state: "voided", messageId: null, refunded: true })], [])).toEqual([]);
    expect(pairOutgoing(A, [out({ state: "voided", messageId: null, refunded: false })], [])).toEqual([suspect]);
    expect(pairOutgoing(A, [], [message({ transferId: T2, recipientId: C })])).toEqual([
      { transferId: T2, senderId: A, recipientId: C, chatId: "c1" },
    ]);
  });

  it("credits against the messages addressed to the wallet", () => {
    const credit = { transferId: T1, senderId: A, amount: 25, messageId: null };
    expect(pairIncoming(B, [credit], [message()])).toEqual([]);
    expect(pairIncoming(B, [credit], [])).toEqual([{ transferId: T1, senderId: A, recipientId: B }]);
    expect(pairIncoming(B, [credit], [message({ amount: 30 })])).toEqual([{ transferId: T1, senderId: A, recipientId: B }]);
    expect(pairIncoming(B, [], [message()])).toEqual([{ transferId: T1, senderId: A, recipientId: B, chatId: "c1" }]);
  });

  it("adds up the messages a drill saw that the walk counted for the wallet", () => {
    const messages = [message(), message({ transferId: T2, senderId: B, recipientId: A, amount: 7 })];
    expect(seenAggregate(A, "out", messages)).toEqual({ count: 1, amount: 25 });
    expect(seenAggregate(A, "in", messages)).toEqual({ count: 1, amount: 7 });
    expect(seenAggregate(C, "out", messages)).toEqual({ count: 0, amount: 0 });
  });
});

describe("settledBefore: the run's bound on transfer ids", () => {
  it("is the first id of the second after the cut's: every id made by the end of the cut's second sorts below it", () => {
    const bound = settledBefore(NOW);
    expect(bound).toMatch(/^[0-9a-f]{24}$/);
    const second = (at: number) =>
      Math.floor(at / 1000)
        .toString(16)
        .padStart(8, "0");
    expect(`${second(NOW)}ffffffffffffffff` < bound).toBe(true);
    expect(`${second(NOW + 999)}ffffffffffffffff` < bound).toBe(true);
    expect(`${second(NOW + 1000)}0000000000000000` < bound).toBe(false);
  });
});

describe("classifyTransfer: the verdict after the re-read", () => {
  const sides = (extra: Partial<TransferSides> = {}): TransferSides => ({ out: null, credit: null, refund: null, ...extra });
  const posted = {
    recipientId: B,
    amount: 25,
    state: "posted",
    messageId: "m1",
    createdAt: NOW - 1000,
    voidAt: NOW - 1000 + 3_600_000,
  };
  const reading = (extra: Partial<TransferReading> = {}): TransferReading => ({
    transferId: T1,
    senderId: A,
    sender: sides({ out: posted }),
    recipientId: B,
    recipient: sides({ credit: { senderId: A, amount: 25, messageId: "m1" } }),
    strayCredit: null,
    message: message(),
    stuckBefore: NOW,
    ...extra,
  });
  const kinds = (r: TransferReading) =>
    classifyTransfer(r)
      .map((f) => f.kind)
      .sort();

  it("a complete transfer is fine; a pending one is in flight until its own void deadline, then stuck", () => {
    expect(kinds(reading())).toEqual([]);
    const pending = { ...posted, state: "pending", messageId: null };
    expect(kinds(reading({ sender: sides({ out: pending }), recipient: sides(), message: null }))).toEqual([]);
    expect(kinds(reading({ sender: sides({ out: pending }), message: null }))).toEqual([]);
    const past = { ...pending, voidAt: NOW - 1 };
    expect(classifyTransfer(reading({ sender: sides({ out: past }), recipient: sides(), message: null }))).toEqual([
      { kind: "stuck_transfer", userId: A, transferId: T1, detail: expect.stringContaining("past its void deadline") },
    ]);
    // Debited two hours ago under a three-hour deadline: in flight, whatever the var says today.
    const longDeadline = { ...pending, createdAt: NOW - 7_200_000, voidAt: NOW + 3_600_000 };
    expect(kinds(reading({ sender: sides({ out: longDeadline }), recipient: sides(), message: null }))).toEqual([]);
  });

  it("each kind of real problem of a posted transfer", () => {
    expect(kinds(reading({ recipient: sides() }))).toEqual(["unpaired_transfer_out"]);
    expect(kinds(reading({ message: null }))).toEqual(["missing_transfer_message"]);
    expect(kinds(reading({ message: message({ recipientId: C }) }))).toEqual(["mismatched_transfer_message"]);
    expect(kinds(reading({ recipient: sides({ credit: { senderId: A, amount: 24, messageId: null } }) }))).toEqual([
      "mismatched_transfer_in",
    ]);
    expect(kinds(reading({ strayCredit: { userId: C, credit: { senderId: A, amount: 25, messageId: null } } }))).toEqual([
      "mismatched_transfer_in",
    ]);
  });

  it("no transfer at the sender: orphan credit, orphan message", () => {
    expect(kinds(reading({ sender: sides(), message: null }))).toEqual(["orphan_transfer_in"]);
    expect(kinds(reading({ sender: sides(), recipient: sides() }))).toEqual(["orphan_transfer_message"]);
    expect(kinds(reading({ senderId: null, sender: null, message: null }))).toEqual(["orphan_transfer_in"]);
  });

  it("a voided transfer: refunded, never credited, no message", () => {
    const voided = { ...posted, state: "voided", messageId: null };
    const clean = reading({ sender: sides({ out: voided, refund: { amount: 25 } }), recipient: sides(), message: null });
    expect(kinds(clean)).toEqual([]);
    expect(kinds({ ...clean, recipient: sides({ credit: { senderId: A, amount: 25, messageId: null } }) })).toEqual([
      "voided_transfer_credited",
    ]);
    expect(kinds({ ...clean, message: message() })).toEqual(["voided_transfer_message"]);
    expect(kinds({ ...clean, sender: sides({ out: voided }) })).toEqual(["unrefunded_void"]);
    expect(kinds({ ...clean, sender: sides({ out: voided, refund: { amount: 20 } }) })).toEqual(["unrefunded_void"]);
  });

  it("one key per problem, whichever wallet it was found from", () => {
    const [finding] = classifyTransfer(reading({ message: null }));
    expect(findingKey(finding!)).toBe(`missing_transfer_message:${T1}`);
    expect(findingKey({ kind: "wallet_ledger", userId: A, transferId: null, detail: "" })).toBe(`wallet_ledger:${A}`);
  });
});

describe("checkTotals: the books of all wallets at the cut", () => {
  const sums = (extra: Partial<ReturnType<typeof emptySums>>) => ({ ...emptySums(), ...extra });

  it("in flight = sent − received − reversed in + reversed out, between 0 and what can be in flight", () => {
    const quiet = sums({ wallets: 2, balance: 200, granted: 200, sent: 25, received: 25 });
    expect(inFlightAt(quiet)).toBe(0);
    expect(checkTotals(quiet)).toBeNull();
    const voided = sums({ sent: 50, received: 25, reversedIn: 25 });
    expect(checkTotals(voided)).toBeNull();
    expect(checkTotals(sums({ sent: 50, received: 25, inFlightBound: 25 }))).toBeNull();
  });

  it("credits created or lost are a totals discrepancy", () => {
    expect(checkTotals(sums({ sent: 25, received: 50 }))).toMatchObject({
      kind: "totals",
      detail: expect.stringContaining("25 more"),
    });
    expect(checkTotals(sums({ sent: 50, received: 25, inFlightBound: 10 }))).toMatchObject({
      kind: "totals",
      detail: expect.stringContaining("at most 10"),
    });
  });

  it("addSums adds every field", () => {
    const one = sums({
      wallets: 1,
      balance: 5,
      granted: 5,
      sent: 1,
      received: 2,
      reversedIn: 3,
      reversedOut: 4,
      inFlightBound: 6,
      pendingTransfers: 7,
      stuckTransfers: 8,
    });
    expect(addSums(one, one)).toEqual(
      sums({
        wallets: 2,
        balance: 10,
        granted: 10,
        sent: 2,
        received: 4,
        reversedIn: 6,
        reversedOut: 8,
        inFlightBound: 12,
        pendingTransfers: 14,
        stuckTransfers: 16,
      }),
    );
  });
});
