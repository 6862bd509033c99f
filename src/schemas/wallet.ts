import { z } from "@hono/zod-openapi";
import { idSchema } from "../lib/ids";
import { NO_CONTROL_CHARACTERS, NO_CONTROL_CHARACTERS_MESSAGE, NO_CONTROL_CHARACTERS_NOTE } from "./text";

/** Wallet resources of API.md §2; their TypeScript types come from these schemas. */

const isoTime = (example = "2026-01-15T10:30:00.000Z") => z.string().openapi({ example, format: "date-time" });

export const walletSchema = z
  .object({
    userId: idSchema("owner's user id"),
    balance: z.number().int().min(0).openapi({ example: 75, description: "Credits available (never below zero)." }),
    updatedAt: isoTime(),
  })
  .openapi("Wallet");

export const ledgerEntryKindSchema = z.enum(["transfer_out", "transfer_in", "grant", "reversal_out", "reversal_in"]);

export const ledgerEntrySchema = z
  .object({
    id: idSchema("entry id"),
    transferId: z.string().openapi({
      example: "64d15f9e2e6c8f4d5a777777",
      description:
        "The transfer this entry belongs to; for a grant, the grant id (the welcome grant has its own, with the note `Welcome credits`).",
    }),
    kind: ledgerEntryKindSchema,
    amount: z.number().int().openapi({ example: -25, description: "Signed: negative leaves the wallet, positive enters it." }),
    balanceAfter: z.number().int().min(0).openapi({ example: 75 }),
    counterpartyId: z.string().nullable().openapi({ example: "64d15f9e2e6c8f4d5a654321" }),
    messageId: z.string().nullable().openapi({ example: "64d15f9e2e6c8f4d5a777777" }),
    note: z.string().nullable().openapi({ example: "lunch" }),
    createdAt: isoTime(),
  })
  .openapi("LedgerEntry");

/** The product documentation's example transfer (a transfer's message has the transfer's id). */
const TRANSFER_EXAMPLE = {
  senderId: "64d15f9e2e6c8f4d5a123456",
  recipientId: "64d15f9e2e6c8f4d5a654321",
  transferredAmount: 25,
  senderBalance: 75,
  recipientBalance: 125,
  transferId: "64d15f9e2e6c8f4d5a777777",
  messageId: "64d15f9e2e6c8f4d5a777777",
  chatId: "64d15f9e2e6c8f4d5a999999",
  createdAt: "2026-01-15T10:30:00.000Z",
};

/**
 * The fields of a transfer, shared by its three shapes. Each shape is its own object (never an
 * `.extend` of a registered one, which the document renders as `allOf` with the base: a field
 * nullable in one and an integer in the other would then admit no value at all).
 */
const transferShape = {
  senderId: idSchema("sender's user id"),
  recipientId: idSchema("recipient's user id").openapi({ example: "64d15f9e2e6c8f4d5a654321" }),
  transferredAmount: z.number().int().min(1).openapi({ example: 25 }),
  senderBalance: z.number().int().min(0).openapi({ example: 75, description: "The sender's balance right after this debit." }),
  recipientBalance: z
    .number()
    .int()
    .min(0)
    .openapi({ example: 125, description: "The recipient's balance right after this credit." }),
  transferId: idSchema("transfer id").openapi({ example: "64d15f9e2e6c8f4d5a777777" }),
  messageId: idSchema("credit_transfer message id (the transfer's id)").openapi({ example: "64d15f9e2e6c8f4d5a777777" }),
  chatId: idSchema("direct chat id").openapi({ example: "64d15f9e2e6c8f4d5a999999" }),
  createdAt: isoTime(),
};

export const transferSchema = z.object(transferShape).openapi("Transfer", { example: TRANSFER_EXAMPLE });

