import createClient, { type Client } from "openapi-fetch";
import { Emitter } from "./emitter.js";
import { SignedOutError } from "./errors.js";
import type { paths } from "./generated/api.js";
import { type Page, paginate } from "./paging.js";
import { type ConnectionState, RealtimeConnection } from "./realtime.js";
import { defaultRetryPolicy, type RetryPolicy, sleep } from "./retry.js";
import { ChatSequencer } from "./sequencer.js";
import { memoryTokenStore, type TokenStore } from "./tokens.js";
import { AuthFetch, call, newKey } from "./transport.js";
import type { FrameData, FrameType, LedgerEntry, Message, ServerFrame, Session, TransferWithStatus, User } from "./types.js";

export type ClientOptions = {
  /** Where the API is, e.g. `http://127.0.0.1:8787` (in a page on the same origin: `location.origin`). */
  baseUrl: string;
  /** Where the session is kept; memory by default (`localStorageTokenStore()` survives reloads). */
  tokens?: TokenStore;
  /** When failed safe operations are tried again (writes keep their Idempotency-Key across attempts). */
  retry?: RetryPolicy;
  /** One HTTP attempt's limit, ms (default 15 s). */
  timeoutMs?: number;
  fetch?: typeof fetch;
  WebSocket?: typeof WebSocket;
  realtime?: { pingIntervalMs?: number; pongTimeoutMs?: number; backoff?: { baseMs: number; maxMs: number } };
  /** How often a 202 transfer is looked up while no realtime frame says it ended (ms, doubling to maxMs). */
  transferPoll?: { baseMs: number; maxMs: number };
};

/** Every frame of API.md by its `type`, plus what the client derives from them. */
export type ClientEvents = { [K in FrameType]: FrameData<K> } & {
  /** A watched chat's messages, each exactly once and in `seq` order, however the socket behaved. */
  message: Message;
  state: ConnectionState;
  /** Signed in, or tokens refreshed. */
  session: Session;
  /** The session is over (logout, `session_ended`, socket 4001, refused refresh): sign in again. */
  signedOut: { reason: string };
  /** The account was suspended (socket 4003): reading still works; sending does not. */
  suspended: { reason: string };
  /** This socket was the oldest of too many (4008); the client does not fight back with a reconnect. */
  replaced: { reason: string };
  /** Catching up a chat failed for now; the next frame or reconnect tries again. */
  syncError: { chatId: string; error: unknown };
};

/** A credit transfer followed to its end. */
export type SentCredits = { status: "posted" | "voided"; transfer: TransferWithStatus };

export type SendOptions = { idempotencyKey?: string };

export class CreditChatClient {
  /** The typed transport for every operation of the document, signed in and refreshing like the helpers. */
  readonly api: Client<paths>;
  readonly tokens: TokenStore;
  private readonly events = new Emitter<ClientEvents>();
  private readonly auth: AuthFetch;
  private readonly policy: RetryPolicy;
  private readonly sequencer: ChatSequencer;
  private readonly options: ClientOptions;
  private connection: RealtimeConnection | null = null;
  private connectionState: ConnectionState = "closed";

  constructor(options: ClientOptions) {
    this.options = options;
    this.tokens = options.tokens ?? memoryTokenStore();
    this.policy = options.retry ?? defaultRetryPolicy();
    const baseFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.auth = new AuthFetch({
      baseUrl: options.baseUrl,
      tokens: this.tokens,
      fetch: baseFetch,
      timeoutMs: options.timeoutMs ?? 15_000,
      onSignedOut: (reason) => this.signedOut(reason),
      onRefreshed: (session) => this.events.emit("session", session),
    });
    this.api = createClient<paths>({ baseUrl: options.baseUrl, fetch: this.auth.fetch });
    this.sequencer = new ChatSequencer(
      (chatId, afterSeq) => this.messagesPage(chatId, { afterSeq, limit: 100 }),
      (message) => this.events.emit("message", message),
      (chatId, error) => this.events.emit("syncError", { chatId, error }),
    );
  }

