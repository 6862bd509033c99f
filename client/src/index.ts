export { type ClientEvents, type ClientOptions, CreditChatClient, type SendOptions, type SentCredits } from "./client.js";
export { ApiError, SignedOutError } from "./errors.js";
export type { components, operations, paths } from "./generated/api.js";
export { type Page, paginate } from "./paging.js";
export { type ConnectionState, FINAL_CLOSE_CODES } from "./realtime.js";
export { backoffDelay, defaultRetryPolicy, noRetry, type RetryContext, type RetryPolicy, retryAfterMs } from "./retry.js";
export { ChatSequencer } from "./sequencer.js";
export { localStorageTokenStore, memoryTokenStore, type TokenStore, type Tokens } from "./tokens.js";
export type * from "./types.js";
