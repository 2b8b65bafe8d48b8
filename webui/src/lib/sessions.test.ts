import { describe, expect, test } from "vitest";
import { reduce } from "./conversation";
import { emptyConversation } from "./conversationModel";
import type { Incoming, Outgoing } from "./protocol";
import {
  aggregateStatus,
  createBlock,
  isSessionId,
  MAX_OPEN_SESSIONS,
  ONLY_MAIN,
  parseMaxSessions,
  parseSessionKey,
  parseSessionList,
  routeOf,
  type SessionInfo,
  sessionKey,
  sessionOf,
  sessionPath,
  sessionsToSubscribe,
  tabsOf,
  waitingSession,
  withSession,
} from "./sessions";

const S2 = `s_${"a".repeat(32)}`;
const S3 = `s_${"b".repeat(32)}`;

function listLine(sessions: unknown[]): Record<string, unknown> {
  return { type: "system", subtype: "vmagent_sessions", sessions };
}

function info(sessionId: string, title = "", closed = false): SessionInfo {
  return { sessionId, title, createdAt: "2026-12-01T10:00:00Z", closed };
}

describe("parseSessionList", () => {
  test("reads the whole list, oldest first, main first", () => {
    expect(
      parseSessionList(
        listLine([
          info("main"),
          info(S2, "Refactor", false),
          { sessionId: S3, title: "", createdAt: "x", closed: true },
        ]),
      ),
    ).toEqual([info("main"), info(S2, "Refactor"), { ...info(S3, "", true), createdAt: "x" }]);
  });

  test("is null for any other line", () => {
    expect(parseSessionList({ type: "system", subtype: "init" })).toBeNull();
    expect(parseSessionList({ type: "assistant", sessions: [] })).toBeNull();
    expect(parseSessionList({ type: "system", subtype: "vmagent_sessions" })).toBeNull();
  });

  test("drops bad and repeated ids, keeps main first and never closed", () => {
    const got = parseSessionList(
      listLine([
        info(S2, "two"),
        { sessionId: "bad id!", title: "x" },
        { sessionId: "x".repeat(65) },
        "junk",
        info(S2, "again"),
        { ...info("main", "Base"), closed: true },
      ]),
    );
    expect(got).toEqual([info("main", "Base"), info(S2, "two")]);
  });

  test("a list without main still has it", () => {
    expect(parseSessionList(listLine([info(S2)]))?.map((s) => s.sessionId)).toEqual(["main", S2]);
  });

  test("odd fields are made safe", () => {
    const [, s] = parseSessionList(
      listLine([{ sessionId: S2, title: 7, createdAt: null, closed: "yes" }]),
    )!;
    expect(s).toEqual({ sessionId: S2, title: "", createdAt: "", closed: false });
    const long = parseSessionList(listLine([{ sessionId: S2, title: "t".repeat(500) }]))!;
    expect(long[1]!.title).toHaveLength(100);
  });
});

describe("the conversation keeps main's latest list", () => {
  const snap = (messages: unknown[]): Incoming => ({
    type: "messages_snapshot",
    workspaceId: "w",
    seq: messages.length,
    epoch: "e",
    status: "idle",
    messages,
    pending: [],
  });
  const line = (seq: number, sessions: unknown[]): Incoming => ({
    type: "claude_message",
    workspaceId: "w",
    seq,
    epoch: "e",
    data: listLine(sessions),
  });

  test("from the snapshot and then live, without an item in the transcript", () => {
    let c = reduce(emptyConversation("w"), {
      type: "receive",
      message: snap([line(1, [info("main"), info(S2)])]),
    });
    expect(c.sessions?.map((s) => s.sessionId)).toEqual(["main", S2]);
    expect(c.items).toEqual([]);
    c = reduce(c, {
      type: "receive",
      message: line(2, [info("main"), info(S2, "", true), info(S3, "Tests")]),
    });
    expect(c.sessions).toEqual([info("main"), info(S2, "", true), info(S3, "Tests")]);
    expect(c.items).toEqual([]);
  });

  test("no line yet: no list", () => {
    const c = reduce(emptyConversation("w"), { type: "receive", message: snap([]) });
    expect(c.sessions).toBeNull();
  });

  test("a message of another session is not this conversation's", () => {
    let c = reduce(emptyConversation("w", S2), { type: "receive", message: snap([]) });
    const other: Incoming = {
      type: "user_message",
      workspaceId: "w",
      sessionId: "main",
      seq: 1,
      epoch: "e",
      clientMessageId: "c1",
      text: "for main",
    };
    c = reduce(c, { type: "receive", message: other });
    expect(c.items).toEqual([]);
    c = reduce(c, { type: "receive", message: { ...other, sessionId: S2 } });
    expect(c.items.map((i) => i.kind)).toEqual(["user"]);
    expect(c.sessionId).toBe(S2);
  });
});

