// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, expect, test, vi } from "vitest";
import type { Incoming, Outgoing } from "../../lib/protocol";
import type { Relay } from "../../lib/requests";
import { PREPARING_GRACE_MS, PREPARING_RETRY_MS } from "./useReply";
import { REFRESH_DEBOUNCE_MS, WorkspacePanels } from "./WorkspacePanels";

afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

/** A relay whose VM answers from a table, and counts what it was asked. */
class ScriptedRelay implements Relay {
  asked: { op: string; args: Record<string, unknown> }[] = [];
  private listeners = new Set<(m: Incoming) => void>();
  constructor(private answer: (op: string, args: Record<string, unknown>) => Incoming) {}
  send(msg: Outgoing): boolean {
    if (msg.type !== "request") return true;
    const args = msg.args ?? {};
    this.asked.push({ op: msg.op, args });
    const reply: Incoming = {
      ...this.answer(msg.op, args),
      workspaceId: msg.workspaceId,
      requestId: msg.requestId,
    };
    queueMicrotask(() => this.deliver(reply));
    return true;
  }
  onMessage(f: (m: Incoming) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }
  onClose(): () => void {
    return () => {};
  }
  deliver(m: Incoming): void {
    for (const f of this.listeners) f(m);
  }
}

const CHANGES = {
  base: "main",
  branch: "ff/demo",
  files: [
    { path: "README.md", status: "modified", added: 1, removed: 0, uncommitted: true },
    { path: "src/app.py", status: "added", added: 4, removed: 0, unpushed: true },
  ],
};

function ok(result: unknown): Incoming {
  return { type: "reply", ok: true, result };
}

function vm(op: string, args: Record<string, unknown>): Incoming {
  if (op === "changes") return ok(CHANGES);
  if (op === "diff")
    return ok({ path: args.path, diff: "diff --git a/x b/x\n+added line\n", truncated: false });
  if (op === "files") return ok({ files: ["README.md", "src/app.py"], truncated: false });
  if (op === "file" && args.path === "src/app.py")
    return ok({ path: args.path, size: 9, binary: false, truncated: false, content: "def x(): 1" });
  return { type: "reply", ok: false, error: { code: "not_found", message: "no such file" } };
}

test("Changes lists the files with their state and shows a file's diff", async () => {
  const relay = new ScriptedRelay(vm);
  render(<WorkspacePanels relay={relay} workspaceId="w1" />);
  const list = await screen.findByRole("list", { name: "Changed files" });
  expect(list.textContent).toContain("README.md");
  expect(list.textContent).toContain("uncommitted");
  expect(list.textContent).toContain("not pushed");
  expect(screen.getByText(/2 files changed against main on ff\/demo/)).toBeTruthy();
  fireEvent.click(screen.getByRole("button", { name: /README\.md/ }));
  const diff = await screen.findByRole("region", { name: "Unified diff of README.md" });
  expect(diff.textContent).toContain("+added line");
  expect(relay.asked.at(-1)).toEqual({ op: "diff", args: { path: "README.md" } });
});

test("Files shows the tree, a file, and a readable error", async () => {
  const relay = new ScriptedRelay(vm);
  render(<WorkspacePanels relay={relay} workspaceId="w1" />);
  fireEvent.click(screen.getByRole("tab", { name: "Files" }));
  const nav = await screen.findByRole("navigation", { name: "Files" });
  expect(nav.textContent).toContain("src/");
  fireEvent.click(screen.getByRole("button", { name: "src/app.py" }));
  const content = await screen.findByRole("region", { name: "Content of src/app.py" });
  expect(content.textContent).toContain("def x(): 1");
  fireEvent.click(screen.getByRole("button", { name: "README.md" }));
  const alert = await screen.findByRole("alert");
  expect(alert.textContent).toContain("no such file");
  expect(screen.queryByRole("status")).toBeNull(); // nothing left loading
});

test("a tool result in the stream refreshes the panel once, after the burst", async () => {
  vi.useFakeTimers();
  const relay = new ScriptedRelay(vm);
  render(<WorkspacePanels relay={relay} workspaceId="w1" />);
  await act(async () => {});
  const before = relay.asked.filter((a) => a.op === "changes").length;
  expect(before).toBe(1);
  const result: Incoming = {
    type: "claude_message",
    workspaceId: "w1",
    seq: 5,
    epoch: "e",
    data: { type: "result" },
  };
  act(() => {
    relay.deliver(result);
    relay.deliver({ ...result, seq: 6 });
    relay.deliver({ ...result, workspaceId: "other" });
  });
  await act(async () => {
    vi.advanceTimersByTime(REFRESH_DEBOUNCE_MS);
  });
  expect(relay.asked.filter((a) => a.op === "changes").length).toBe(2);
  // And on request.
  await act(async () => {
    fireEvent.click(screen.getByRole("button", { name: "Refresh the panel" }));
  });
  expect(relay.asked.filter((a) => a.op === "changes").length).toBe(3);
});