  on<K extends keyof ClientEvents>(event: K, listener: (payload: ClientEvents[K]) => void): () => void {
    return this.events.on(event, listener);
  }

  get signedIn(): boolean {
    return this.tokens.get() !== null;
  }

  get state(): ConnectionState {
    return this.connectionState;
  }

  // ---------------------------------------------------------------- auth

  async register(body: { email: string; password: string; displayName: string }): Promise<Session> {
    return this.startSession(await call(() => this.api.POST("/api/v1/auth/register", { body }), null));
  }

  async login(body: { email: string; password: string }): Promise<Session> {
    return this.startSession(await call(() => this.api.POST("/api/v1/auth/login", { body }), null));
  }

  /** Trades the refresh token for a new pair now (calls that meet `token_expired` do this by themselves, once). */
  async refresh(): Promise<void> {
    const token = await this.auth.refreshOnce(this.tokens.get()?.accessToken ?? "");
    if (!token) throw new SignedOutError("no session");
  }

  async changePassword(body: { currentPassword: string; newPassword: string }): Promise<Session> {
    return this.startSession(await call(() => this.api.POST("/api/v1/auth/password", { body }), null));
  }

  /** Ends this session on the server and here. */
  async logout(): Promise<void> {
    const refreshToken = this.tokens.get()?.refreshToken;
    if (refreshToken) await call(() => this.api.POST("/api/v1/auth/logout", { body: { refreshToken } }), this.policy);
    this.tokens.set(null);
    this.signedOut("logout");
  }

  /** Ends every session of the account ("log out everywhere"). */
  async logoutAll(): Promise<void> {
    await call(() => this.api.POST("/api/v1/auth/logout-all"), this.policy);
    this.tokens.set(null);
    this.signedOut("logout_all");
  }

  private startSession(session: Session): Session {
    this.tokens.set({ accessToken: session.accessToken, refreshToken: session.refreshToken });
    this.events.emit("session", session);
    return session;
  }

  private signedOut(reason: string): void {
    this.disconnect();
    this.events.emit("signedOut", { reason });
  }

  // ---------------------------------------------------------------- reads

  me(): Promise<User> {
    return call(() => this.api.GET("/api/v1/users/me"), this.policy);
  }

  /** Someone's public profile (e.g. the other member of a direct chat). */
  user(userId: string): Promise<User> {
    return call(() => this.api.GET("/api/v1/users/{userId}", { params: { path: { userId } } }), this.policy);
  }

  wallet() {
    return call(() => this.api.GET("/api/v1/wallets/me"), this.policy);
  }

  transferLimits() {
    return call(() => this.api.GET("/api/v1/wallets/me/limits"), this.policy);
  }

  transfer(transferId: string): Promise<TransferWithStatus> {
    return call(
      () => this.api.GET("/api/v1/wallets/me/transfers/{transferId}", { params: { path: { transferId } } }),
      this.policy,
    );
  }

  chat(chatId: string) {
    return call(() => this.api.GET("/api/v1/chats/{chatId}", { params: { path: { chatId } } }), this.policy);
  }

  /** The direct chat with `memberId`, created if missing (repeating it answers the same chat, so it is retried). */
  openDirectChat(memberId: string) {
    return call(() => this.api.POST("/api/v1/chats", { body: { type: "direct", memberId } }), this.policy);
  }

  createGroupChat(title: string, memberIds: string[]) {
    return call(() => this.api.POST("/api/v1/chats", { body: { type: "group", title, memberIds } }), null);
  }

  /** Moves my read marker (it only moves forward, so a repeat is harmless). */
  markRead(chatId: string, seq: number) {
    return call(() => this.api.POST("/api/v1/chats/{chatId}/read", { params: { path: { chatId } }, body: { seq } }), this.policy);
  }

  // ---------------------------------------------------------------- safe writes