describe("tabs", () => {
  test("untitled ones are numbered by their place in the list", () => {
    const tabs = tabsOf([info("main"), info(S2, "Refactor"), info(S3, "  ", true)]);
    expect(tabs.map((t) => [t.label, t.number, t.closed])).toEqual([
      ["Session 1", 1, false],
      ["Refactor", 2, false],
      ["Session 3", 3, true],
    ]);
    expect(tabsOf(ONLY_MAIN).map((t) => t.label)).toEqual(["Session 1"]);
  });

  test("+ is blocked at the limit of open sessions, closed ones not counted", () => {
    const open = (n: number) =>
      Array.from({ length: n }, (_, i) => info(i === 0 ? "main" : `s_${i}`));
    expect(createBlock(open(MAX_OPEN_SESSIONS - 1))).toBeNull();
    expect(createBlock(open(MAX_OPEN_SESSIONS))).toMatch(/At most 5 open sessions/);
    expect(createBlock([...open(MAX_OPEN_SESSIONS - 1), info("s_x", "", true)])).toBeNull();
  });

  test("+ stops at the VM's own limit when its list line says one", () => {
    const open = (n: number) =>
      Array.from({ length: n }, (_, i) => info(i === 0 ? "main" : `s_${i}`));
    expect(createBlock(open(2), 2)).toBe("At most 2 open sessions: close one to start another.");
    expect(createBlock(open(1), 1)).toMatch(/At most 1 open session:/);
    expect(createBlock(open(5), 8)).toBeNull();
    expect(createBlock(open(5), null)).toMatch(/At most 5 /);
  });

  test("maxSessions is read from the list line, anything odd is not a limit", () => {
    const line = (maxSessions: unknown) => ({ ...listLine([info("main")]), maxSessions });
    expect(parseMaxSessions(line(3))).toBe(3);
    expect(parseMaxSessions(listLine([info("main")]))).toBeNull();
    for (const bad of [0, -1, 2.5, "3", null, 1e9, Number.NaN])
      expect(parseMaxSessions(line(bad))).toBeNull();
  });
});

describe("sessionsToSubscribe", () => {
  const list = [info("main"), info(S2), info(S3, "", true)];

  test("main and every open session; a closed one only while shown", () => {
    expect(sessionsToSubscribe(ONLY_MAIN, "main")).toEqual(["main"]);
    expect(sessionsToSubscribe(list, "main")).toEqual(["main", S2]);
    expect(sessionsToSubscribe(list, S2)).toEqual(["main", S2]);
    expect(sessionsToSubscribe(list, S3)).toEqual(["main", S2, S3]);
  });

  test("an unknown session only when it was just created", () => {
    expect(sessionsToSubscribe(list, "s_new")).toEqual(["main", S2]);
    expect(sessionsToSubscribe(list, "s_new", "s_new")).toEqual(["main", S2, "s_new"]);
  });
});

describe("aggregateStatus", () => {
  test("the most urgent of the sessions' statuses", () => {
    expect(aggregateStatus(["idle", "waiting_for_input", "running"])).toBe("waiting_for_input");
    expect(aggregateStatus(["idle", "running", "error"])).toBe("running");
    expect(aggregateStatus(["stopped", "idle", "error"])).toBe("error");
    expect(aggregateStatus(["stopped", "starting", "idle"])).toBe("starting");
    expect(aggregateStatus(["stopped", "idle"])).toBe("idle");
    expect(aggregateStatus(["stopped"])).toBe("stopped");
  });

  test("offline wins, unknown ones are skipped, none known is null", () => {
    expect(aggregateStatus(["waiting_for_input", "offline"])).toBe("offline");
    expect(aggregateStatus([null, undefined, "idle"])).toBe("idle");
    expect(aggregateStatus([null])).toBeNull();
    expect(aggregateStatus([])).toBeNull();
  });
});