/**
 * A transfer as `GET /api/v1/wallets/me/transfers/{transferId}` reports it: every field of
 * `Transfer` plus its `status`. A 201 is always `posted`; `pending` means debited and not yet
 * ended (it ends posted or, if its credit cannot happen within TRANSFER_VOID_AFTER_SECONDS,
 * voided); `voided` means the amount went back to the sender and nothing reached the recipient.
 * `recipientBalance`, `messageId` and `chatId` are null unless the transfer is posted.
 */
export const transferStatusSchema = z.enum(["posted", "pending", "voided"]).openapi({
  description: "posted: credited and announced; pending: debited, not yet ended; voided: returned to the sender.",
});

export const transferWithStatusSchema = z
  .object({
    ...transferShape,
    status: transferStatusSchema,
    recipientBalance: transferShape.recipientBalance
      .nullable()
      .openapi({ description: "The recipient's balance right after this credit; null unless posted." }),
    messageId: transferShape.messageId.nullable().openapi({ description: "null unless posted." }),
    chatId: transferShape.chatId.nullable().openapi({ description: "null unless posted." }),
  })
  .openapi("TransferWithStatus", { example: { ...TRANSFER_EXAMPLE, status: "posted" } });

/** The 202 of a transfer whose debit happened but whose end did not come within the request. */
export const pendingTransferSchema = z
  .object({
    ...transferShape,
    status: z.literal("pending"),
    recipientBalance: z.null().openapi({ description: "null: not credited yet." }),
    messageId: z.null().openapi({ description: "null: not posted yet." }),
    chatId: z.null().openapi({ description: "null: not posted yet." }),
  })
  .openapi("PendingTransfer", {
    example: { ...TRANSFER_EXAMPLE, recipientBalance: null, messageId: null, chatId: null, status: "pending" },
  });

/** `MAX_TRANSFER_AMOUNT` in every environment of wrangler.toml. */
export const DEFAULT_MAX_TRANSFER_AMOUNT = 100_000;

export const transferRequestSchema = z
  .object({
    recipientId: idSchema("recipient's user id").openapi({ example: "64d15f9e2e6c8f4d5a654321" }),
    amount: z
      .number({ message: "must be an integer number of credits" })
      .int({ message: "must be an integer number of credits" })
      .min(1, { message: "must be at least 1" })
      .openapi({
        example: 25,
        // The var's value is checked by the service (it differs per deployment); the document states the default.
        maximum: DEFAULT_MAX_TRANSFER_AMOUNT,
        description: "Whole credits, 1..MAX_TRANSFER_AMOUNT (default 100000). Never a string or a float.",
      }),
    note: z
      .string()
      .max(280, { message: "must be at most 280 characters" })
      .regex(NO_CONTROL_CHARACTERS, { message: NO_CONTROL_CHARACTERS_MESSAGE })
      .nullable()
      .optional()
      .openapi({
        example: "lunch",
        description: `Shown with the transfer in the chat; up to 280 characters. ${NO_CONTROL_CHARACTERS_NOTE}`,
      }),
  })
  .openapi("CreditTransferRequest", { example: { recipientId: "64d15f9e2e6c8f4d5a654321", amount: 25 } });

export const limitsSchema = z
  .object({
    perTransferMax: z
      .number()
      .int()
      .openapi({ example: 100000, description: "MAX_TRANSFER_AMOUNT: the largest single transfer." }),
    windowHours: z.number().int().openapi({ example: 24, description: "The rolling window of the send limit, in hours." }),
    windowLimit: z
      .number()
      .int()
      .openapi({ example: 1000000, description: "DAILY_TRANSFER_LIMIT: credits one user may send per window." }),
    windowUsed: z.number().int().openapi({ example: 25, description: "Credits sent in the last `windowHours` hours." }),
    windowRemaining: z.number().int().openapi({ example: 999975, description: "windowLimit − windowUsed (never below 0)." }),
  })
  .openapi("TransferLimits");

export const GRANT_MAX_AMOUNT = 1_000_000_000;

