// @vitest-environment jsdom
import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, test, vi } from "vitest";
import { reduce } from "../lib/conversation";
import { type Conversation, emptyConversation } from "../lib/conversationModel";
import type { Incoming } from "../lib/protocol";
import { Messages } from "./Messages";
import { answerOf, PermissionCard, PlanCard, QuestionCard } from "./Prompts";
import { composerBlock, SessionView } from "./Session";
import { Sidebar } from "./Sidebar";
import { Truncated } from "./ToolViews";

afterEach(cleanup);

function conv(msgs: Incoming[]): Conversation {
  const snap: Incoming = {
    type: "messages_snapshot",
    workspaceId: "w",
    seq: 0,
    epoch: "e",
    status: "idle",
    messages: [],
    pending: [],
  };
  return [snap, ...msgs].reduce(
    (c, m) => reduce(c, { type: "receive", message: m }),
    emptyConversation("w"),
  );
}

describe("QuestionCard", () => {
  const item = {
    kind: "question" as const,
    key: "req:q1",
    seq: 1,
    requestId: "q1",
    questions: [
      {
        question: "Colour?",
        header: "Colour",
        options: [{ label: "Teal", description: "Calm" }, { label: "Orange" }],
        multiSelect: false,
      },
      {
        question: "Extras?",
        options: [{ label: "Dark mode" }, { label: "Sounds" }],
        multiSelect: true,
      },
    ],
  };

  test("pages through questions and submits labels, lists and free text", () => {
    const onAnswer = vi.fn(() => true);
    render(<QuestionCard item={item} onAnswer={onAnswer} />);
    expect(screen.getByText("Calm")).toBeTruthy();
    const next = screen.getByRole("button", { name: "Next" }) as HTMLButtonElement;
    expect(next.disabled).toBe(true);
    fireEvent.click(screen.getByRole("radio", { name: /Teal/ }));
    expect(next.disabled).toBe(false);
    fireEvent.click(next);
    expect(screen.getByText(/Question 2 of 2/)).toBeTruthy();
    fireEvent.click(screen.getByRole("checkbox", { name: /Dark mode/ }));
    fireEvent.change(screen.getByRole("textbox", { name: /Other answer to: Extras\?/ }), {
      target: { value: "Confetti" },
    });
    fireEvent.click(screen.getByRole("button", { name: "Submit answers" }));
    expect(onAnswer).toHaveBeenCalledWith({
      "Colour?": "Teal",
      "Extras?": ["Dark mode", "Confetti"],
    });
  });

  test("typing an other answer to a single-choice question selects it", () => {
    expect(answerOf(item.questions[0]!, { labels: [], other: "Purple", otherOn: true })).toBe(
      "Purple",
    );
    expect(answerOf(item.questions[0]!, { labels: ["Teal"], other: "", otherOn: false })).toBe(
      "Teal",
    );
    expect(answerOf(item.questions[0]!, { labels: [], other: "  ", otherOn: true })).toBeNull();
    expect(answerOf(item.questions[1]!, { labels: [], other: "", otherOn: false })).toBeNull();
  });

  test("says so when the answer could not be sent", () => {
    render(
      <QuestionCard item={{ ...item, questions: [item.questions[0]!] }} onAnswer={() => false} />,
    );
    fireEvent.click(screen.getByRole("radio", { name: /Orange/ }));
    fireEvent.click(screen.getByRole("button", { name: "Submit answers" }));
    expect(screen.getByRole("alert").textContent).toMatch(/Not connected/);
  });
});

describe("PermissionCard", () => {
  const item = {
    kind: "permission" as const,
    key: "req:p1",
    seq: 1,
    requestId: "p1",
    toolName: "Edit",
    toolInput: { file_path: "/src/a.py", old_string: "x = 1\ny = 2", new_string: "x = 1\ny = 3" },
  };

  test("shows the tool, the path and a diff, and denies with a reason", () => {
    const onDecide = vi.fn(() => true);
    render(<PermissionCard item={item} onDecide={onDecide} />);
    expect(screen.getByRole("heading").textContent).toContain("Edit");
    expect(screen.getByRole("figure", { name: "Changes to /src/a.py" }).textContent).toContain(
      "y = 3",
    );
    fireEvent.change(screen.getByRole("textbox", { name: /Reason/ }), {
      target: { value: "wrong file" },
    });
    fireEvent.click(screen.getByRole("button", { name: "Deny" }));
    expect(onDecide).toHaveBeenCalledWith(false, "wrong file");
  });

  test("allows without a message, and shows a Bash command", () => {
    const onDecide = vi.fn(() => true);
    render(
      <PermissionCard
        item={{
          ...item,
          toolName: "Bash",
          toolInput: { command: "rm -rf build", description: "Clean" },
        }}
        onDecide={onDecide}
      />,
    );
    expect(screen.getAllByText(/rm -rf build/).length).toBeGreaterThan(0);
    fireEvent.click(screen.getByRole("button", { name: "Allow" }));
    expect(onDecide).toHaveBeenCalledWith(true, undefined);
  });
});

