import { z } from "@hono/zod-openapi";
import { pageQuerySchema, pageSchema } from "../../lib/cursor";
import { idSchema } from "../../lib/ids";
import { defineRoute, jsonSuccess, SESSION_ENDED_NOTE } from "../../lib/openapi";
import {
  grantRequestSchema,
  grantSchema,
  ledgerEntrySchema,
  limitsSchema,
  pendingTransferSchema,
  transferRequestSchema,
  transferSchema,
  transferWithStatusSchema,
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
      "Moves `amount` credits from the caller to `recipientId` and posts a `credit_transfer` message from the caller into their direct chat (created if missing), exactly once. Order of effects: the debit, then the recipient's credit, then the message, so nobody ever sees a transfer message for credits that are not in the recipient's balance. The message's id is the transfer's id.",
      "Validation (400 `validation_failed`, one `field: message` per problem): `recipientId` a 24-hex id that is not the caller; `amount` a JSON integer from 1 to `MAX_TRANSFER_AMOUNT` (default 100000) — strings, floats, zero and negatives are refused; `note` at most 280 characters.",
      "Refusals: 403 `account_suspended` (the caller is suspended), 404 `user_not_found` (no such recipient), 403 `recipient_blocked` (the recipient blocked the caller); 409 `insufficient_balance` (e.g. `Insufficient balance: 10 available, 25 requested`); 409 `transfer_limit_exceeded` (more than `DAILY_TRANSFER_LIMIT`, default 1000000, credits sent in a rolling 24 hours, see `GET /api/v1/wallets/me/limits`); 409 `idempotency_key_reused`.",
      "Idempotency: with an `Idempotency-Key`, a key that has a stored outcome answers it first, before any other check: a client whose 201 was lost and who retries after being blocked, suspended, rate limited or after a limit changed still gets the original 201 with `Idempotent-Replayed: true`. Stored outcomes (24 h): the 201, the 409 `insufficient_balance` / `transfer_limit_exceeded`, and 409 `transfer_voided` for a transfer that was voided. 400/401/403/404/429/5xx store nothing, so a corrected retry runs. A retry while the first request is still in flight finishes that same transfer and answers the same.",
      "Every transfer ends: a transfer whose credit has not happened within `TRANSFER_VOID_AFTER_SECONDS` (default 3600) of its debit is voided exactly once: the amount returns to the sender as a `reversal_in` ledger entry, no message is posted, the sender gets a `transfer.voided` realtime frame, and a replay of its key answers 409 `transfer_voided`. A credited transfer is never voided.",
      "202 `pending`: the debit happened but the recipient's credit or the message could not complete within the request (the recipient's wallet or the database slow or unreachable). The body is the transfer with `status: \"pending\"` and its `transferId`; it ends later as posted or voided by itself (`GET /api/v1/wallets/me/transfers/{transferId}`, realtime frames), and a retry with the same key answers its state then. Never send it again with a new key: that would be a second payment. A 5xx means the wallet could not answer at all: retry with the same key.",
      "Rate limited per user: `RATE_LIMIT_TRANSFERS_PER_MINUTE` (default 60) per sliding minute, counted only for requests whose key has no stored outcome; over it 429 `rate_limited` with `Retry-After`. `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` come with every counted request.",
      "`senderBalance` is the sender's balance right after this debit, `recipientBalance` the recipient's right after this credit.",
      `${SESSION_ENDED_NOTE} Like every refusal before execution, it comes after a stored outcome: a key used before the session ended still replays.`,
    ].join("\n\n"),
    request: {
      body: json(transferRequestSchema),
    },
    responses: {
      201: jsonSuccess(transferSchema, 201, "The transfer was made and its message posted"),
      202: jsonSuccess(
        pendingTransferSchema,
        202,
        "Debited, not yet ended: the credit or the message could not complete within the request; the transfer ends by itself as posted or voided",
      ),
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
      "A transfer the caller sent or received, with its `status`: `posted`, `pending` (debited, not yet ended) or `voided` (the amount went back to the sender; nothing reached the recipient). A client whose transfer request timed out asks here whether it went through: a pending transfer the caller sent is pushed forward first, so the answer is as final as it can be. `recipientBalance`, `messageId` and `chatId` are null unless posted. The recipient sees a transfer once it is credited (`posted`) or voided. 404 `transfer_not_found` for an unknown transfer or one the caller is not part of.",
    request: { params: z.object({ transferId: idSchema("transfer id") }) },
    responses: { 200: jsonSuccess(transferWithStatusSchema, 200, "The transfer and its status") },
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
      "Accepts an `Idempotency-Key` (scope: the admin, across every user granted): a retry with the same key, user and body answers the original 201 with `Idempotent-Replayed: true` and grants nothing more; another body, or the same key for another user (even at the same time), is 409 `idempotency_key_reused`. Another admin's same key is another scope, never compared. A stored outcome answers its key before the admin check: an admin whose 201 was lost and who lost the role (or was suspended) since still gets the original 201; a request with a key that has no stored outcome is then checked (403) and keeps no key. Without a key the admin check comes first, before validation. A request refused before it executed (400, 403, 404, 429) or failing (5xx) keeps nothing, so a corrected retry with the same key runs. The key is kept 24 h after the grant. The grant and its audit row (`GET /api/v1/admin/audit`) are recorded together: a row the audit log could not take at once is delivered later, never lost.",
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