  /**
   * Sends a message to a chat (v2). Its `clientMessageId` (made here unless given, so the app can
   * show the message before the answer) and its Idempotency-Key stay the same on every retry, so
   * however often the network fails the chat holds it once.
   */
  sendMessage(
    chatId: string,
    content: string,
    options: SendOptions & { clientMessageId?: string; replyToMessageId?: string } = {},
  ): Promise<Message> {
    const clientMessageId = options.clientMessageId ?? newKey();
    const key = options.idempotencyKey ?? clientMessageId;
    const body = {
      chatId,
      content,
      clientMessageId,
      ...(options.replyToMessageId ? { replyToMessageId: options.replyToMessageId } : {}),
    };
    return call(() => this.api.POST("/api/v2/messages", { body, headers: { "Idempotency-Key": key } }), this.policy);
  }

  /** Sends a message to a person's direct chat (v1), with one Idempotency-Key across retries. */
  sendDirectMessage(recipientId: string, content: string, options: SendOptions = {}): Promise<Message> {
    const key = options.idempotencyKey ?? newKey();
    return call(
      () => this.api.POST("/api/v1/messages", { body: { recipientId, content }, headers: { "Idempotency-Key": key } }),
      this.policy,
    );
  }

  /**
   * Sends credits with one Idempotency-Key across every retry (a key never pays twice), then, if
   * the server answered 202, follows the transfer until it is posted or voided: through the
   * realtime frames when connected, and the transfer lookup either way.
   */
  async sendCredits(recipientId: string, amount: number, options: SendOptions & { note?: string } = {}): Promise<SentCredits> {
    const key = options.idempotencyKey ?? newKey();
    const body = { recipientId, amount, ...(options.note === undefined ? {} : { note: options.note }) };
    const answer = await call(
      () => this.api.POST("/api/v1/messages/credit-transfer", { body, headers: { "Idempotency-Key": key } }),
      this.policy,
    );
    // Only a 202 carries `status` (always "pending"); a 201 is posted by definition.
    if ("status" in answer) return this.followTransfer(answer.transferId);
    return { status: "posted", transfer: { ...answer, status: "posted" } };
  }

  /** Waits for a pending transfer to end: a frame naming it wakes the lookup early; otherwise the lookup backs off. */
  async followTransfer(transferId: string): Promise<SentCredits> {
    const { baseMs, maxMs } = this.options.transferPoll ?? { baseMs: 500, maxMs: 30_000 };
    let wake = new AbortController();
    const nudge = (id: string | undefined) => id === transferId && wake.abort();
    const offs = [
      this.on("transfer.voided", (transfer) => nudge(transfer.transferId)),
      this.on("message.created", (message) => nudge(message.creditTransfer?.transferId)),
    ];
    try {
      for (let delay = baseMs; ; delay = Math.min(maxMs, delay * 2)) {
        await sleep(delay, wake.signal);
        wake = new AbortController();
        const transfer = await this.transfer(transferId);
        if (transfer.status !== "pending") return { status: transfer.status, transfer };
      }
    } finally {
      for (const off of offs) off();
    }
  }

  // ---------------------------------------------------------------- lists (async iterators over every page)

  /** My chats, most recent activity first. */
  chats(pageSize = 50) {
    return paginate((cursor) =>
      call(() => this.api.GET("/api/v1/chats", { params: { query: { limit: pageSize, cursor } } }), this.policy),
    );
  }

  /** A chat's messages, newest first (`for await (const m of client.messages(chatId))`). */
  messages(chatId: string, pageSize = 50): AsyncGenerator<Message> {
    return paginate((cursor) => this.messagesPage(chatId, { limit: pageSize, cursor }));
  }

  /** A chat's messages after `afterSeq`, oldest first (catching up). */
  messagesAfter(chatId: string, afterSeq: number, pageSize = 100): AsyncGenerator<Message> {
    return paginate((cursor) => this.messagesPage(chatId, { afterSeq, limit: pageSize, cursor }));
  }

  /** My wallet's ledger, newest first. */
  transactions(pageSize = 50): AsyncGenerator<LedgerEntry> {
    return paginate((cursor) =>
      call(
        () => this.api.GET("/api/v1/wallets/me/transactions", { params: { query: { limit: pageSize, cursor } } }),
        this.policy,
      ),
    );
  }