describe("Messages", () => {
  test("markdown renders, raw HTML from the model does not", () => {
    const c = conv([
      {
        type: "claude_message",
        workspaceId: "w",
        seq: 1,
        epoch: "e",
        data: {
          type: "assistant",
          message: {
            id: "m",
            content: [
              {
                type: "text",
                text: "**bold** <img src=x onerror=alert(1)><script>alert(2)</script>\n\n```python\nprint('hi')\n```",
              },
            ],
          },
        },
      },
    ]);
    const { container } = render(<Messages c={c} me="u" onRetry={() => {}} />);
    expect(container.querySelector("strong")?.textContent).toBe("bold");
    expect(container.querySelector("img")).toBeNull();
    expect(container.querySelector("script")).toBeNull();
    expect(container.querySelector("code.hljs")?.textContent).toBe("print('hi')");
  });

  test("a tool card shows input and result; the result line shows duration, tokens and cost", () => {
    const c = conv([
      {
        type: "claude_message",
        workspaceId: "w",
        seq: 1,
        epoch: "e",
        data: {
          type: "assistant",
          message: {
            id: "m",
            content: [{ type: "tool_use", id: "t1", name: "Bash", input: { command: "ls" } }],
          },
        },
      },
      {
        type: "claude_message",
        workspaceId: "w",
        seq: 2,
        epoch: "e",
        data: {
          type: "user",
          message: { content: [{ type: "tool_result", tool_use_id: "t1", content: "a.txt" }] },
        },
      },
      {
        type: "claude_message",
        workspaceId: "w",
        seq: 3,
        epoch: "e",
        data: {
          type: "result",
          subtype: "success",
          is_error: false,
          duration_ms: 2300,
          total_cost_usd: 0.02,
          usage: { input_tokens: 5, output_tokens: 7 },
        },
      },
    ]);
    render(<Messages c={c} me="u" onRetry={() => {}} />);
    const card = screen.getByTestId("tool-card");
    expect(card.textContent).toContain("Success");
    expect(card.textContent).toContain("a.txt");
    expect(screen.getByTestId("result-line").textContent).toBe(
      "Done· 2.3 s· 5 in · 7 out tokens· $0.02",
    );
  });

  test("resolved prompts say who decided", () => {
    const c = conv([
      {
        type: "permission_request",
        workspaceId: "w",
        seq: 1,
        epoch: "e",
        requestId: "p",
        toolName: "Bash",
        toolInput: {},
      },
      {
        type: "request_resolved",
        workspaceId: "w",
        seq: 2,
        epoch: "e",
        requestId: "p",
        resolution: "denied",
        userId: "me",
      },
    ]);
    render(<Messages c={c} me="me" onRetry={() => {}} />);
    expect(screen.getByTestId("prompt-record").textContent).toBe(
      "Permission for Bash: denied by you",
    );
  });
});

describe("Truncated", () => {
  test("long output is cut with Show more", () => {
    render(<Truncated text={"x".repeat(50)} preview={10} limit={40} />);
    expect(screen.getByText(/^x{10}…$/)).toBeTruthy();
    fireEvent.click(screen.getByRole("button", { name: /Show more/ }));
    expect(screen.getByText(/^x{40}$/)).toBeTruthy();
    expect(screen.getByText(/Cut at 40 characters/)).toBeTruthy();
  });
});

