// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, test, vi } from "vitest";
import type { Workspace } from "../lib/api";
import { reduce } from "../lib/conversation";
import { type Conversation, emptyConversation } from "../lib/conversationModel";
import { draftKey } from "../lib/drafts";
import type { Incoming, Outgoing } from "../lib/protocol";
import { type SessionInfo, sessionKey, tabsOf } from "../lib/sessions";
import { Store } from "../lib/store";
import { SessionTabs } from "./SessionTabs";
import { createdSession, WorkspaceSessions } from "./WorkspaceSessions";

afterEach(cleanup);

// jsdom has <dialog> without showModal: open is what the browser's would do here.
if (!HTMLDialogElement.prototype.showModal) {
  HTMLDialogElement.prototype.showModal = function (this: HTMLDialogElement) {
    this.open = true;
  };
}

const S2 = "s_2";
const S3 = "s_3";
const info = (sessionId: string, title = "", closed = false): SessionInfo => ({
  sessionId,
  title,
  createdAt: "",
  closed,
});

function strip(overrides: Partial<Parameters<typeof SessionTabs>[0]> = {}) {
  const props = {
    tabs: tabsOf([info("main"), info(S2, "Tests"), info(S3, "", true)]),
    shown: "main",
    statuses: {},
    createBlock: null,
    onSelect: vi.fn(),
    onCreate: vi.fn(async () => {}),
    onRename: vi.fn(async () => {}),
    onClose: vi.fn(async (): Promise<string | null> => null),
    ...overrides,
  };
  render(<SessionTabs {...props} />);
  return props;
}

