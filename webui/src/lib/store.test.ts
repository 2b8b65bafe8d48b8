import { beforeEach, describe, expect, test } from "vitest";
import { RelayConnection } from "./connection";
import { sessionKey } from "./sessions";
import { Store } from "./store";
import { FakeSocket, ManualClock } from "./testkit";

let clock: ManualClock;
let sockets: FakeSocket[];
let relay: RelayConnection;
let store: Store;
const last = () => sockets[sockets.length - 1]!;
const EPOCH = "e1";

beforeEach(() => {
  clock = new ManualClock();
  sockets = [];
  relay = new RelayConnection(
    "ws://x/v1/client",
    {
      createSocket: (url, protocols) => {
        const s = new FakeSocket(url, protocols);
        sockets.push(s);
        return s;
      },
      getToken: () => "t",
      refresh: async () => "t",
      onAuthFailed: () => {},
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
      random: () => 0,
    },
    { baseMs: 10, maxMs: 10 },
  );
  store = new Store(relay, { schedule: null, later: clock.setTimeout });
  relay.start();
  last().open();
});

function reconnect(): FakeSocket {
  last().drop(1006);
  clock.advance(10);
  last().open();
  return last();
}

describe("Store", () => {
  test("the list subscribes statusOnly and tracks live statuses", () => {
    store.watch(["a", "b"]);
    expect(last().sent).toEqual([
      { type: "subscribe", workspaceId: "a", statusOnly: true },
      { type: "subscribe", workspaceId: "b", statusOnly: true },
    ]);
    last().deliver({ type: "subscribed", workspaceId: "a", epoch: EPOCH, mode: "snapshot" });
    last().deliver({ type: "status", workspaceId: "a", status: "running" });
    last().deliver({ type: "status", workspaceId: "b", status: "offline" });
    expect(store.state.statuses).toEqual({ a: "running", b: "offline" });
    store.watch(["b"]);
    expect(last().sent.at(-1)).toEqual({ type: "unsubscribe", workspaceId: "a" });
  });

  test("status changes are reported with the previous status", () => {
    const seen: string[] = [];
    store.onStatusChange((id, s, prev) => seen.push(`${id}:${prev ?? "-"}->${s}`));
    store.watch(["a"]);
    last().deliver({ type: "status", workspaceId: "a", status: "running" });
    last().deliver({ type: "status", workspaceId: "a", status: "running" });
    last().deliver({ type: "status", workspaceId: "a", status: "waiting_for_input" });
    expect(seen).toEqual(["a:-->running", "a:running->waiting_for_input"]);
  });

  test("opening a watched workspace switches it to a full subscription and back", () => {
    store.watch(["a"]);
    store.open("a");
    expect(last().sent.slice(1)).toEqual([
      { type: "unsubscribe", workspaceId: "a" },
      { type: "subscribe", workspaceId: "a" },
    ]);
    store.close("a");
    expect(last().sent.slice(3)).toEqual([
      { type: "unsubscribe", workspaceId: "a" },
      { type: "subscribe", workspaceId: "a", statusOnly: true },
    ]);
  });

  test("a reconnect resubscribes with lastSeq and epoch and resends unsent messages with the same id", () => {
    store.open("a");
    last().deliver({ type: "subscribed", workspaceId: "a", epoch: EPOCH, mode: "snapshot" });
    last().deliver({
      type: "messages_snapshot",
      workspaceId: "a",
      seq: 4,
      epoch: EPOCH,
      requestId: "r",
      status: "idle",
      messages: [],
      pending: [],
    });
    last().deliver({ type: "status", workspaceId: "a", seq: 5, epoch: EPOCH, status: "running" });
    expect(store.state.statuses.a).toBe("running");
    last().drop(1006);
    const id = store.sendUserMessage("a", "while away");
    expect(store.state.conversations.a?.outbox[0]).toMatchObject({
      clientMessageId: id,
      state: "unsent",
    });
    clock.advance(10);
    last().open();
    expect(last().sent).toEqual([
      { type: "subscribe", workspaceId: "a", lastSeq: 5, epoch: EPOCH },
      { type: "user_message", workspaceId: "a", clientMessageId: id, text: "while away" },
    ]);
    expect(store.state.conversations.a?.outbox[0]?.state).toBe("sent");
    last().deliver({
      type: "user_message",
      workspaceId: "a",
      seq: 6,
      epoch: EPOCH,
      clientMessageId: id,
      userId: "u",
      text: "while away",
    });
    expect(store.state.conversations.a?.outbox).toEqual([]);
  });

  test("a message sent but not echoed before the socket dropped is resent once", () => {
    store.open("a");
    last().deliver({
      type: "messages_snapshot",
      workspaceId: "a",
      seq: 0,
      epoch: EPOCH,
      requestId: "r",
      status: "idle",
      messages: [],
      pending: [],
    });
    const id = store.sendUserMessage("a", "hello");
    expect(last().sent.at(-1)).toEqual({
      type: "user_message",
      workspaceId: "a",
      clientMessageId: id,
      text: "hello",
    });
    const s = reconnect();
    const resent = s.sent.filter((m) => (m as { type: string }).type === "user_message");
    expect(resent).toEqual([
      { type: "user_message", workspaceId: "a", clientMessageId: id, text: "hello" },
    ]);
  });

  test("a gap resubscribes from lastSeq; a new epoch resubscribes from scratch", () => {
    store.open("a");
    last().deliver({
      type: "messages_snapshot",
      workspaceId: "a",
      seq: 2,
      epoch: EPOCH,
      requestId: "r",
      status: "idle",
      messages: [],
      pending: [],
    });
    const before = last().sent.length;
    last().deliver({ type: "status", workspaceId: "a", seq: 9, epoch: EPOCH, status: "running" });
    expect(last().sent.slice(before)).toEqual([
      { type: "unsubscribe", workspaceId: "a" },
      { type: "subscribe", workspaceId: "a", lastSeq: 2, epoch: EPOCH },
    ]);
    expect(store.state.conversations.a?.resync).toBeNull();
    const mid = last().sent.length;
    last().deliver({ type: "status", workspaceId: "a", seq: 3, epoch: "e2", status: "running" });
    expect(last().sent.slice(mid)).toEqual([
      { type: "unsubscribe", workspaceId: "a" },
      { type: "subscribe", workspaceId: "a" },
    ]);
  });

  test("a workspace not opened does not build a conversation", () => {
    store.watch(["a"]);
    last().deliver({
      type: "claude_message",
      workspaceId: "a",
      seq: 1,
      epoch: EPOCH,
      data: { type: "result" },
    });
    expect(store.state.conversations.a).toBeUndefined();
  });

  test("answers, decisions and interrupts go out as protocol messages", () => {
    store.open("a");
    expect(store.answer("a", "q1", { "Which?": ["A", "B"] })).toBe(true);
    expect(store.decide("a", "p1", false, "not that file")).toBe(true);
    expect(store.decide("a", "p2", true)).toBe(true);
    expect(store.interrupt("a")).toBe(true);
    expect(last().sent.slice(1)).toEqual([
      {
        type: "question_response",
        workspaceId: "a",
        requestId: "q1",
        answers: { "Which?": ["A", "B"] },
      },
      {
        type: "permission_response",
        workspaceId: "a",
        requestId: "p1",
        allow: false,
        message: "not that file",
      },
      { type: "permission_response", workspaceId: "a", requestId: "p2", allow: true },
      { type: "interrupt", workspaceId: "a" },
    ]);
    last().drop(1006);
    expect(store.interrupt("a")).toBe(false);
  });

  test("the connection state is part of the store's state", () => {
    expect(store.state.conn).toBe("open");
    last().drop(1006);
    expect(store.state.conn).toBe("reconnecting");
  });

  test("a burst of changes reaches listeners as one notification", () => {
    const pending: (() => void)[] = [];
    const batched = new Store(relay, { schedule: (f) => pending.push(f) });
    let renders = 0;
    batched.subscribe(() => (renders += 1));
    batched.watch(["a", "b"]);
    for (const s of ["running", "idle", "running"])
      last().deliver({ type: "status", workspaceId: "a", status: s });
    last().deliver({ type: "status", workspaceId: "b", status: "offline" });
    expect(batched.state.statuses).toEqual({ a: "running", b: "offline" });
    expect(renders).toBe(0);
    expect(pending).toHaveLength(1);
    pending.shift()!();
    expect(renders).toBe(1);
    last().deliver({ type: "status", workspaceId: "a", status: "idle" });
    expect(pending).toHaveLength(1);
  });

  test("a workspace the relay does not know yet is subscribed again, with growing waits", () => {
    store.open("new");
    const n = last().sent.length;
    last().deliver({
      type: "error",
      workspaceId: "new",
      code: "not_found",
      message: "no such workspace",
    });
    expect(last().sent).toHaveLength(n);
    clock.advance(250);
    expect(last().sent.slice(n)).toEqual([{ type: "subscribe", workspaceId: "new" }]);
    last().deliver({
      type: "error",
      workspaceId: "new",
      code: "not_found",
      message: "no such workspace",
    });
    clock.advance(499);
    expect(last().sent).toHaveLength(n + 1);
    clock.advance(1);
    expect(last().sent).toHaveLength(n + 2);
    last().deliver({ type: "subscribed", workspaceId: "new", epoch: "e", mode: "snapshot" });
    store.forget("new");
    last().deliver({
      type: "error",
      workspaceId: "new",
      code: "not_found",
      message: "no such workspace",
    });
    clock.advance(60_000);
    expect(last().sent.at(-1)).toEqual({ type: "unsubscribe", workspaceId: "new" });
  });

  test("an offline workspace is probed until the VM is back", () => {
    store.open("a");
    last().deliver({
      type: "messages_snapshot",
      workspaceId: "a",
      seq: 3,
      epoch: EPOCH,
      requestId: "r",
      status: "idle",
      messages: [],
      pending: [],
    });
    last().deliver({ type: "status", workspaceId: "a", status: "offline" });
    expect(store.state.statuses.a).toBe("offline");
    const n = last().sent.length;
    clock.advance(2_000);
    expect(last().sent.slice(n)).toEqual([
      { type: "unsubscribe", workspaceId: "a" },
      { type: "subscribe", workspaceId: "a", lastSeq: 3, epoch: EPOCH },
    ]);
    // Still away: the relay says so again, and the next probe waits longer.
    last().deliver({ type: "subscribed", workspaceId: "a", epoch: EPOCH, mode: "replay" });
    last().deliver({ type: "status", workspaceId: "a", status: "offline" });
    clock.advance(3_999);
    expect(last().sent).toHaveLength(n + 2);
    clock.advance(1);
    expect(last().sent).toHaveLength(n + 4);
    // Back: the replay comes without `offline`.
    last().deliver({ type: "subscribed", workspaceId: "a", epoch: EPOCH, mode: "replay" });
    expect(store.state.statuses.a).toBe("idle");
    expect(store.state.conversations.a?.online).toBe(true);
    clock.advance(60_000);
    expect(last().sent).toHaveLength(n + 4);
  });

  test("a listed workspace whose VM is back shows its last status again", () => {
    store.watch(["a"]);
    last().deliver({ type: "status", workspaceId: "a", status: "running" });
    last().deliver({ type: "status", workspaceId: "a", status: "offline" });
    clock.advance(2_000);
    expect(last().sent.slice(-2)).toEqual([
      { type: "unsubscribe", workspaceId: "a" },
      { type: "subscribe", workspaceId: "a", statusOnly: true },
    ]);
    last().deliver({ type: "subscribed", workspaceId: "a", epoch: EPOCH, mode: "status" });
    last().deliver({ type: "status", workspaceId: "a", status: "offline" });
    expect(store.state.statuses.a).toBe("offline");
    clock.advance(4_000);
    last().deliver({ type: "subscribed", workspaceId: "a", epoch: EPOCH, mode: "status" });
    expect(store.state.statuses.a).toBe("running");
  });

  test("forget drops a deleted workspace", () => {
    store.open("a");
    store.forget("a");
    expect(last().sent.at(-1)).toEqual({ type: "unsubscribe", workspaceId: "a" });
    expect(store.state.conversations.a).toBeUndefined();
  });
});

