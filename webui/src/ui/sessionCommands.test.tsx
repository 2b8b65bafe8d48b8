// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, expect, test, vi } from "vitest";
import { reduce } from "../lib/conversation";
import { emptyConversation } from "../lib/conversationModel";
import { sessionKey } from "../lib/sessions";
import type { Store } from "../lib/store";
import { SessionView } from "./Session";

afterEach(cleanup);

const ws = {
  id: "w",
  name: "demo",
  issue: { url: "https://github.com/a/b/issues/1", owner: "a", repo: "b", number: 1 },
  status: "idle",
  createdAt: "",
  updatedAt: "",
};

test.each([
  ["main", undefined],
  ["another session", "s_0123456789abcdef0123456789abcdef"],
])("the composer's palette asks for the commands of the session shown (%s)", async (_, sid) => {
  const c = reduce(emptyConversation("w", sid), {
    type: "receive",
    message: {
      type: "messages_snapshot",
      workspaceId: "w",
      ...(sid ? { sessionId: sid } : {}),
      seq: 0,
      epoch: "e",
      status: "idle",
      messages: [],
      pending: [],
    },
  });
  const store = {
    open: vi.fn(),
    close: vi.fn(),
    sendUserMessage: vi.fn(),
    interrupt: vi.fn(),
  } as unknown as Store & { sendUserMessage: ReturnType<typeof vi.fn> };
  const request = vi.fn((_target: string, op: string) =>
    Promise.resolve(
      op === "session_commands"
        ? { commands: [{ name: "shout", description: "Capitals", argumentHint: "<text>" }] }
        : { models: [] },
    ),
  );
  render(
    <SessionView
      workspace={ws}
      c={c}
      store={store}
      me="u"
      onBack={() => {}}
      requester={{ request }}
      sessionId={sid}
    />,
  );
  const box = screen.getByRole("textbox", { name: "Message to Claude" }) as HTMLTextAreaElement;
  fireEvent.change(box, { target: { value: "/" } });
  await act(async () => {});
  expect(request).toHaveBeenCalledWith(sessionKey("w", sid), "session_commands");
  fireEvent.keyDown(box, { key: "Enter" });
  expect(box.value).toBe("/shout ");
  expect(store.sendUserMessage).not.toHaveBeenCalled();
});
