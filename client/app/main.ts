import { ApiError, type Chat, CreditChatClient, localStorageTokenStore, type Message, type User } from "../src/index.js";
import { byId, formValue, h } from "./dom.js";

/**
 * The /app chat page: sign up or in, my chats with unread counts, a chat with live messages,
 * sending messages and credits, the balance as realtime frames change it. Everything goes
 * through the SDK (client/src), so the page is also its first user.
 */
const client = new CreditChatClient({
  baseUrl: location.origin,
  tokens: localStorageTokenStore(),
  // A page notices a dead link sooner than a server client needs to.
  realtime: { pingIntervalMs: 10_000, pongTimeoutMs: 5_000, backoff: { baseMs: 300, maxMs: 5_000 } },
});

type Pending = { clientMessageId: string; content: string };
const state = {
  me: null as User | null,
  chats: new Map<string, Chat>(),
  /** Per chat: its messages by seq (the SDK delivers each once; history pages may overlap it). */
  messages: new Map<string, Map<number, Message>>(),
  pending: new Map<string, Pending[]>(),
  names: new Map<string, string>(),
  open: null as string | null,
};

function showError(error: unknown): void {
  const text = error instanceof ApiError ? error.errors.slice(1).join("; ") || error.errors[0] || error.code : String(error);
  byId("error").textContent = text;
}

function otherMember(chat: Chat): string | undefined {
  return chat.members.find((member) => member.userId !== state.me?.id)?.userId;
}

async function nameOf(userId: string): Promise<string> {
  const known = state.names.get(userId);
  if (known) return known;
  const user = await client.user(userId);
  state.names.set(userId, user.displayName);
  return user.displayName;
}

async function titleOf(chat: Chat): Promise<string> {
  if (chat.title) return chat.title;
  const other = otherMember(chat);
  return other ? nameOf(other) : "(just me)";
}

// ---------------------------------------------------------------- rendering

async function renderChats(): Promise<void> {
  const chats = [...state.chats.values()].sort((a, b) =>
    (b.lastMessage?.createdAt ?? b.createdAt).localeCompare(a.lastMessage?.createdAt ?? a.createdAt),
  );
  const items = await Promise.all(
    chats.map(async (chat) =>
      h(
        "li",
        { "data-chat-id": chat.id, class: chat.id === state.open ? "chat open" : "chat", onclick: () => void openChat(chat.id) },
        h("span", { class: "title" }, await titleOf(chat)),
        chat.unreadCount > 0 ? h("span", { class: "unread", "data-testid": "unread" }, String(chat.unreadCount)) : "",
      ),
    ),
  );
  byId("chats").replaceChildren(...items);
}

function messageItem(message: Message): HTMLLIElement {
  const mine = message.senderId === state.me?.id;
  const body =
    message.type === "credit_transfer" && message.creditTransfer
      ? `💸 ${message.creditTransfer.amount} credits${message.creditTransfer.note ? ` · ${message.creditTransfer.note}` : ""}`
      : (message.content ?? "(deleted)");
  return h(
    "li",
    { class: `${mine ? "mine" : "theirs"} ${message.type}`, "data-seq": message.seq, "data-type": message.type },
    body,
  );
}

function renderMessages(): void {
  const chatId = state.open;
  if (!chatId) return;
  const list = byId("messages");
  const confirmed = [...(state.messages.get(chatId)?.values() ?? [])].sort((a, b) => a.seq - b.seq).map(messageItem);
  const pending = (state.pending.get(chatId) ?? []).map((p) => h("li", { class: "mine pending" }, p.content));
  list.replaceChildren(...confirmed, ...pending);
  list.scrollTop = list.scrollHeight;
}

function remember(message: Message): void {
  let byseq = state.messages.get(message.chatId);
  if (!byseq) state.messages.set(message.chatId, (byseq = new Map()));
  byseq.set(message.seq, message);
  const pending = state.pending.get(message.chatId);
  if (pending && message.clientMessageId)
    state.pending.set(
      message.chatId,
      pending.filter((p) => p.clientMessageId !== message.clientMessageId),
    );
}

function setBalance(balance: number): void {
  byId("balance").textContent = String(balance);
}

// ---------------------------------------------------------------- actions

async function openChat(chatId: string): Promise<void> {
  state.open = chatId;
  const chat = state.chats.get(chatId);
  byId("chat").hidden = false;
  byId("chat-title").textContent = chat ? await titleOf(chat) : "";
  byId<HTMLButtonElement>("send-credits").disabled = !chat || chat.type !== "direct";
  byId("receipt").textContent = "";
  // The latest page of history; newer messages arrive as `message` events and overlap it harmlessly (by seq).
  let count = 0;
  for await (const message of client.messages(chatId)) {
    remember(message);
    if (++count >= 50) break;
  }
  renderMessages();
  await markRead(chatId);
  await renderChats();
}

async function markRead(chatId: string): Promise<void> {
  const chat = state.chats.get(chatId);
  if (!chat || chat.lastSeq === 0 || chat.unreadCount === 0) return;
  const marker = await client.markRead(chatId, chat.lastSeq);
  chat.unreadCount = marker.unreadCount;
}

async function sendMessage(form: FormData): Promise<void> {
  const chatId = state.open;
  const content = formValue(form, "content");
  if (!chatId || !content) return;
  // Shown at once as pending; the SDK's clientMessageId ties the confirmed message back to it.
  const pending = { clientMessageId: crypto.randomUUID(), content };
  state.pending.set(chatId, [...(state.pending.get(chatId) ?? []), pending]);
  renderMessages();
  const message = await client.sendMessage(chatId, content, { clientMessageId: pending.clientMessageId });
  remember(message);
  renderMessages();
}

