// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { StrictMode } from "react";
import { afterEach, expect, test } from "vitest";
import { reduce } from "../lib/conversation";
import { type Conversation, emptyConversation } from "../lib/conversationModel";
import { heldKey } from "../lib/held";
import type { Incoming } from "../lib/protocol";
import { HeldMessages, useHeldMessages } from "./HeldMessages";

afterEach(() => {
  cleanup();
  sessionStorage.clear();
});

function conv(status: string): Conversation {
  const snap = {
    type: "messages_snapshot",
    workspaceId: "w",
    seq: 0,
    epoch: "e",
    status,
    messages: [],
    pending: [],
  } as Incoming;
  return reduce(emptyConversation("w"), { type: "receive", message: snap });
}

function Harness({ c, sent }: { c: Conversation; sent: string[] }) {
  const q = useHeldMessages("w", c, (t) => {
    sent.push(t);
    return `cid${sent.length}`;
  });
  return (
    <>
      <HeldMessages q={q} />
      <button type="button" onClick={() => q.submit("typed")}>
        submit
      </button>
    </>
  );
}

test("held while running, editable and removable, sent once when the turn is over", () => {
  const sent: string[] = [];
  const { rerender } = render(<Harness c={conv("running")} sent={sent} />);
  fireEvent.click(screen.getByText("submit"));
  fireEvent.click(screen.getByText("submit"));
  expect(sent).toEqual([]);
  expect(screen.getAllByTestId("held-message")).toHaveLength(2);
  fireEvent.click(screen.getByRole("button", { name: "Edit queued message 1" }));
  const box = screen.getByRole("textbox", { name: "Edit queued message 1" });
  fireEvent.change(box, { target: { value: "changed" } });
  fireEvent.keyDown(box, { key: "Enter" });
  fireEvent.click(screen.getByRole("button", { name: "Remove queued message 2" }));
  expect(JSON.parse(sessionStorage.getItem(heldKey("w")) ?? "[]")).toMatchObject([
    { text: "changed" },
  ]);
  act(() => rerender(<Harness c={conv("idle")} sent={sent} />));
  expect(sent).toEqual(["changed"]);
  expect(screen.queryByTestId("held-message")).toBeNull();
  expect(sessionStorage.getItem(heldKey("w"))).toBeNull();
});

test("a queue found after a reload goes out once, also under StrictMode's double effects", () => {
  sessionStorage.setItem(heldKey("w"), JSON.stringify([{ id: "a", text: "from before" }]));
  const sent: string[] = [];
  render(
    <StrictMode>
      <Harness c={conv("idle")} sent={sent} />
    </StrictMode>,
  );
  expect(sent).toEqual(["from before"]);
});

test("the focus stays in the queue: Edit after saving, the next row after a remove", () => {
  const sent: string[] = [];
  render(
    <>
      <Harness c={conv("running")} sent={sent} />
      <textarea id="composer-input" aria-label="composer" />
    </>,
  );
  for (let i = 0; i < 3; i++) fireEvent.click(screen.getByText("submit"));
  const edit = screen.getByRole("button", { name: "Edit queued message 2" });
  edit.focus();
  fireEvent.click(edit);
  const box = screen.getByRole("textbox", { name: "Edit queued message 2" });
  expect(document.activeElement).toBe(box);
  fireEvent.keyDown(box, { key: "Enter" });
  expect(document.activeElement).toBe(
    screen.getByRole("button", { name: "Edit queued message 2" }),
  );

  // Removing 2 of 3: the focus goes to the row that took its place.
  const remove2 = screen.getByRole("button", { name: "Remove queued message 2" });
  remove2.focus();
  fireEvent.click(remove2);
  expect(document.activeElement).toBe(
    screen.getByRole("button", { name: "Remove queued message 2" }),
  );
  // The last row: to the one before it; the last of all: to the composer.
  fireEvent.click(screen.getByRole("button", { name: "Remove queued message 2" }));
  expect(document.activeElement).toBe(
    screen.getByRole("button", { name: "Remove queued message 1" }),
  );
  fireEvent.click(screen.getByRole("button", { name: "Remove queued message 1" }));
  expect(document.activeElement).toBe(screen.getByRole("textbox", { name: "composer" }));
});