describe("Store, several sessions", () => {
  const S2 = "s_2";
  const K2 = sessionKey("a", S2);
  const snapshot = (
    sessionId: string | undefined,
    seq: number,
    epoch: string,
    status = "idle",
  ) => ({
    type: "messages_snapshot",
    workspaceId: "a",
    ...(sessionId ? { sessionId } : {}),
    seq,
    epoch,
    requestId: "r",
    status,
    messages: [],
    pending: [],
  });
  const status = (sessionId: string | undefined, seq: number, epoch: string, s: string) => ({
    type: "status",
    workspaceId: "a",
    ...(sessionId ? { sessionId } : {}),
    seq,
    epoch,
    status: s,
  });

  function openBoth(): void {
    store.watch(["a"]);
    store.open("a", ["main", S2]);
    last().deliver(snapshot(undefined, 3, "em"));
    last().deliver(snapshot(S2, 1, "e2"));
  }

  test("each session is its own subscription and conversation; sessionId only for others", () => {
    openBoth();
    expect(last().sent).toEqual([
      { type: "subscribe", workspaceId: "a", statusOnly: true },
      { type: "unsubscribe", workspaceId: "a" },
      { type: "subscribe", workspaceId: "a" },
      { type: "subscribe", workspaceId: "a", sessionId: S2 },
    ]);
    last().deliver({
      type: "user_message",
      workspaceId: "a",
      sessionId: S2,
      seq: 2,
      epoch: "e2",
      clientMessageId: "c2",
      text: "in two",
    });
    last().deliver({
      type: "user_message",
      workspaceId: "a",
      seq: 4,
      epoch: "em",
      clientMessageId: "c1",
      text: "in main",
    });
    const texts = (k: string) =>
      store.state.conversations[k]?.items.map((i) => (i.kind === "user" ? i.text : i.kind));
    expect(texts("a")).toEqual(["in main"]);
    expect(texts(K2)).toEqual(["in two"]);
    expect(store.state.conversations.a?.lastSeq).toBe(4);
    expect(store.state.conversations[K2]?.lastSeq).toBe(2);
    expect(store.state.conversations[K2]?.sessionId).toBe(S2);
  });

  test("the list shows the most urgent session: waiting when only the second waits", () => {
    openBoth();
    expect(store.state.statuses.a).toBe("idle");
    last().deliver(status(S2, 2, "e2", "running"));
    expect(store.state.statuses.a).toBe("running");
    last().deliver(status(S2, 3, "e2", "waiting_for_input"));
    expect(store.state.statuses.a).toBe("waiting_for_input");
    expect(store.state.conversations.a?.status).toBe("idle");
    last().deliver(status(undefined, 4, "em", "running"));
    expect(store.state.statuses.a).toBe("waiting_for_input");
    last().deliver(status(S2, 4, "e2", "idle"));
    expect(store.state.statuses.a).toBe("running");
  });

  test("what the user does in a session names it", () => {
    openBoth();
    const n = last().sent.length;
    const id = store.sendUserMessage(K2, "hi two");
    store.answer(K2, "q", { Q: "A" });
    store.decide(K2, "p", true);
    store.interrupt(K2);
    store.interrupt("a");
    expect(last().sent.slice(n)).toEqual([
      {
        type: "user_message",
        workspaceId: "a",
        sessionId: S2,
        clientMessageId: id,
        text: "hi two",
      },
      {
        type: "question_response",
        workspaceId: "a",
        sessionId: S2,
        requestId: "q",
        answers: { Q: "A" },
      },
      { type: "permission_response", workspaceId: "a", sessionId: S2, requestId: "p", allow: true },
      { type: "interrupt", workspaceId: "a", sessionId: S2 },
      { type: "interrupt", workspaceId: "a" },
    ]);
    expect(store.state.conversations[K2]?.outbox.map((e) => e.text)).toEqual(["hi two"]);
    expect(store.state.conversations.a?.outbox).toEqual([]);
  });

  test("a relay error about a session's message finds that session by its ref", () => {
    openBoth();
    const id = store.sendUserMessage(K2, "too big");
    last().deliver({
      type: "error",
      workspaceId: "a",
      code: "bad_request",
      ref: id,
      message: "no",
    });
    expect(store.state.conversations[K2]?.outbox[0]).toMatchObject({
      state: "failed",
      error: "no",
    });
    expect(store.state.conversations.a?.notice).toBeUndefined();
  });

  test("a reconnect resumes every session from its own place and resends into it", () => {
    openBoth();
    last().drop(1006);
    const id = store.sendUserMessage(K2, "while away");
    clock.advance(10);
    last().open();
    expect(last().sent).toEqual([
      { type: "subscribe", workspaceId: "a", lastSeq: 3, epoch: "em" },
      { type: "subscribe", workspaceId: "a", sessionId: S2, lastSeq: 1, epoch: "e2" },
      {
        type: "user_message",
        workspaceId: "a",
        sessionId: S2,
        clientMessageId: id,
        text: "while away",
      },
    ]);
  });

  test("a gap in one session resubscribes that session alone", () => {
    openBoth();
    const n = last().sent.length;
    last().deliver(status(S2, 7, "e2", "running"));
    expect(last().sent.slice(n)).toEqual([
      { type: "unsubscribe", workspaceId: "a", sessionId: S2 },
      { type: "subscribe", workspaceId: "a", sessionId: S2, lastSeq: 1, epoch: "e2" },
    ]);
    expect(store.state.conversations.a?.resync).toBeNull();
  });

  test("a session the relay does not know yet is asked for again, alone", () => {
    store.open("a", ["main", S2]);
    last().deliver(snapshot(undefined, 0, "em"));
    const n = last().sent.length;
    last().deliver({
      type: "error",
      workspaceId: "a",
      sessionId: S2,
      code: "not_found",
      message: "x",
    });
    clock.advance(250);
    expect(last().sent.slice(n)).toEqual([{ type: "subscribe", workspaceId: "a", sessionId: S2 }]);
    expect(store.state.conversations.a?.notice).toBeUndefined();
  });

  test("offline sessions are probed each on its own", () => {
    openBoth();
    last().deliver({ type: "status", workspaceId: "a", sessionId: S2, status: "offline" });
    expect(store.state.statuses.a).toBe("offline");
    expect(store.state.conversations.a?.online).toBe(true);
    const n = last().sent.length;
    clock.advance(2_000);
    expect(last().sent.slice(n)).toEqual([
      { type: "unsubscribe", workspaceId: "a", sessionId: S2 },
      { type: "subscribe", workspaceId: "a", sessionId: S2, lastSeq: 1, epoch: "e2" },
    ]);
  });

  test("sessions no longer wanted are left, kept to resume; close leaves all of them", () => {
    openBoth();
    const n = last().sent.length;
    store.open("a", ["main"]);
    expect(last().sent.slice(n)).toEqual([
      { type: "unsubscribe", workspaceId: "a", sessionId: S2 },
    ]);
    // Nothing more about it reaches its conversation, which is kept.
    last().deliver(status(S2, 2, "e2", "running"));
    expect(store.state.conversations[K2]?.lastSeq).toBe(1);
    store.open("a", ["main", S2]);
    expect(last().sent.at(-1)).toEqual({
      type: "subscribe",
      workspaceId: "a",
      sessionId: S2,
      lastSeq: 1,
      epoch: "e2",
    });
    const m = last().sent.length;
    store.close("a");
    expect(last().sent.slice(m)).toEqual([
      { type: "unsubscribe", workspaceId: "a" },
      { type: "unsubscribe", workspaceId: "a", sessionId: S2 },
      { type: "subscribe", workspaceId: "a", statusOnly: true },
    ]);
    // statusOnly again: the relay's aggregate, whatever session it names.
    last().deliver({ ...status(S2, 9, "e2", "waiting_for_input") });
    expect(store.state.statuses.a).toBe("waiting_for_input");
    expect(store.state.conversations[K2]?.lastSeq).toBe(1);
  });

  test("forget drops every session of the workspace", () => {
    openBoth();
    const n = last().sent.length;
    store.forget("a");
    expect(last().sent.slice(n)).toEqual([
      { type: "unsubscribe", workspaceId: "a" },
      { type: "unsubscribe", workspaceId: "a", sessionId: S2 },
    ]);
    expect(store.state.conversations).toEqual({});
  });
});
