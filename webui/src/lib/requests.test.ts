import { describe, expect, test } from "vitest";
import type { Incoming } from "./protocol";
import {
  buildTree,
  languageOf,
  parseChanges,
  RequestError,
  Requester,
  treeMayHaveChanged,
} from "./requests";
import { sessionKey } from "./sessions";
import { FakeRelay, ManualClock } from "./testkit";

function setup(timeoutMs = 1000) {
  const relay = new FakeRelay();
  const clock = new ManualClock();
  let n = 0;
  const requester = new Requester(relay, {
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    newId: () => `r${++n}`,
    timeoutMs,
  });
  return { relay, clock, requester };
}

async function outcome(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (v) => ({ ok: v }),
    (e: RequestError) => ({ code: e.code, message: e.message }),
  );
}

describe("Requester", () => {
  test("a request goes out with its id and its reply resolves it", async () => {
    const { relay, requester } = setup();
    const p = requester.request("w1", "diff", { path: "a.py" });
    expect(relay.sent).toEqual([
      { type: "request", workspaceId: "w1", requestId: "r1", op: "diff", args: { path: "a.py" } },
    ]);
    // Someone else's reply, and a reply to another id, change nothing.
    relay.deliver({ type: "reply", workspaceId: "w1", requestId: "zz", ok: true, result: 1 });
    expect(requester.inFlight).toBe(1);
    relay.deliver({
      type: "reply",
      workspaceId: "w1",
      requestId: "r1",
      ok: true,
      result: { x: 1 },
    });
    expect(await outcome(p)).toEqual({ ok: { x: 1 } });
    expect(requester.inFlight).toBe(0);
  });

  test("a request for a session's key names the session; main's and a workspace's do not", async () => {
    const { relay, requester } = setup();
    const p = requester.request(sessionKey("w1", "s_2"), "session_rename", { title: "Tests" });
    void requester.request(sessionKey("w1", "main"), "session_models");
    void requester.request("w1", "changes");
    expect(relay.sent).toEqual([
      {
        type: "request",
        workspaceId: "w1",
        sessionId: "s_2",
        requestId: "r1",
        op: "session_rename",
        args: { title: "Tests" },
      },
      { type: "request", workspaceId: "w1", requestId: "r2", op: "session_models", args: {} },
      { type: "request", workspaceId: "w1", requestId: "r3", op: "changes", args: {} },
    ]);
    relay.deliver({ type: "reply", workspaceId: "w1", requestId: "r1", ok: true, result: 1 });
    expect(await outcome(p)).toEqual({ ok: 1 });
  });

  test("a failed reply, an error by ref, a timeout and a lost connection all end it", async () => {
    const { relay, clock, requester } = setup();
    const failed = requester.request("w1", "file", { path: "x" });
    relay.deliver({
      type: "reply",
      workspaceId: "w1",
      requestId: "r1",
      ok: false,
      error: { code: "not_found", message: "no such file" },
    });
    expect(await outcome(failed)).toEqual({ code: "not_found", message: "no such file" });
    const refused = requester.request("w1", "changes");
    relay.deliver({ type: "error", code: "rate_limited", message: "slow down", ref: "r2" });
    expect(await outcome(refused)).toEqual({ code: "rate_limited", message: "slow down" });
    const slow = requester.request("w1", "changes");
    clock.advance(1000);
    expect(await outcome(slow)).toMatchObject({ code: "timeout" });
    const lost = requester.request("w1", "changes");
    relay.close();
    expect(await outcome(lost)).toMatchObject({ code: "connection_lost" });
    relay.connected = false;
    expect(await outcome(requester.request("w1", "changes"))).toMatchObject({
      code: "not_connected",
    });
    expect(clock.pending()).toEqual([]);
  });

  test("close stops listening", () => {
    const { relay, requester } = setup();
    expect(relay.listeners).toBe(2);
    requester.close();
    expect(relay.listeners).toBe(0);
  });
});

test("a tool result or a result refreshes; other frames and workspaces do not", () => {
  const cm = (workspaceId: string, data: unknown): Incoming => ({
    type: "claude_message",
    workspaceId,
    seq: 1,
    epoch: "e",
    data,
  });
  expect(treeMayHaveChanged(cm("w1", { type: "result", subtype: "success" }), "w1")).toBe(true);
  const toolResult = {
    type: "user",
    message: { content: [{ type: "tool_result", tool_use_id: "t", content: "ok" }] },
  };
  expect(treeMayHaveChanged(cm("w1", toolResult), "w1")).toBe(true);
  expect(treeMayHaveChanged(cm("w2", toolResult), "w1")).toBe(false);
  expect(treeMayHaveChanged(cm("w1", { type: "assistant", message: { content: [] } }), "w1")).toBe(
    false,
  );
  expect(treeMayHaveChanged({ type: "status", workspaceId: "w1", status: "running" }, "w1")).toBe(
    false,
  );
  expect(treeMayHaveChanged({ type: "status", workspaceId: "w1", status: "idle" }, "w1")).toBe(
    true,
  );
  expect(treeMayHaveChanged({ type: "status", workspaceId: "w2", status: "idle" }, "w1")).toBe(
    false,
  );
  expect(treeMayHaveChanged({ type: "messages_snapshot", workspaceId: "w1" }, "w1")).toBe(true);
});

test("changes from the VM are checked, not trusted", () => {
  const parsed = parseChanges({
    base: "main",
    branch: "ff/x",
    files: [
      { path: "a", status: "modified", added: 2, removed: 1, uncommitted: true },
      { path: "b", status: "exploded" },
      "junk",
      { status: "added" },
    ],
  });
  expect(parsed.files).toEqual([
    {
      path: "a",
      oldPath: undefined,
      status: "modified",
      added: 2,
      removed: 1,
      binary: false,
      uncommitted: true,
      unpushed: false,
    },
  ]);
  expect(() => parseChanges({ files: "no" })).toThrow(RequestError);
});

test("paths become a tree, directories first", () => {
  const tree = buildTree(["src/b.py", "README.md", "src/a/x.ts", "a.txt"]);
  expect(tree.map((n) => n.name)).toEqual(["src", "a.txt", "README.md"]);
  const src = tree[0];
  expect(src?.children?.map((n) => [n.name, n.path])).toEqual([
    ["a", "src/a"],
    ["b.py", "src/b.py"],
  ]);
  expect(src?.children?.[0]?.children?.[0]?.path).toBe("src/a/x.ts");
  expect(languageOf("src/app.PY")).toBe("py");
  expect(languageOf("Makefile")).toBeUndefined();
  expect(languageOf(".gitignore")).toBeUndefined();
});