describe("SessionTabs", () => {
  test("a tab per open session, untitled ones numbered; closed ones in their menu", () => {
    const p = strip({ statuses: { [S2]: "waiting_for_input", main: "running" } });
    const tabs = screen.getAllByRole("tab");
    expect(tabs.map((t) => t.textContent)).toEqual([
      "Session 1, running",
      "Tests, waiting for input",
    ]);
    expect(tabs.map((t) => t.getAttribute("aria-selected"))).toEqual(["true", "false"]);
    expect(tabs.map((t) => t.tabIndex)).toEqual([0, -1]);
    expect(tabs[1]!.getAttribute("data-status")).toBe("waiting_for_input");
    fireEvent.click(tabs[1]!);
    expect(p.onSelect).toHaveBeenCalledWith(S2);
    fireEvent.click(screen.getByRole("button", { name: "Closed sessions (1)" }));
    fireEvent.click(screen.getByRole("menuitem", { name: "Session 3" }));
    expect(p.onSelect).toHaveBeenLastCalledWith(S3);
  });

  test("the closed session shown is a tab too, marked closed, with no actions", () => {
    strip({ shown: S3 });
    const tabs = screen.getAllByRole("tab");
    expect(tabs.map((t) => t.textContent)).toEqual([
      "Session 1",
      "Tests",
      "Session 3, closedclosed",
    ]);
    expect(screen.queryByRole("button", { name: /Actions for/ })).toBeNull();
  });

  test("arrow keys, Home and End move the focus between tabs", () => {
    strip({ tabs: tabsOf([info("main"), info(S2), info(S3)]) });
    const tabs = screen.getAllByRole("tab");
    tabs[0]!.focus();
    fireEvent.keyDown(tabs[0]!, { key: "ArrowRight" });
    expect(document.activeElement).toBe(tabs[1]);
    fireEvent.keyDown(tabs[1]!, { key: "End" });
    expect(document.activeElement).toBe(tabs[2]);
    fireEvent.keyDown(tabs[2]!, { key: "ArrowRight" });
    expect(document.activeElement).toBe(tabs[0]);
    fireEvent.keyDown(tabs[0]!, { key: "ArrowLeft" });
    expect(document.activeElement).toBe(tabs[2]);
    fireEvent.keyDown(tabs[2]!, { key: "Home" });
    expect(document.activeElement).toBe(tabs[0]);
  });

  test("rename inline: Enter saves, Escape cancels, an unchanged name is not sent", () => {
    const p = strip();
    fireEvent.doubleClick(screen.getByRole("tab", { name: "Tests" }));
    let box = screen.getByRole("textbox", { name: "New name for Tests" }) as HTMLInputElement;
    expect(box.value).toBe("Tests");
    fireEvent.change(box, { target: { value: "  Docs  " } });
    fireEvent.keyDown(box, { key: "Enter" });
    expect(p.onRename).toHaveBeenCalledWith(S2, "Docs");
    fireEvent.keyDown(screen.getByRole("tab", { name: "Session 1" }), { key: "F2" });
    box = screen.getByRole("textbox", { name: "New name for Session 1" }) as HTMLInputElement;
    fireEvent.change(box, { target: { value: "Other" } });
    fireEvent.keyDown(box, { key: "Escape" });
    expect(screen.queryByRole("textbox")).toBeNull();
    fireEvent.click(screen.getByRole("button", { name: "Actions for Session 1" }));
    fireEvent.click(screen.getByRole("menuitem", { name: "Rename" }));
    fireEvent.keyDown(screen.getByRole("textbox", { name: "New name for Session 1" }), {
      key: "Enter",
    });
    expect(p.onRename).toHaveBeenCalledTimes(1);
  });

  test("close asks first; main cannot be closed", async () => {
    const p = strip({ shown: S2 });
    fireEvent.keyDown(screen.getByRole("tab", { name: "Session 1" }), { key: "Delete" });
    expect(screen.queryByText(/Close Session 1/)).toBeNull();
    fireEvent.click(screen.getByRole("button", { name: "Actions for Tests" }));
    fireEvent.click(screen.getByRole("menuitem", { name: "Close session" }));
    expect(screen.getByText("Close Tests?")).toBeTruthy();
    fireEvent.click(screen.getByRole("button", { name: "Cancel" }));
    expect(p.onClose).not.toHaveBeenCalled();
    fireEvent.keyDown(screen.getByRole("tab", { name: "Tests" }), { key: "Delete" });
    await act(async () => {
      fireEvent.click(screen.getByRole("button", { name: "Close session" }));
    });
    expect(p.onClose).toHaveBeenCalledWith(S2);
    expect(screen.queryByText("Close Tests?")).toBeNull();
    // The focus is on a tab again, not lost to the page.
    expect(document.activeElement).toBe(screen.getByRole("tab", { name: "Tests" }));
  });

  test("+ is disabled with its reason at the limit; a refusal is shown", async () => {
    strip({ createBlock: "At most 5 open sessions: close one to start another." });
    const plus = screen.getByRole("button", { name: "New session" }) as HTMLButtonElement;
    expect(plus.disabled).toBe(true);
    expect(screen.getByText(/At most 5 open sessions/)).toBeTruthy();
    cleanup();
    strip({
      onCreate: vi.fn(async () => {
        throw new Error("at most 3 open sessions");
      }),
    });
    await act(async () => {
      fireEvent.click(screen.getByRole("button", { name: "New session" }));
    });
    expect(screen.getByRole("alert").textContent).toMatch(
      /Could not start a session: at most 3 open sessions/,
    );
  });
});

// -- the workspace view: subscriptions, ops, a closed session ------------------

class FakeRelay {
  state = "open" as const;
  sent: Outgoing[] = [];
  private listeners: ((m: Incoming) => void)[] = [];
  send(m: Outgoing): boolean {
    this.sent.push(m);
    return true;
  }
  onMessage(f: (m: Incoming) => void) {
    this.listeners.push(f);
    return () => {};
  }
  onOpen() {
    return () => {};
  }
  onClose() {
    return () => {};
  }
  onState() {
    return () => {};
  }
  deliver(m: Incoming): void {
    for (const f of this.listeners) f(m);
  }
}

