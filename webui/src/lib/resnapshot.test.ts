/**
 * A fresh snapshot in-band: the relay sends `subscribed` (mode `snapshot`) and
 * a `messages_snapshot` without being asked when this client fell behind its
 * log. The view must go from the old state to the new one without flicker (no
 * item repainted that did not change, nothing emptied in between), without
 * duplicates, and on with the live messages after it.
 */
import { describe, expect, test } from "vitest";
import { reduce } from "./conversation";
import { assistantBlocks, type Conversation, emptyConversation } from "./conversationModel";
import type { Incoming } from "./protocol";

const WS = "ws-1";
const EPOCH = "e1";

function claude(seq: number, data: Record<string, unknown>): Incoming {
  return { type: "claude_message", workspaceId: WS, seq, epoch: EPOCH, data };
}
function ev(seq: number, event: Record<string, unknown>): Incoming {
  return claude(seq, { type: "stream_event", event, parent_tool_use_id: null });
}
function assistant(seq: number, id: string, text: string): Incoming {
  return claude(seq, {
    type: "assistant",
    message: { id, role: "assistant", content: [{ type: "text", text }] },
  });
}
function echo(seq: number, id: string, text: string): Incoming {
  return {
    type: "user_message",
    workspaceId: WS,
    seq,
    epoch: EPOCH,
    clientMessageId: id,
    userId: "u1",
    text,
  };
}
function result(seq: number): Incoming {
  return claude(seq, { type: "result", subtype: "success", is_error: false, duration_ms: 5 });
}
/** A streamed reply: message_start, a text block, its deltas (seqs from `start`). */
function streaming(start: number, id: string, parts: string[]): Incoming[] {
  return [
    ev(start, { type: "message_start", message: { id, role: "assistant", content: [] } }),
    ev(start + 1, { type: "content_block_start", index: 0, content_block: { type: "text" } }),
    ...parts.map((p, i) =>
      ev(start + 2 + i, {
        type: "content_block_delta",
        index: 0,
        delta: { type: "text_delta", text: p },
      }),
    ),
  ];
}
function snapshot(seq: number, messages: Incoming[], status = "running"): Incoming {
  return {
    type: "messages_snapshot",
    workspaceId: WS,
    seq,
    epoch: EPOCH,
    requestId: "r1-2",
    status,
    messages,
    pending: [],
  };
}
const SUBSCRIBED_SNAPSHOT: Incoming = {
  type: "subscribed",
  workspaceId: WS,
  epoch: EPOCH,
  mode: "snapshot",
};
function run(state: Conversation, msgs: Incoming[]): Conversation {
  return msgs.reduce((s, m) => reduce(s, { type: "receive", message: m }), state);
}
function keys(c: Conversation): string[] {
  return c.items.map((i) => i.key);
}
function text(c: Conversation, key: string): string {
  const item = c.items[c.index[key] ?? -1];
  if (item?.kind !== "assistant") return "";
  return assistantBlocks(item)
    .map((b) => (b.kind === "text" ? b.text : ""))
    .join("");
}

/** The live view so far: a finished exchange, then a second reply mid-stream. */
function liveView(): Conversation {
  const first = run(emptyConversation(WS), [snapshot(0, [], "idle")]);
  return run(first, [
    echo(1, "c1", "hello"),
    ...streaming(2, "m1", ["Hel", "lo"]),
    assistant(6, "m1", "Hello"),
    result(7),
    echo(8, "c2", "more"),
    ...streaming(9, "m2", ["One", " two"]),
  ]);
}

/** What the VM's snapshot at seq 20 holds: compacted, with m2 still streaming further. */
function freshSnapshot(): Incoming {
  return snapshot(20, [
    echo(1, "c1", "hello"),
    assistant(6, "m1", "Hello"),
    result(7),
    echo(8, "c2", "more"),
    ...streaming(9, "m2", ["One", " two", " three", " four"]),
  ]);
}

describe("a fresh snapshot in-band", () => {
  test("subscribed (mode snapshot) changes nothing: the view stays until the snapshot", () => {
    const before = liveView();
    const waiting = run(before, [SUBSCRIBED_SNAPSHOT]);
    expect(waiting).toBe(before);
    expect(waiting.loaded).toBe(true);
  });

  test("the snapshot replaces the view: same items, same keys, one each, and more text", () => {
    const before = liveView();
    const after = run(before, [SUBSCRIBED_SNAPSHOT, freshSnapshot()]);
    expect(keys(after)).toEqual(keys(before));
    expect(new Set(keys(after)).size).toBe(after.items.length);
    expect(text(after, "msg:m2")).toBe("One two three four");
    expect(after.lastSeq).toBe(20);
    expect(after.outbox).toEqual([]);
  });

  test("items that show the same keep their objects; only the changed one is new", () => {
    const before = liveView();
    const after = run(before, [SUBSCRIBED_SNAPSHOT, freshSnapshot()]);
    for (const key of ["user:c1", "msg:m1", "seq:7", "user:c2"]) {
      expect(after.items[after.index[key]!]).toBe(before.items[before.index[key]!]);
    }
    expect(after.items[after.index["msg:m2"]!]).not.toBe(before.items[before.index["msg:m2"]!]);
  });

  test("a snapshot that changes nothing keeps the very same items", () => {
    const before = liveView();
    const same = snapshot(before.lastSeq, [
      echo(1, "c1", "hello"),
      ...streaming(2, "m1", ["Hel", "lo"]),
      assistant(6, "m1", "Hello"),
      result(7),
      echo(8, "c2", "more"),
      ...streaming(9, "m2", ["One", " two"]),
    ]);
    const after = run(before, [SUBSCRIBED_SNAPSHOT, same]);
    expect(after.items).toBe(before.items);
  });

  test("live messages after the snapshot continue it; those it covered are not applied twice", () => {
    const before = liveView();
    const after = run(before, [
      SUBSCRIBED_SNAPSHOT,
      freshSnapshot(),
      // A frame the snapshot covers (seq 19), then the next ones.
      ev(19, { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "X" } }),
      ev(21, {
        type: "content_block_delta",
        index: 0,
        delta: { type: "text_delta", text: " five" },
      }),
      assistant(22, "m2", "One two three four five"),
      result(23),
    ]);
    expect(text(after, "msg:m2")).toBe("One two three four five");
    expect(keys(after)).toEqual([...keys(before), "seq:23"]);
    expect(after.resync).toBeNull();
  });

  test("a finished message the snapshot gives whole is complete, not shown as streaming", () => {
    const after = run(emptyConversation(WS), [freshSnapshot()]);
    const m1 = after.items[after.index["msg:m1"]!];
    const m2 = after.items[after.index["msg:m2"]!];
    expect(m1?.kind === "assistant" && m1.complete).toBe(true);
    expect(m2?.kind === "assistant" && m2.complete).toBe(false); // its deltas go on
  });

  test("the user's unsent message stays in the outbox across the snapshot", () => {
    const queued = reduce(liveView(), { type: "queue", clientMessageId: "c3", text: "wait" });
    const after = run(queued, [SUBSCRIBED_SNAPSHOT, freshSnapshot()]);
    expect(after.outbox.map((e) => e.clientMessageId)).toEqual(["c3"]);
  });
});