describe("composer", () => {
  test("disabled with a reason while the VM is offline", () => {
    const off = reduce(conv([]), {
      type: "receive",
      message: { type: "status", workspaceId: "w", status: "offline" },
    });
    expect(composerBlock(off)).toMatch(/offline/);
    expect(composerBlock(conv([]))).toBeNull();
    expect(composerBlock(undefined)).toMatch(/Loading/);
  });

  test("Enter sends, Shift+Enter does not", () => {
    const store = {
      open: vi.fn(),
      close: vi.fn(),
      sendUserMessage: vi.fn(),
      interrupt: vi.fn(),
      retry: vi.fn(),
      answer: vi.fn(),
      decide: vi.fn(),
      dismissNotice: vi.fn(),
    };
    const ws = {
      id: "w",
      name: "demo",
      issue: { url: "https://github.com/a/b/issues/1", owner: "a", repo: "b", number: 1 },
      status: "idle",
      createdAt: "",
      updatedAt: "",
    };
    // @ts-expect-error: a partial store is enough for the view
    render(<SessionView workspace={ws} c={conv([])} store={store} me="u" onBack={() => {}} />);
    const box = screen.getByRole("textbox", { name: "Message to Claude" });
    fireEvent.change(box, { target: { value: "line one" } });
    fireEvent.keyDown(box, { key: "Enter", shiftKey: true });
    expect(store.sendUserMessage).not.toHaveBeenCalled();
    fireEvent.keyDown(box, { key: "Enter" });
    expect(store.sendUserMessage).toHaveBeenCalledWith("w", "line one");
  });
});

describe("Sidebar", () => {
  const ws = (id: string, status: string) => ({
    id,
    name: `acme/w#${id}`,
    status,
    createdAt: "",
    updatedAt: "",
    issue: {
      url: `https://github.com/acme/w/issues/${id}`,
      owner: "acme",
      repo: "w",
      number: Number(id),
    },
  });
  const props = {
    selected: null,
    loadError: null,
    onSelect: () => {},
    onCreate: async () => {},
    onDelete: async () => {},
  };

  test("groups by status, and keeps the keyboard focus when an item changes group", () => {
    const list = [ws("1", "running"), ws("2", "idle")];
    const { rerender } = render(<Sidebar {...props} workspaces={list} statuses={{}} />);
    expect(screen.getAllByRole("heading").map((h) => h.textContent)).toEqual(["Working", "Other"]);
    const del = screen.getByRole("button", { name: "Delete acme/w#1" });
    del.focus();
    fireEvent.focus(del);
    rerender(<Sidebar {...props} workspaces={list} statuses={{ "1": "waiting_for_input" }} />);
    expect(screen.getAllByRole("heading").map((h) => h.textContent)).toEqual([
      "Waiting for you",
      "Other",
    ]);
    expect(document.activeElement).toBe(screen.getByRole("button", { name: "Delete acme/w#1" }));
  });

  test("an issue URL is checked inline before it is sent", () => {
    const onCreate = vi.fn(async () => {});
    render(<Sidebar {...props} onCreate={onCreate} workspaces={[]} statuses={{}} />);
    const field = screen.getByLabelText("New workspace from a GitHub issue");
    fireEvent.change(field, { target: { value: "https://github.com/acme/w/pull/3" } });
    fireEvent.click(screen.getByRole("button", { name: "Create" }));
    expect(screen.getByRole("alert").textContent).toBe(
      "Expected https://github.com/OWNER/REPO/issues/NUMBER",
    );
    expect(onCreate).not.toHaveBeenCalled();
  });
});

describe("PlanCard", () => {
  const item = {
    kind: "permission" as const,
    key: "req:p2",
    seq: 2,
    requestId: "p2",
    toolName: "ExitPlanMode",
    toolInput: { plan: "# The plan\n\n1. **Rename** `a`" },
  };

  test("renders the plan as markdown and approves", () => {
    const onDecide = vi.fn(() => true);
    render(<PlanCard item={item} onDecide={onDecide} />);
    const card = screen.getByTestId("plan-card");
    expect(card.querySelector("h1")?.textContent).toBe("The plan");
    expect(card.querySelector("strong")?.textContent).toBe("Rename");
    fireEvent.click(screen.getByRole("button", { name: "Approve plan" }));
    expect(onDecide).toHaveBeenCalledWith(true, undefined);
  });

  test("sends the plan back with the comment", () => {
    const onDecide = vi.fn(() => true);
    render(<PlanCard item={{ ...item, toolInput: {} }} onDecide={onDecide} />);
    fireEvent.change(screen.getByRole("textbox", { name: /send the plan back/ }), {
      target: { value: "split step 1" },
    });
    fireEvent.click(screen.getByRole("button", { name: "Keep planning" }));
    expect(onDecide).toHaveBeenCalledWith(false, "split step 1");
  });
});