describe("keys, messages and routes", () => {
  test("main's key is the workspace id; keys go both ways", () => {
    expect(sessionKey("w1")).toBe("w1");
    expect(sessionKey("w1", "main")).toBe("w1");
    expect(sessionKey("w1", S2)).not.toBe("w1");
    for (const [w, s] of [
      ["w1", "main"],
      ["w1", S2],
      ["a-b_c", "x"],
    ] as const) {
      expect(parseSessionKey(sessionKey(w, s))).toEqual({ workspaceId: w, sessionId: s });
    }
  });

  test("sessionId is written for other sessions only", () => {
    const msg: Outgoing = { type: "interrupt", workspaceId: "w" };
    expect(withSession(msg, "main")).toEqual({ type: "interrupt", workspaceId: "w" });
    expect(withSession(msg, S2)).toEqual({ type: "interrupt", workspaceId: "w", sessionId: S2 });
    expect(msg).toEqual({ type: "interrupt", workspaceId: "w" });
  });

  test("a received message without sessionId is main's", () => {
    expect(sessionOf({ type: "status" })).toBe("main");
    expect(sessionOf({ type: "status", sessionId: S2 })).toBe(S2);
    expect(sessionOf({ type: "status", sessionId: "no good" })).toBe("main");
  });

  test("ids", () => {
    expect(isSessionId("main")).toBe(true);
    expect(isSessionId(S2)).toBe(true);
    expect(isSessionId("")).toBe(false);
    expect(isSessionId("a/b")).toBe(false);
    expect(isSessionId("x".repeat(65))).toBe(false);
    expect(isSessionId(3)).toBe(false);
  });

  test("the URL names the session, main has no suffix", () => {
    expect(sessionPath("w1")).toBe("/w/w1");
    expect(sessionPath("w1", S2)).toBe(`/w/w1/s/${S2}`);
    expect(routeOf("/w/w1")).toEqual({ workspaceId: "w1", sessionId: "main" });
    expect(routeOf("/w/w1/")).toEqual({ workspaceId: "w1", sessionId: "main" });
    expect(routeOf(`/w/w1/s/${S2}`)).toEqual({ workspaceId: "w1", sessionId: S2 });
    expect(routeOf(sessionPath("a b", S2))).toEqual({ workspaceId: "a b", sessionId: S2 });
    expect(routeOf("/w/w1/s/bad%20id")).toEqual({ workspaceId: "w1", sessionId: "main" });
    expect(routeOf("/w/%E0%A4%A")).toBeNull();
    expect(routeOf("/")).toBeNull();
    expect(routeOf("/w/w1/x/y")).toBeNull();
  });
});

describe("waitingSession", () => {
  const c = (workspaceId: string, sessionId: string, status: string | null) => ({
    workspaceId,
    sessionId,
    status: status as "idle" | null,
  });

  test("the oldest session of the workspace that waits, by the list's order", () => {
    const all = {
      w: c("w", "main", "idle"),
      [sessionKey("w", S3)]: c("w", S3, "waiting_for_input"),
      [sessionKey("w", S2)]: c("w", S2, "waiting_for_input"),
      x: c("x", "main", "waiting_for_input"),
    };
    expect(waitingSession(all, "w", [info("main"), info(S2), info(S3)])).toBe(S2);
    expect(waitingSession(all, "w", [info("main"), info(S3), info(S2)])).toBe(S3);
    expect(waitingSession(all, "w")).toBe(S3);
    expect(waitingSession(all, "x")).toBe("main");
    expect(waitingSession({ w: c("w", "main", "running") }, "w")).toBeNull();
    expect(waitingSession({}, "w")).toBeNull();
  });
});
