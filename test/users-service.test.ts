import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../src/db/client";
import { newId } from "../src/lib/ids";
import { assertActiveUser, assertCanSendTo, blockUser, hasBlocked, isBlockedEitherWay, unblockUser } from "../src/services/users";
import { seedUser } from "./support/users";

const db = createDb(env.DB);

/** The ApiError code a promise rejects with. */
async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return (error as { code: string }).code;
  }
  return "resolved";
}

describe("assertCanSendTo / assertActiveUser (called by chats, messages and transfers)", () => {
  it("returns the recipient row when the pair may talk", async () => {
    const [a, b] = [await seedUser(), await seedUser()];
    const recipient = await assertCanSendTo(db, a.id, b.id);
    expect(recipient.id).toBe(b.id);
    expect((await assertActiveUser(db, a.id)).id).toBe(a.id);
  });

  it("refuses a blocked sender, one way only, until unblocked", async () => {
    const [a, b] = [await seedUser(), await seedUser()];
    await blockUser(env, db, a.id, b.id);
    expect(await codeOf(assertCanSendTo(db, b.id, a.id))).toBe("recipient_blocked");
    await assertCanSendTo(db, a.id, b.id);
    expect(await hasBlocked(db, a.id, b.id)).toBe(true);
    expect(await hasBlocked(db, b.id, a.id)).toBe(false);
    expect(await isBlockedEitherWay(db, a.id, b.id)).toBe(true);
    expect(await isBlockedEitherWay(db, b.id, a.id)).toBe(true);

    await blockUser(env, db, b.id, a.id);
    expect(await codeOf(assertCanSendTo(db, a.id, b.id))).toBe("recipient_blocked");

    await unblockUser(env, db, a.id, b.id);
    await unblockUser(env, db, b.id, a.id);
    await assertCanSendTo(db, b.id, a.id);
    expect(await isBlockedEitherWay(db, a.id, b.id)).toBe(false);
  });

  it("checks in order: sender suspended, then recipient exists, then block", async () => {
    const suspended = await seedUser({ status: "suspended" });
    const active = await seedUser();
    const missing = newId();
    expect(await codeOf(assertCanSendTo(db, suspended.id, missing))).toBe("account_suspended");
    expect(await codeOf(assertCanSendTo(db, active.id, missing))).toBe("user_not_found");
    await blockUser(env, db, suspended.id, active.id);
    expect(await codeOf(assertCanSendTo(db, active.id, suspended.id))).toBe("recipient_blocked");
    expect(await codeOf(assertActiveUser(db, suspended.id))).toBe("account_suspended");
    // A suspended recipient can still receive: suspension limits what its holder sends.
    await unblockUser(env, db, suspended.id, active.id);
    expect((await assertCanSendTo(db, active.id, suspended.id)).id).toBe(suspended.id);
  });

  it("a token whose user row is gone cannot send", async () => {
    const active = await seedUser();
    expect(await codeOf(assertActiveUser(db, newId()))).toBe("invalid_token");
    expect(await codeOf(assertCanSendTo(db, newId(), active.id))).toBe("invalid_token");
  });
});
