import { expect, test } from "vitest";
import { emptyConversation } from "./conversationModel";
import { applyClaude } from "./streamJson";

test("/clear's conversation_reset shows in the transcript, then the new session's start", () => {
  let c = emptyConversation("ws-1");
  c = applyClaude(c, { type: "system", subtype: "init", model: "m", session_id: "s1" }, 1);
  c = applyClaude(c, { type: "conversation_reset", trigger: "clear", session_id: "s1" }, 2);
  c = applyClaude(c, { type: "system", subtype: "init", model: "m", session_id: "s2" }, 3);
  expect(c.items.map((i) => (i.kind === "system" ? i.text : i.kind))).toEqual([
    "Session started · m",
    "Context cleared: Claude starts afresh from here",
    "Session started · m",
  ]);
});