  /** People whose display name starts with `search`, or whose email is exactly it. */
  users(search: string, pageSize = 50): AsyncGenerator<User> {
    return paginate((cursor) =>
      call(() => this.api.GET("/api/v1/users", { params: { query: { search, limit: pageSize, cursor } } }), this.policy),
    );
  }

  /** The admin audit log, newest first (admins only). */
  auditLog(pageSize = 50) {
    return paginate((cursor) =>
      call(() => this.api.GET("/api/v1/admin/audit", { params: { query: { limit: pageSize, cursor } } }), this.policy),
    );
  }

  private messagesPage(chatId: string, query: { afterSeq?: number; limit?: number; cursor?: string }): Promise<Page<Message>> {
    return call(() => this.api.GET("/api/v1/messages/chat/{chatId}", { params: { path: { chatId }, query } }), this.policy);
  }

  // ---------------------------------------------------------------- realtime

  /**
   * Opens the realtime socket (a fresh ticket per attempt) and keeps it open: reconnects with
   * exponential backoff and jitter, pings to notice a dead link, and after every (re)connect
   * catches up each watched chat from the last seq it delivered. Resolves once the first socket
   * is open. 4001/4003/4008 end it with `signedOut` / `suspended` / `replaced`, never a retry loop.
   */
  connect(): Promise<void> {
    if (this.connection) return Promise.resolve();
    const realtime = this.options.realtime ?? {};
    const connection = new RealtimeConnection({
      socketUrl: () => this.socketUrl(),
      WebSocket: this.options.WebSocket ?? globalThis.WebSocket,
      onFrame: (frame) => this.onFrame(frame),
      onOpen: () => {
        for (const chatId of this.sequencer.watched()) void this.sequencer.catchUp(chatId);
      },
      onState: (state) => {
        this.connectionState = state;
        this.events.emit("state", state);
      },
      onEnded: (reason, detail) => {
        this.connection = null;
        if (reason === "signedOut") this.tokens.set(null);
        this.events.emit(reason, { reason: detail });
      },
      pingIntervalMs: realtime.pingIntervalMs ?? 25_000,
      pongTimeoutMs: realtime.pongTimeoutMs ?? 10_000,
      backoff: realtime.backoff ?? { baseMs: 500, maxMs: 30_000 },
    });
    this.connection = connection;
    return connection.start();
  }

  /** Closes the socket and stops reconnecting; watched chats stay watched for the next connect(). */
  disconnect(): void {
    this.connection?.stop();
    this.connection = null;
  }

  /** Skip the reconnect backoff now (e.g. on the browser's `online` event). */
  reconnectNow(): void {
    this.connection?.reconnectNow();
  }

  /**
   * Delivers the chat's messages after `afterSeq` as `message` events, exactly once and in seq
   * order, now and after every reconnect. Resolves once caught up.
   */
  watch(chatId: string, afterSeq = 0): Promise<void> {
    return this.sequencer.watch(chatId, afterSeq);
  }

  unwatch(chatId: string): void {
    this.sequencer.unwatch(chatId);
  }

  /** The last seq delivered for a watched chat. */
  lastSeq(chatId: string): number | undefined {
    return this.sequencer.lastDelivered(chatId);
  }

  private async socketUrl(): Promise<string> {
    const { ticket } = await call(() => this.api.POST("/api/v1/realtime/tickets"), this.policy);
    const url = new URL("/api/v1/realtime", this.options.baseUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("ticket", ticket);
    return url.toString();
  }

  private onFrame(frame: ServerFrame): void {
    (this.events.emit as (type: string, data: unknown) => void)(frame.type, "data" in frame ? frame.data : undefined);
    if (frame.type === "message.created") {
      // A chat the app has not watched yet (someone just wrote to me first): start it here, so its first message is not lost.
      if (!this.sequencer.isWatching(frame.data.chatId)) void this.sequencer.watch(frame.data.chatId, frame.data.seq - 1);
      this.sequencer.accept(frame.data);
    }
  }
}
