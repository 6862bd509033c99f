import { z } from "@hono/zod-openapi";
import { pageQuerySchema, pageSchema } from "../../lib/cursor";
import { idSchema } from "../../lib/ids";
import { defineRoute, jsonSuccess } from "../../lib/openapi";
import {
  grantRequestSchema,
  grantSchema,
  ledgerEntrySchema,
  limitsSchema,
  reconciliationSchema,
  transferRequestSchema,
  transferSchema,
  walletSchema,
} from "../../schemas/wallet";

const json = <T>(schema: T) => ({ required: true, content: { "application/json": { schema } } });

export const sendCreditTransfer = defineRoute(
  {
    method: "post",
    path: "/api/v1/messages/credit-transfer",
    operationId: "sendCreditTransfer",
    tags: ["Credit transfers"],
    summary: "Send a credit transfer message",
    description: [
      "Moves `amount` credits from the caller to `recipientId` and posts a `credit_transfer` message from the caller into their direct chat (created if missing), exactly once: the credits and the message always go together, even across crashes and retries (a pending transfer is finished by the sender wallet's alarm within seconds).",
      "Validation (400 `validation_failed`, one `field: message` per problem): `recipientId` a 24-hex id that is not the caller; `amount` a JSON integer from 1 to `MAX_TRANSFER_AMOUNT` (default 100000) — strings, floats, zero and negatives are refused; `note` at most 280 characters.",
      "Refusals: 403 `account_suspended` (the caller is suspended), 404 `user_not_found` (no such recipient), 403 `recipient_blocked` (the recipient blocked the caller); 409 `insufficient_balance` (e.g. `Insufficient balance: 10 available, 25 requested`); 409 `transfer_limit_exceeded` (more than `DAILY_TRANSFER_LIMIT`, default 1000000, credits sent in a rolling 24 hours, see `GET /api/v1/wallets/me/limits`); 409 `idempotency_key_reused`.",
      "Idempotency: with an `Idempotency-Key`, the 201 and the 409 `insufficient_balance` / `transfer_limit_exceeded` outcomes are stored and replayed for 24 h; 400/401/403/404/429/5xx store nothing, so a corrected retry runs. A retry while the first request is still in flight finishes that same transfer and answers the same.",
      "Rate limited per user: `RATE_LIMIT_TRANSFERS_PER_MINUTE` (default 60) per sliding minute; over it 429 `rate_limited` with `Retry-After`.",
      "`senderBalance` is the sender's balance right after this debit, `recipientBalance` the recipient's right after this credit.",
    ].join("\n\n"),
    request: {
      body: json(transferRequestSchema),
    },
    responses: {
      201: jsonSuccess(transferSchema, 201, "The transfer was made and its message posted"),
    },
  },
  // The wallet object answers a stored outcome first, then counts the per-user rate limit.
  {
    auth: "user",
    idempotent: "wallet",
    rateLimit: [{ scope: "transfers", countedBy: "wallet" }],
    // 409 (insufficient_balance, transfer_limit_exceeded) comes with `idempotent` already.
    errors: [403, 404],
  },
);

export const getMyWallet = defineRoute(
  {
    method: "get",
    path: "/api/v1/wallets/me",
    operationId: "getMyWallet",
    tags: ["Wallets"],
    summary: "Get my wallet",
    description:
      "The caller's balance. Every user has a wallet: it is opened at registration with the `SIGNUP_CREDITS` welcome grant, or on first use if that did not happen.",
    responses: { 200: jsonSuccess(walletSchema, 200, "The caller's wallet") },
  },
  { auth: "user" },
);

export const listMyTransactions = defineRoute(
  {
    method: "get",
    path: "/api/v1/wallets/me/transactions",
    operationId: "listMyTransactions",
    tags: ["Wallets"],
    summary: "List my wallet transactions",
    description:
      "The caller's ledger, newest first: every grant, transfer out (negative `amount`) and transfer in (positive), each with the balance right after it. Paginated with `limit` (1..100, default 50) and the opaque `cursor` from `nextCursor`.",
    request: { query: pageQuerySchema },
    responses: { 200: jsonSuccess(pageSchema(ledgerEntrySchema), 200, "A page of ledger entries") },
  },
  { auth: "user" },
);

export const getMyLimits = defineRoute(
  {
    method: "get",
    path: "/api/v1/wallets/me/limits",
    operationId: "getMyTransferLimits",
    tags: ["Wallets"],
    summary: "Get my transfer limits",
    description:
      "`perTransferMax` is `MAX_TRANSFER_AMOUNT`; the rolling window is the last `windowHours` (24) hours, in which the caller may send `windowLimit` (`DAILY_TRANSFER_LIMIT`) credits in total; `windowUsed` were sent, `windowRemaining` are left.",
    responses: { 200: jsonSuccess(limitsSchema, 200, "The caller's limits and usage") },
  },
  { auth: "user" },
);

export const getMyTransfer = defineRoute(
  {
    method: "get",
    path: "/api/v1/wallets/me/transfers/{transferId}",
    operationId: "getMyTransfer",
    tags: ["Wallets"],
    summary: "Get a credit transfer",
    description:
      "A transfer the caller sent or received. A client whose transfer request timed out asks here whether it went through (a transfer still finishing is finished first). 404 `transfer_not_found` for an unknown transfer or one the caller is not part of.",
    request: { params: z.object({ transferId: idSchema("transfer id") }) },
    responses: { 200: jsonSuccess(transferSchema, 200, "The transfer") },
  },
  { auth: "user", errors: [404] },
);

export const grantCredits = defineRoute(
  {
    method: "post",
    path: "/api/v1/admin/wallets/{userId}/grants",
    operationId: "grantCredits",
    tags: ["Admin"],
    summary: "Grant credits to a wallet",
    description: [
      "Admins only (403 `insufficient_permissions` otherwise). Adds `amount` credits (1..1000000000) to the user's wallet as a `grant` ledger entry whose note is `reason`. 404 `user_not_found` for an unknown user.",
      "Accepts an `Idempotency-Key` (scope: the admin, per wallet): a retry with the same key and body answers the original 201 with `Idempotent-Replayed: true` and grants nothing more; another body is 409 `idempotency_key_reused`.",
    ].join("\n\n"),
    request: {
      params: z.object({ userId: idSchema("user id") }),
      body: json(grantRequestSchema),
    },
    responses: {
      201: jsonSuccess(grantSchema, 201, "The grant was applied"),
    },
  },
  { auth: "admin", idempotent: "wallet", errors: [404] },
);

export const reconciliation = defineRoute(
  {
    method: "get",
    path: "/api/v1/admin/reconciliation",
    operationId: "getReconciliation",
    tags: ["Admin"],
    summary: "Reconcile all wallets",
    description:
      "Admins only. Walks every user's wallet and checks the books end to end: each wallet's `balanceAfter` chain and entries; every `transfer_out` paired with exactly one `transfer_in` of the same amount; every posted transfer has exactly one `credit_transfer` message; total balance + credits in flight (`pendingTransfers`, finished by the alarms within seconds) = total granted. `discrepancies` is empty when the books are right. Not a snapshot: under live traffic a totals-only discrepancy can be a transfer that started mid-walk; run it again before acting.",
    responses: { 200: jsonSuccess(reconciliationSchema, 200, "The result of the check") },
  },
  { auth: "admin" },
);