export const grantRequestSchema = z
  .object({
    amount: z
      .number({ message: "must be an integer number of credits" })
      .int({ message: "must be an integer number of credits" })
      .min(1, { message: "must be at least 1" })
      .max(GRANT_MAX_AMOUNT, { message: `must be at most ${GRANT_MAX_AMOUNT}` })
      .openapi({ example: 500 }),
    reason: z
      .string()
      .trim()
      .min(1, { message: "is required" })
      .max(280, { message: "must be at most 280 characters" })
      .regex(NO_CONTROL_CHARACTERS, { message: NO_CONTROL_CHARACTERS_MESSAGE })
      .openapi({
        example: "Compensation for ticket #4521",
        description: `1..280 characters after trimming; the user sees it as the grant's ledger note. ${NO_CONTROL_CHARACTERS_NOTE}`,
      }),
  })
  .openapi("GrantRequest", { example: { amount: 500, reason: "Compensation for ticket #4521" } });

export const grantSchema = z
  .object({
    grantId: idSchema("grant id"),
    userId: idSchema("user id"),
    amount: z.number().int().openapi({ example: 500 }),
    balance: z.number().int().openapi({ example: 600, description: "The wallet's balance right after the grant." }),
  })
  .openapi("Grant");

/** Every kind of discrepancy a run reports (OpenAPI and docs/wallets.md list the same). */
export const DISCREPANCY_KINDS = {
  wallet_ledger: "A wallet's balance disagrees with its running totals or with its last ledger entry.",
  stuck_transfer:
    "A transfer still `pending` longer than TRANSFER_VOID_AFTER_SECONDS after its debit and not voided (up to 20 listed per wallet; `stuckTransfers` counts all).",
  unpaired_transfer_out: "A posted transfer whose recipient's wallet has no credit for it: credits lost.",
  orphan_transfer_in: "A credit (`transfer_in`) in a wallet with no transfer behind it at its sender: credits created.",
  mismatched_transfer_in: "A credit whose amount, sender or recipient differs from its transfer.",
  missing_transfer_message: "A posted transfer without its `credit_transfer` message.",
  mismatched_transfer_message: "A `credit_transfer` message whose sender, recipient, amount or id differs from its transfer.",
  orphan_transfer_message: "A `credit_transfer` message with no transfer behind it at its sender.",
  voided_transfer_credited: "A voided transfer whose recipient was credited anyway: credits created.",
  voided_transfer_message: "A voided transfer that has a `credit_transfer` message.",
  unrefunded_void: "A voided transfer whose sender has no `reversal_in` entry restoring the amount.",
  totals:
    "The sum of all books at the run's cut does not add up: credits that left senders minus those that arrived or returned is negative (created) or more than could be in flight (lost).",
} as const;

export type DiscrepancyKind = keyof typeof DISCREPANCY_KINDS;

const discrepancyKinds = Object.keys(DISCREPANCY_KINDS) as [DiscrepancyKind, ...DiscrepancyKind[]];

export const discrepancySchema = z
  .object({
    kind: z.enum(discrepancyKinds).openapi({
      example: "stuck_transfer",
      description: Object.entries(DISCREPANCY_KINDS)
        .map(([kind, meaning]) => `\`${kind}\`: ${meaning}`)
        .join("\n\n"),
    }),
    userId: z.string().nullable().openapi({ example: "64d15f9e2e6c8f4d5a123456", description: "The wallet concerned, if one." }),
    transferId: z
      .string()
      .nullable()
      .openapi({ example: "64d15f9e2e6c8f4d5a777777", description: "The transfer concerned, if one." }),
    detail: z.string().openapi({ example: "pending since 2026-01-15T09:00:00.000Z, 25 to 64d15f9e2e6c8f4d5a654321" }),
  })
  .openapi("Discrepancy");

const count = (example: number, description: string) => z.number().int().openapi({ example, description });