test("Commit & push sends the edited message, then the pull request shows its state and link", async () => {
  let pr: unknown = null;
  const relay = new ScriptedRelay((op, args) => {
    if (op === "commit" || op === "push") return ok({ commit: "abc", branch: "ff/issue-8" });
    if (op === "pr_status") return ok({ pullRequest: pr });
    if (op === "pull_request") {
      pr = { number: 100, url: "https://github.com/o/r/pull/100", state: "open", title: "T" };
      return ok({ pullRequest: pr });
    }
    return vm(op, args);
  });
  const header = vi.fn();
  render(<WorkspacePanels relay={relay} workspaceId="w1" onPullRequest={header} />);
  const message = await screen.findByLabelText("Commit message");
  fireEvent.change(message, { target: { value: "Fix the widgets" } });
  fireEvent.click(screen.getByRole("button", { name: "Commit & push" }));
  await screen.findByText("Committed and pushed.");
  const ops = relay.asked.map((a) => a.op);
  expect(relay.asked.find((a) => a.op === "commit")?.args).toEqual({ message: "Fix the widgets" });
  expect(ops.indexOf("push")).toBeGreaterThan(ops.indexOf("commit"));
  fireEvent.click(screen.getByRole("button", { name: "Create pull request" }));
  const link = await screen.findByRole("link", { name: "Pull request #100: open" });
  expect(link.getAttribute("href")).toBe("https://github.com/o/r/pull/100");
  expect(screen.queryByRole("button", { name: "Create pull request" })).toBeNull();
  // The session header is told (it shows the same link).
  expect(header).toHaveBeenLastCalledWith(expect.objectContaining({ number: 100, state: "open" }));
});

test("A failed push is a readable error and the buttons come back", async () => {
  const relay = new ScriptedRelay((op, args) => {
    if (op === "commit") return ok({ commit: "abc", branch: "ff/issue-8" });
    if (op === "push")
      return {
        type: "reply",
        ok: false,
        error: { code: "bad_request", message: "git push failed: rejected" },
      };
    if (op === "pr_status") return ok({ pullRequest: null });
    return vm(op, args);
  });
  render(<WorkspacePanels relay={relay} workspaceId="w1" />);
  fireEvent.click(await screen.findByRole("button", { name: "Commit & push" }));
  const alert = await screen.findByRole("alert");
  expect(alert.textContent).toBe("Push failed: git push failed: rejected");
  expect(screen.queryByText("Pushing…")).toBeNull();
  expect(
    (screen.getByRole("button", { name: "Create pull request" }) as HTMLButtonElement).disabled,
  ).toBe(false);
});

test("Changes waits while the workspace is starting, then asks once it is not", async () => {
  const relay = new ScriptedRelay(vm);
  const { rerender } = render(<WorkspacePanels relay={relay} workspaceId="w1" status="starting" />);
  await act(async () => {});
  expect(screen.getByRole("status").textContent).toContain("Preparing the workspace");
  expect(screen.queryByRole("alert")).toBeNull();
  expect(relay.asked).toEqual([]); // not even pr_status
  rerender(<WorkspacePanels relay={relay} workspaceId="w1" status="idle" />);
  await screen.findByRole("list", { name: "Changed files" });
  expect(relay.asked.filter((a) => a.op === "changes").length).toBe(1);
});

test("a not_found in the first seconds is asked again, not shown; later it is shown", async () => {
  vi.useFakeTimers();
  let missing = true;
  const relay = new ScriptedRelay(vm);
  // While `missing`, relayd's own `error` answers a changes request (it names it in `ref`).
  const send = relay.send.bind(relay);
  relay.send = (msg) => {
    if (msg.type === "request" && msg.op === "changes" && missing) {
      relay.asked.push({ op: msg.op, args: {} });
      const ref = msg.requestId;
      queueMicrotask(() =>
        relay.deliver({ type: "error", code: "not_found", message: "no such workspace", ref }),
      );
      return true;
    }
    return send(msg);
  };
  render(<WorkspacePanels relay={relay} workspaceId="w1" />);
  await act(async () => {});
  expect(screen.queryByRole("alert")).toBeNull();
  expect(screen.getByRole("status").textContent).toContain("Preparing the workspace");
  await act(async () => {
    vi.advanceTimersByTime(PREPARING_RETRY_MS);
  });
  expect(relay.asked.filter((a) => a.op === "changes").length).toBe(2);
  expect(screen.queryByRole("alert")).toBeNull();
  missing = false;
  await act(async () => {
    vi.advanceTimersByTime(PREPARING_RETRY_MS);
  });
  expect(screen.getByRole("list", { name: "Changed files" }).textContent).toContain("README.md");
  // Past the grace, a not_found is the error it is.
  missing = true;
  await act(async () => {
    vi.advanceTimersByTime(PREPARING_GRACE_MS);
    fireEvent.click(screen.getByRole("button", { name: "Refresh the panel" }));
  });
  expect(screen.getByRole("alert").textContent).toContain("no such workspace");
});

test("Files waits while the workspace is starting too, then lists the tree", async () => {
  const relay = new ScriptedRelay(vm);
  const { rerender } = render(<WorkspacePanels relay={relay} workspaceId="w1" status="starting" />);
  await act(async () => {});
  fireEvent.click(screen.getByRole("tab", { name: "Files" }));
  await act(async () => {});
  expect(screen.getByRole("status").textContent).toContain("its files show when it is ready");
  expect(screen.queryByRole("alert")).toBeNull();
  expect(relay.asked.filter((a) => a.op === "files")).toEqual([]);
  rerender(<WorkspacePanels relay={relay} workspaceId="w1" status="idle" />);
  const nav = await screen.findByRole("navigation", { name: "Files" });
  expect(nav.textContent).toContain("README.md");
  expect(relay.asked.filter((a) => a.op === "files").length).toBe(1);
});