const workspace: Workspace = {
  id: "w",
  name: "demo",
  issue: { url: "https://github.com/a/b/issues/1", owner: "a", repo: "b", number: 1 },
  status: "idle",
  createdAt: "",
  updatedAt: "",
};

function loaded(sessionId: string, messages: unknown[] = [], status = "idle"): Conversation {
  return reduce(emptyConversation("w", sessionId), {
    type: "receive",
    message: {
      type: "messages_snapshot",
      workspaceId: "w",
      seq: messages.length,
      epoch: "e",
      status,
      messages,
      pending: [],
    },
  });
}

const listLine = (sessions: SessionInfo[]) => ({
  type: "claude_message",
  seq: 1,
  data: { type: "system", subtype: "vmagent_sessions", sessions },
});

function view(conversations: Record<string, Conversation>, sessionId = "main") {
  const relay = new FakeRelay();
  const store = new Store(relay, { schedule: null });
  const requester = { request: vi.fn(async (): Promise<unknown> => ({})) };
  const onSession = vi.fn();
  const props = { workspace, store, requester, me: "u", onBack: () => {}, onSession };
  const r = render(
    <WorkspaceSessions {...props} sessionId={sessionId} conversations={conversations} />,
  );
  const rerender = (c: Record<string, Conversation>, sid = sessionId) =>
    r.rerender(<WorkspaceSessions {...props} sessionId={sid} conversations={c} />);
  return { relay, requester, onSession, rerender, unmount: r.unmount };
}