const reportFields = {
  totalBalance: count(200, "Sum of all balances at the run's cut (`checkedAt`)."),
  totalGranted: count(200, "Sum of all grants (welcome and admin) at the cut."),
  pendingTransfers: count(0, "Transfers debited but not yet posted or voided when their wallet was read."),
  inFlightAmount: count(
    0,
    "Credits that had left senders by the cut without arriving or returning: totalBalance + inFlightAmount = totalGranted.",
  ),
  stuckTransfers: count(
    0,
    "Pending transfers past TRANSFER_VOID_AFTER_SECONDS (each is also a `stuck_transfer` discrepancy, up to 20 per wallet).",
  ),
  discrepancyCount: count(0, "Discrepancies found (the list holds the first 500 by kind)."),
};

export const reconciliationSchema = z
  .object({
    wallets: count(2, "Wallets checked (one per user; unopened wallets count with 0)."),
    ...reportFields,
    discrepancies: z.array(discrepancySchema).openapi({ description: "Empty when the books are right." }),
    checkedAt: isoTime().openapi({ description: "The run's cut: the instant the totals describe." }),
    runId: idSchema("reconciliation run id"),
  })
  .openapi("Reconciliation");

const nullableCount = (example: number, description: string) => z.number().int().nullable().openapi({ example, description });

export const reconciliationRunSchema = z
  .object({
    id: idSchema("reconciliation run id"),
    status: z.enum(["running", "completed", "failed"]).openapi({ example: "completed" }),
    trigger: z.enum(["manual", "scheduled", "auto"]).openapi({
      example: "manual",
      description:
        "`manual`: POST /admin/reconciliations; `scheduled`: the daily Cron Trigger; `auto`: GET /admin/reconciliation found no report from the last 24 h.",
    }),
    startedAt: isoTime(),
    finishedAt: isoTime().nullable(),
    cutoffAt: isoTime().openapi({ description: "The instant whose books the totals describe." }),
    walletsChecked: count(2, "Progress: wallets read so far (all of them once completed)."),
    pagesDone: count(1, "Progress: pages of wallets done."),
    totalBalance: nullableCount(200, "Set when completed (as in Reconciliation)."),
    totalGranted: nullableCount(200, "Set when completed."),
    pendingTransfers: nullableCount(0, "Set when completed."),
    inFlightAmount: nullableCount(0, "Set when completed."),
    stuckTransfers: nullableCount(0, "Set when completed."),
    discrepancyCount: reportFields.discrepancyCount,
    discrepancies: z.array(discrepancySchema).openapi({ description: "Confirmed so far (the first 500 by kind)." }),
    error: z.string().nullable().openapi({ example: null, description: "Why a failed run failed." }),
  })
  .openapi("ReconciliationRun");

export type Wallet = z.infer<typeof walletSchema>;
export type LedgerEntry = z.infer<typeof ledgerEntrySchema>;
export type Transfer = z.infer<typeof transferSchema>;
export type TransferStatus = z.infer<typeof transferStatusSchema>;
export type TransferWithStatus = z.infer<typeof transferWithStatusSchema>;
export type TransferRequest = z.infer<typeof transferRequestSchema>;
export type Limits = z.infer<typeof limitsSchema>;
export type Grant = z.infer<typeof grantSchema>;
export type Discrepancy = z.infer<typeof discrepancySchema>;
export type Reconciliation = z.infer<typeof reconciliationSchema>;

/**
 * The served document with this deployment's `MAX_TRANSFER_AMOUNT` as the transfer amount's
 * `maximum` (the schema can only carry the default), so a validating client or proxy accepts
 * exactly the amounts the server accepts.
 */
export function withTransferMaximum<D extends { components?: { schemas?: Record<string, unknown> } }>(doc: D, max: number): D {
  const schema = doc.components?.schemas?.CreditTransferRequest as { properties?: { amount?: { maximum?: number } } } | undefined;
  if (schema?.properties?.amount) schema.properties.amount.maximum = max;
  return doc;
}
export type ReconciliationRun = z.infer<typeof reconciliationRunSchema>;
