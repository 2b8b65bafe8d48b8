import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import type { Incoming } from "./protocol";
import { Requester } from "./requests";
import { INPUT_INTERVAL_MS, MAX_INPUT_CHARS, TerminalSession } from "./terminals";
import { FakeRelay } from "./testkit";

async function opened(relay: FakeRelay, events = { output: vi.fn(), exit: vi.fn() }) {
  const requester = new Requester(relay, { newId: () => "r1" });
  const pending = TerminalSession.open(relay, requester, "w1", { cols: 90, rows: 30 }, events);
  expect(relay.sent).toEqual([
    {
      type: "request",
      workspaceId: "w1",
      requestId: "r1",
      op: "terminal_open",
      args: { cols: 90, rows: 30 },
    },
  ]);
  relay.deliver({
    type: "reply",
    workspaceId: "w1",
    requestId: "r1",
    ok: true,
    result: { terminalId: "t1" },
  } as Incoming);
  const session = await pending;
  relay.sent = [];
  return { session, events };
}

function out(terminalId: string, data: string, workspaceId = "w1"): Incoming {
  return { type: "terminal_output", workspaceId, terminalId, connectionId: "c1", data } as Incoming;
}

describe("TerminalSession", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  test("output of its own terminal only", async () => {
    const relay = new FakeRelay();
    const { events } = await opened(relay);
    relay.deliver(out("t1", "hello"));
    relay.deliver(out("t2", "not mine"));
    relay.deliver(out("t1", "other workspace", "w2"));
    expect(events.output.mock.calls).toEqual([["hello"]]);
  });

  test("keystrokes: the first at once, the rest gathered, a paste cut to the limit", async () => {
    const relay = new FakeRelay();
    const { session } = await opened(relay);
    session.input("e");
    session.input("c");
    session.input("ho");
    expect(relay.sent).toEqual([
      { type: "terminal_input", workspaceId: "w1", terminalId: "t1", data: "e" },
    ]);
    vi.advanceTimersByTime(INPUT_INTERVAL_MS);
    expect(relay.sent.map((m) => ("data" in m ? m.data : ""))).toEqual(["e", "cho"]);
    relay.sent = [];
    vi.advanceTimersByTime(INPUT_INTERVAL_MS);
    session.input("x".repeat(MAX_INPUT_CHARS + 5));
    expect(relay.sent.map((m) => ("data" in m ? m.data.length : 0))).toEqual([MAX_INPUT_CHARS, 5]);
  });

  test("resize is clamped; close sends terminal_close once and stops listening", async () => {
    const relay = new FakeRelay();
    const { session, events } = await opened(relay);
    session.resize(0, 5000);
    session.close();
    session.close();
    session.input("late");
    relay.deliver(out("t1", "late output"));
    expect(relay.sent).toEqual([
      { type: "terminal_resize", workspaceId: "w1", terminalId: "t1", cols: 1, rows: 1000 },
      { type: "terminal_close", workspaceId: "w1", terminalId: "t1" },
    ]);
    expect(events.output).not.toHaveBeenCalled();
    expect(session.open).toBe(false);
  });

  test("exit and a lost connection end it", async () => {
    const relay = new FakeRelay();
    const { session, events } = await opened(relay);
    relay.deliver({
      type: "terminal_exit",
      workspaceId: "w1",
      terminalId: "t1",
      reason: "exited",
      exitCode: 3,
    } as Incoming);
    expect(events.exit.mock.calls).toEqual([["exited", 3]]);
    expect(session.open).toBe(false);
    const other = await opened(new FakeRelay());
    const relay2 = new FakeRelay();
    const third = await opened(relay2);
    relay2.close();
    expect(third.events.exit.mock.calls).toEqual([["disconnected", undefined]]);
    expect(other.session.open).toBe(true);
  });

  test("a refused open rejects with the VM's words", async () => {
    const relay = new FakeRelay();
    const requester = new Requester(relay, { newId: () => "r1" });
    const pending = TerminalSession.open(
      relay,
      requester,
      "w1",
      { cols: 80, rows: 24 },
      {
        output: vi.fn(),
        exit: vi.fn(),
      },
    );
    relay.deliver({
      type: "reply",
      workspaceId: "w1",
      requestId: "r1",
      ok: false,
      error: { code: "forbidden", message: "terminals are turned off on this VM" },
    } as Incoming);
    await expect(pending).rejects.toThrow("terminals are turned off on this VM");
    expect(relay.listeners).toBe(2); // the requester's own; the session's are gone
  });
});