async function sendCredits(form: FormData): Promise<void> {
  const chat = state.open ? state.chats.get(state.open) : undefined;
  const recipientId = chat && otherMember(chat);
  const amount = Number(formValue(form, "amount"));
  if (!recipientId || !Number.isInteger(amount) || amount < 1) return showError("Choose a whole number of credits");
  const note = formValue(form, "note");
  const receipt = byId("receipt");
  receipt.textContent = `Sending ${amount} credits…`;
  const sent = await client.sendCredits(recipientId, amount, note ? { note } : {});
  receipt.textContent = `Receipt: ${sent.transfer.transferredAmount} credits to ${await nameOf(recipientId)} · ${sent.status} · transfer ${sent.transfer.transferId} · your balance ${sent.transfer.senderBalance}`;
  receipt.dataset.status = sent.status;
}

async function startChat(form: FormData): Promise<void> {
  const who = formValue(form, "who");
  if (!who) return;
  const found = await client.users(who, 1).next();
  if (found.done) return showError(`Nobody called ${who}`);
  const chat = await client.openDirectChat(found.value.id);
  await addChat(chat);
  await openChat(chat.id);
}

/** A chat joins the list and is watched from its current last seq (what came before is history, fetched on open). */
async function addChat(chat: Chat): Promise<void> {
  if (!state.chats.has(chat.id)) await client.watch(chat.id, chat.lastSeq);
  state.chats.set(chat.id, chat);
  await renderChats();
}

async function onMessage(message: Message): Promise<void> {
  remember(message);
  let chat = state.chats.get(message.chatId);
  const known = chat !== undefined;
  if (!chat) {
    // Someone wrote to me in a chat this page did not list yet (the SDK is already watching it).
    chat = await client.chat(message.chatId);
    state.chats.set(chat.id, chat);
  }
  chat.lastMessage = message;
  chat.lastSeq = Math.max(chat.lastSeq, message.seq);
  if (state.open === message.chatId) {
    // Shown now, so read now: the open chat never counts as unread.
    renderMessages();
    chat.unreadCount = 0;
    if (message.senderId !== state.me?.id) await client.markRead(message.chatId, message.seq);
  } else if (known && message.senderId !== state.me?.id) chat.unreadCount += 1;
  await renderChats();
}

// ---------------------------------------------------------------- session

async function authenticate(form: FormData, mode: "login" | "register"): Promise<void> {
  const email = formValue(form, "email");
  const password = formValue(form, "password");
  if (mode === "register")
    await client.register({ email, password, displayName: formValue(form, "displayName") || email.split("@")[0] || email });
  else await client.login({ email, password });
  await enter();
}

/** Signed in: load who I am, my balance and chats, then go live. */
async function enter(): Promise<void> {
  state.me = await client.me();
  byId("auth").hidden = true;
  byId("main").hidden = false;
  byId("me").textContent = state.me.displayName;
  setBalance((await client.wallet()).balance);
  let count = 0;
  for await (const chat of client.chats()) {
    await addChat(chat);
    if (++count >= 100) break;
  }
  await client.connect();
}

function leave(reason: string): void {
  state.me = null;
  state.open = null;
  state.chats.clear();
  state.messages.clear();
  byId("main").hidden = true;
  byId("auth").hidden = false;
  byId("error").textContent = reason === "logout" ? "" : `Signed out (${reason})`;
}

/** Handlers run one after another, so a burst of frames updates the page in order. */
let queue = Promise.resolve();
function serial(task: () => Promise<void> | void): void {
  queue = queue.then(task).catch(showError);
}

function wire(): void {
  client.on("message", (message) => serial(() => onMessage(message)));
  client.on("wallet.updated", (wallet) => setBalance(wallet.balance));
  client.on("transfer.received", (transfer) =>
    serial(async () => {
      byId("notice").textContent = `${await nameOf(transfer.senderId)} sent you ${transfer.transferredAmount} credits`;
    }),
  );
  client.on("state", (connection) => {
    byId("connection").textContent = connection;
    // The balance may have moved while the socket was down; messages are caught up by the SDK.
    if (connection === "open") serial(async () => setBalance((await client.wallet()).balance));
  });
  client.on("signedOut", ({ reason }) => leave(reason));
  client.on("suspended", () => showError("Your account is suspended: you can read but not send."));
  client.on("replaced", () => showError("Too many open windows: this one stopped updating. Reload to resume."));
  window.addEventListener("online", () => client.reconnectNow());
  for (const [id, action] of [
    ["login-form", (data: FormData, submitter: string) => authenticate(data, submitter === "register" ? "register" : "login")],
    ["new-chat-form", (data: FormData) => startChat(data)],
    ["message-form", (data: FormData) => sendMessage(data)],
    ["credits-form", (data: FormData) => sendCredits(data)],
  ] as const) {
    const form = byId<HTMLFormElement>(id);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      // Read the fields now: the action may wait behind earlier ones, and the form is ready for the next entry at once.
      const data = new FormData(form);
      const submitter = (event as SubmitEvent).submitter?.getAttribute("value") ?? "";
      if (id !== "login-form") form.reset();
      byId("error").textContent = "";
      serial(() => action(data, submitter));
    });
  }
  byId("logout").addEventListener("click", () => serial(() => client.logout()));
}

wire();
if (client.signedIn) serial(enter);