describe("WorkspaceSessions", () => {
  test("before any list line: main alone, subscribed as before, and left on unmount", () => {
    const { relay, unmount } = view({ w: loaded("main") });
    expect(screen.getAllByRole("tab").map((t) => t.textContent)).toEqual(["Session 1"]);
    expect(screen.getByRole("textbox", { name: "Message to Claude" })).toBeTruthy();
    expect(relay.sent).toEqual([{ type: "subscribe", workspaceId: "w" }]);
    unmount();
    expect(relay.sent.slice(1)).toEqual([
      { type: "unsubscribe", workspaceId: "w" },
      { type: "subscribe", workspaceId: "w", statusOnly: true },
    ]);
  });

  test("main and every open session are subscribed; the closed one only while shown", () => {
    const main = loaded("main", [listLine([info("main"), info(S2), info(S3, "Old", true)])]);
    const { relay, rerender } = view({ w: main });
    expect(relay.sent).toEqual([
      { type: "subscribe", workspaceId: "w" },
      { type: "subscribe", workspaceId: "w", sessionId: S2 },
    ]);
    rerender({ w: main, [sessionKey("w", S3)]: loaded(S3, [], "stopped") }, S3);
    expect(relay.sent.at(-1)).toEqual({ type: "subscribe", workspaceId: "w", sessionId: S3 });
    expect(screen.getByText(/This session is closed/)).toBeTruthy();
    expect(screen.queryByRole("textbox", { name: "Message to Claude" })).toBeNull();
    rerender({ w: main }, "main");
    expect(relay.sent.at(-1)).toEqual({ type: "unsubscribe", workspaceId: "w", sessionId: S3 });
  });

  test("+ creates a session on the VM and shows it at once", async () => {
    const { requester, onSession } = view({ w: loaded("main") });
    requester.request.mockResolvedValueOnce({ sessionId: S2, title: "" });
    await act(async () => {
      fireEvent.click(screen.getByRole("button", { name: "New session" }));
    });
    expect(requester.request).toHaveBeenCalledWith("w", "session_create");
    expect(onSession).toHaveBeenCalledWith(S2);
  });

  test("rename and close go to the session they name; closing the shown one shows the one before", async () => {
    const main = loaded("main", [listLine([info("main"), info(S2), info(S3)])]);
    const { requester, onSession } = view({ w: main }, S3);
    fireEvent.doubleClick(screen.getByRole("tab", { name: "Session 2" }));
    fireEvent.change(screen.getByRole("textbox", { name: /New name/ }), {
      target: { value: "Docs" },
    });
    await act(async () => {
      fireEvent.keyDown(screen.getByRole("textbox", { name: /New name/ }), { key: "Enter" });
    });
    expect(requester.request).toHaveBeenCalledWith(sessionKey("w", S2), "session_rename", {
      title: "Docs",
    });
    fireEvent.keyDown(screen.getByRole("tab", { name: "Session 3" }), { key: "Delete" });
    await act(async () => {
      fireEvent.click(screen.getByRole("button", { name: "Close session" }));
    });
    expect(requester.request).toHaveBeenCalledWith(sessionKey("w", S3), "session_close");
    expect(onSession).toHaveBeenLastCalledWith(S2);
  });

  test("+ stops at the limit the VM's list line says, 5 when it says none", () => {
    const two = [info("main"), info(S2)];
    const said = loaded("main", [
      { ...listLine(two), data: { ...listLine(two).data, maxSessions: 2 } },
    ]);
    const { rerender } = view({ w: said });
    const plus = () => screen.getByRole("button", { name: "New session" }) as HTMLButtonElement;
    expect(plus().disabled).toBe(true);
    expect(screen.getByText("At most 2 open sessions: close one to start another.")).toBeTruthy();
    rerender({ w: loaded("main", [listLine(two)]) });
    expect(plus().disabled).toBe(false);
  });

  test("each session keeps its unsent text when switching tabs and back; sending clears it", () => {
    window.sessionStorage.clear();
    const main = loaded("main", [listLine([info("main"), info(S2)])]);
    const both = { w: main, [sessionKey("w", S2)]: loaded(S2) };
    const { relay, rerender } = view(both);
    const box = () =>
      screen.getByRole("textbox", { name: "Message to Claude" }) as HTMLTextAreaElement;
    fireEvent.change(box(), { target: { value: "for main, not sent" } });
    rerender(both, S2);
    expect(box().value).toBe("");
    fireEvent.change(box(), { target: { value: "for the second" } });
    rerender(both, "main");
    expect(box().value).toBe("for main, not sent");
    rerender(both, S2);
    expect(box().value).toBe("for the second");
    // Kept in this tab's sessionStorage too (a reload), and never sent.
    expect(window.sessionStorage.getItem(draftKey(sessionKey("w", S2)))).toContain(
      "for the second",
    );
    expect(relay.sent.some((m) => m.type === "user_message")).toBe(false);
    fireEvent.keyDown(box(), { key: "Enter" });
    expect(relay.sent.filter((m) => m.type === "user_message")).toHaveLength(1);
    expect(box().value).toBe("");
    rerender(both, "main");
    rerender(both, S2);
    expect(box().value).toBe("");
    expect(window.sessionStorage.getItem(draftKey(sessionKey("w", S2)))).toBeNull();
  });

  test("a session the list does not name goes back to main", () => {
    const main = loaded("main", [listLine([info("main"), info(S2)])]);
    const { onSession } = view({ w: main }, "s_gone");
    expect(onSession).toHaveBeenCalledWith("main", true);
  });

  test("no tabs until main's log is here (its list line may be in it)", () => {
    const { relay } = view({ w: emptyConversation("w") }, S2);
    expect(screen.queryByRole("tab")).toBeNull();
    expect(screen.getByText("Loading session…")).toBeTruthy();
    // The session the URL names waits for the list: it may not be there any more.
    expect(relay.sent).toEqual([{ type: "subscribe", workspaceId: "w" }]);
  });

  test("a bad create reply is an error, not a tab", () => {
    expect(createdSession({ sessionId: S2 })).toBe(S2);
    expect(() => createdSession({ sessionId: "no good" })).toThrow(/bad answer/);
    expect(() => createdSession(null)).toThrow(/bad answer/);
  });
});
