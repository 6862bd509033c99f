import { Hono, type MiddlewareHandler } from "hono";
import { errorBody } from "../../lib/envelope";
import type { AppEnv } from "../../lib/types";
import { addressBudget } from "../../middlewares/rate-limit";
import appScript from "./app.bundle.js";

/**
 * /app: a small chat page built on the client SDK (client/app, bundled by scripts/build-app.ts
 * into app.bundle.js), served with its script and stylesheet by the Worker itself: no CDN. It is
 * on where APP_PAGE is "on" (local and dev); anywhere else /app answers 404 like any unknown path,
 * so production shows no page unless someone turns it on.
 */
const ASSET_CACHE = "no-cache";

const page = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>credit-chat</title>
  <link rel="stylesheet" href="/app/app.css">
</head>
<body>
  <p id="error" role="alert"></p>
  <section id="auth">
    <h1>credit-chat</h1>
    <form id="login-form">
      <label>Email <input name="email" type="email" autocomplete="username" required></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" minlength="8" required></label>
      <label>Display name (sign up) <input name="displayName" maxlength="64"></label>
      <button type="submit" name="mode" value="login">Sign in</button>
      <button type="submit" name="mode" value="register">Sign up</button>
    </form>
  </section>
  <main id="main" hidden>
    <header>
      <strong id="me"></strong>
      <span>Balance: <b id="balance" data-testid="balance"></b> credits</span>
      <span class="connection">realtime: <span id="connection">closed</span></span>
      <span id="notice" role="status"></span>
      <button id="logout" type="button">Sign out</button>
    </header>
    <aside>
      <form id="new-chat-form">
        <input name="who" placeholder="Email or name to chat with" required>
        <button type="submit">Chat</button>
      </form>
      <ul id="chats"></ul>
    </aside>
    <section id="chat" hidden>
      <h2 id="chat-title"></h2>
      <ol id="messages"></ol>
      <form id="message-form">
        <input name="content" placeholder="Message" maxlength="4000" autocomplete="off" required>
        <button type="submit">Send</button>
      </form>
      <form id="credits-form">
        <input name="amount" type="number" min="1" step="1" placeholder="Credits" required>
        <input name="note" placeholder="Note (optional)" maxlength="280">
        <button id="send-credits" type="submit">Send credits</button>
      </form>
      <p id="receipt" data-testid="receipt"></p>
    </section>
  </main>
  <script src="/app/app.js"></script>
</body>
</html>`;

const css = `*{box-sizing:border-box}body{margin:0;font:15px/1.4 system-ui,sans-serif;color:#1d2330;background:#f4f5f8}
#auth{max-width:360px;margin:10vh auto;padding:24px;background:#fff;border-radius:12px;box-shadow:0 2px 12px #0001}
#auth label{display:block;margin:8px 0}#auth input{width:100%;padding:8px}#auth button{margin:8px 8px 0 0;padding:8px 14px}
#error{color:#b00020;margin:0;padding:4px 16px;min-height:1.4em}
main{display:grid;grid-template-columns:280px 1fr;grid-template-rows:auto 1fr;height:calc(100vh - 2em)}
header{grid-column:1/3;display:flex;gap:18px;align-items:center;padding:10px 16px;background:#1d2330;color:#fff}
header #logout{margin-left:auto}.connection{opacity:.7}#notice{color:#9fe3b4}
aside{border-right:1px solid #dde;background:#fff;overflow:auto}aside form{display:flex;gap:6px;padding:10px}aside input{flex:1;padding:6px}
#chats{list-style:none;margin:0;padding:0}.chat{display:flex;justify-content:space-between;padding:10px 14px;cursor:pointer;border-bottom:1px solid #eef}
.chat.open{background:#e8eefc}.unread{background:#3461d1;color:#fff;border-radius:10px;padding:0 8px;font-size:12px}
#chat{display:flex;flex-direction:column;min-height:0;padding:0 16px}#chat h2{margin:10px 0}
#messages{flex:1;overflow:auto;list-style:none;margin:0;padding:0}#messages li{margin:4px 0;padding:6px 10px;border-radius:10px;max-width:70%;width:fit-content;background:#fff}
#messages li.mine{margin-left:auto;background:#d7e3ff}#messages li.pending{opacity:.5}#messages li.credit_transfer{background:#d9f5e1;font-weight:600}
#chat form{display:flex;gap:6px;margin:6px 0}#chat form input{padding:8px}#message-form input{flex:1}#receipt{color:#276738;min-height:1.4em}`;

/** The page may load only its own script and stylesheet, call only this origin (its socket included), and not be framed. */
export function appContentSecurityPolicy(requestUrl: string): string {
  const origin = new URL(requestUrl);
  const socketOrigin = `${origin.protocol === "https:" ? "wss:" : "ws:"}//${origin.host}`;
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    `connect-src 'self' ${socketOrigin}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

/** On where APP_PAGE is "on"; elsewhere the same 404 envelope as any unknown route. */
const pageSwitch: MiddlewareHandler<AppEnv> = async (c, next) => {
  if ((c.env as { APP_PAGE?: string }).APP_PAGE === "on") return next();
  return c.json(errorBody(404, "not_found", [`No route for ${c.req.method} ${c.req.path}`]), 404);
};

export const appRouter = new Hono<AppEnv>()
  .use("/app", pageSwitch, addressBudget)
  .use("/app/*", pageSwitch, addressBudget)
  .get("/app", (c) => c.html(page, 200, { "Content-Security-Policy": appContentSecurityPolicy(c.req.url) }))
  .get("/app/app.js", (c) =>
    c.body(appScript, 200, { "Content-Type": "application/javascript; charset=utf-8", "Cache-Control": ASSET_CACHE }),
  )
  .get("/app/app.css", (c) => c.body(css, 200, { "Content-Type": "text/css; charset=utf-8", "Cache-Control": ASSET_CACHE }));
