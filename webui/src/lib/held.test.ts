import { describe, expect, it } from "vitest";
import { reduce } from "./conversation";
import { type Conversation, emptyConversation } from "./conversationModel";
import { canRelease, heldKey, isBusy, loadHeld, MAX_HELD_MESSAGES, saveHeld } from "./held";
import type { Incoming } from "./protocol";

let seq = 0;
function recv(c: Conversation, m: Record<string, unknown>): Conversation {
  seq += 1;
  return reduce(c, {
    type: "receive",
    message: { workspaceId: "w", epoch: "e", seq, ...m } as Incoming,
  });
}
function loaded(): Conversation {
  seq = 0;
  return reduce(emptyConversation("w"), {
    type: "receive",
    message: {
      type: "messages_snapshot",
      workspaceId: "w",
      seq: 0,
      epoch: "e",
      status: "idle",
      messages: [],
      pending: [],
    },
  });
}
const echo = (cid: string) => ({
  type: "user_message",
  clientMessageId: cid,
  userId: "u",
  text: "hi",
});
const status = (s: string) => ({ type: "status", status: s });
const result = { type: "claude_message", data: { type: "result", subtype: "success" } };

describe("held messages", () => {
  it("wait for the turn of the last released message to end with its result", () => {
    let c = loaded();
    expect(canRelease(c, null)).toBe(true);
    c = reduce(c, { type: "queue", clientMessageId: "c1", text: "hi" });
    expect(canRelease(c, "c1")).toBe(false); // unechoed
    c = recv(c, echo("c1"));
    expect(canRelease(c, "c1")).toBe(false); // echoed, its turn not begun: still idle
    c = recv(c, status("running"));
    expect(canRelease(c, "c1")).toBe(false);
    c = recv(c, status("waiting_for_input"));
    expect(canRelease(c, "c1")).toBe(false);
    c = recv(c, result);
    expect(canRelease(c, "c1")).toBe(false); // result, but the status not back to idle
    c = recv(c, status("idle"));
    expect(canRelease(c, "c1")).toBe(true);
  });

  it("never while the VM is offline, and after an engine error once echoed", () => {
    let c = recv(loaded(), echo("c1"));
    c = recv(c, status("error"));
    expect(canRelease(c, "c1")).toBe(true);
    c = recv(c, status("offline"));
    expect(canRelease(c, null)).toBe(false);
    expect(canRelease(undefined, null)).toBe(false);
  });

  it("counts running and waiting for input as busy", () => {
    expect(isBusy("running")).toBe(true);
    expect(isBusy("waiting_for_input")).toBe(true);
    expect(isBusy("idle")).toBe(false);
    expect(isBusy(undefined)).toBe(false);
  });

  it("keep what is valid, at most the limit, and remove the key when empty", () => {
    const m = new Map<string, string>();
    const s = {
      getItem: (k: string) => m.get(k) ?? null,
      setItem: (k: string, v: string) => void m.set(k, v),
      removeItem: (k: string) => void m.delete(k),
    };
    saveHeld(s, "w", [{ id: "a", text: "one" }]);
    expect(loadHeld(s, "w")).toEqual([{ id: "a", text: "one" }]);
    saveHeld(s, "w", []);
    expect(m.has(heldKey("w"))).toBe(false);
    m.set(
      heldKey("w"),
      JSON.stringify([{ id: 1 }, { id: "b", text: " " }, { id: "c", text: "ok" }]),
    );
    expect(loadHeld(s, "w")).toEqual([{ id: "c", text: "ok" }]);
    m.set(heldKey("w"), "{not json");
    expect(loadHeld(s, "w")).toEqual([]);
    const many = Array.from({ length: 30 }, (_, i) => ({ id: `x${i}`, text: `m${i}` }));
    m.set(heldKey("w"), JSON.stringify(many));
    expect(loadHeld(s, "w")).toHaveLength(MAX_HELD_MESSAGES);
  });
});
