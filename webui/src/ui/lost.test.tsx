// @vitest-environment jsdom
import { cleanup, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, test, vi } from "vitest";
import type { Workspace } from "../lib/api";
import { reduce } from "../lib/conversation";
import { emptyConversation } from "../lib/conversationModel";
import type { Store } from "../lib/store";
import { SessionView } from "./Session";

afterEach(cleanup);

const fake = {
  open: vi.fn(),
  close: vi.fn(),
  sendUserMessage: vi.fn(),
  interrupt: vi.fn(),
  retry: vi.fn(),
  answer: vi.fn(),
  decide: vi.fn(),
  dismissNotice: vi.fn(),
};
// A partial store is enough for the view.
const store = fake as unknown as Store;

function workspace(lostAt?: string): Workspace {
  return {
    id: "w",
    name: "demo",
    issue: { url: "https://github.com/a/b/issues/1", owner: "a", repo: "b", number: 1 },
    status: "idle",
    lostAt,
    createdAt: "",
    updatedAt: "",
  };
}

const c = reduce(emptyConversation("w"), {
  type: "receive",
  message: {
    type: "messages_snapshot",
    workspaceId: "w",
    seq: 0,
    epoch: "e2",
    status: "idle",
    messages: [],
    pending: [],
  },
});

describe("a workspace whose VM was given up on", () => {
  test("says plainly that its conversation started over on another VM", () => {
    render(
      <SessionView
        workspace={workspace("2026-12-01T09:00:00Z")}
        c={c}
        store={store}
        me="u"
        onBack={() => {}}
      />,
    );
    expect(screen.getByText(/given up on/).textContent).toMatch(
      /given up on at .*started over on another\s+VM/,
    );
  });

  test("and nothing is said of one that was not", () => {
    render(<SessionView workspace={workspace()} c={c} store={store} me="u" onBack={() => {}} />);
    expect(screen.queryByText(/started over/)).toBeNull();
  });
});
