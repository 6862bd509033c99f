import { describe, expect, it, vi } from "vitest";
import { ChatSequencer } from "../src/sequencer.js";
import type { Message } from "../src/types.js";
import { message } from "./fakes.js";

const CHAT = "c".repeat(24);

/** A chat whose server holds seq 1..`count`, answering afterSeq pages of `pageSize`. */
function server(count: number, pageSize = 3) {
  const calls: number[] = [];
  const fetchAfter = async (_chatId: string, afterSeq: number) => {
    calls.push(afterSeq);
    await new Promise((resolve) => setTimeout(resolve, 1));
    const items = Array.from({ length: Math.max(0, Math.min(pageSize, count - afterSeq)) }, (_, i) =>
      message(CHAT, afterSeq + i + 1),
    );
    const last = items.at(-1)?.seq ?? afterSeq;
    return { items, nextCursor: last < count ? `after-${last}` : null };
  };
  return { fetchAfter, calls, setCount: (n: number) => (count = n) };
}

function delivered() {
  const seqs: number[] = [];
  return { seqs, deliver: (m: Message) => seqs.push(m.seq) };
}

describe("ChatSequencer", () => {
  it("catches up from afterSeq, page by page", async () => {
    const api = server(7);
    const out = delivered();
    const sequencer = new ChatSequencer(api.fetchAfter, out.deliver);
    await sequencer.watch(CHAT, 2);
    expect(out.seqs).toEqual([3, 4, 5, 6, 7]);
    expect(api.calls).toEqual([2, 5]);
  });

  it("holds an early frame and fetches the gap before it", async () => {
    const api = server(3);
    const out = delivered();
    const sequencer = new ChatSequencer(api.fetchAfter, out.deliver);
    await sequencer.watch(CHAT, 3);
    api.setCount(6);
    sequencer.accept(message(CHAT, 6));
    expect(out.seqs).toEqual([]);
    // The early frame alone starts the fetch of 4..5.
    await vi.waitFor(() => expect(out.seqs).toEqual([4, 5, 6]));
    expect(api.calls.slice(0, 2)).toEqual([3, 3]);
  });

  it("drops repeats: frames and pages that overlap deliver each seq once, in order", async () => {
    const api = server(10, 4);
    const out = delivered();
    const sequencer = new ChatSequencer(api.fetchAfter, out.deliver);
    const watching = sequencer.watch(CHAT, 0);
    for (const seq of [2, 1, 1, 5, 3, 10, 2, 9]) sequencer.accept(message(CHAT, seq));
    await watching;
    await sequencer.catchUp(CHAT);
    const fetches = api.calls.length;
    for (const seq of [4, 10, 7]) sequencer.accept(message(CHAT, seq));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(out.seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // A repeat is dropped on arrival: it is not held as an early frame that sends the client fetching.
    expect(api.calls.length).toBe(fetches);
  });

  it("ignores chats it does not watch", () => {
    const out = delivered();
    const sequencer = new ChatSequencer(server(1).fetchAfter, out.deliver);
    sequencer.accept(message(CHAT, 1));
    expect(out.seqs).toEqual([]);
  });

  it("a failed catch-up is reported and retried by the next frame", async () => {
    let fail = true;
    const api = server(4);
    const errors: unknown[] = [];
    const out = delivered();
    const sequencer = new ChatSequencer(
      (chatId, afterSeq) => (fail ? Promise.reject(new Error("offline")) : api.fetchAfter(chatId, afterSeq)),
      out.deliver,
      (_chatId, error) => errors.push(error),
    );
    await sequencer.watch(CHAT, 0);
    expect(errors).toHaveLength(1);
    fail = false;
    sequencer.accept(message(CHAT, 4));
    await sequencer.catchUp(CHAT);
    expect(out.seqs).toEqual([1, 2, 3, 4]);
  });
});
