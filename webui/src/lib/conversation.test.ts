import { describe, expect, test } from "vitest";
import { reduce } from "./conversation";
import {
  type Action,
  type AssistantItem,
  assistantBlocks,
  type Conversation,
  emptyConversation,
  openPrompts,
} from "./conversationModel";
import type { Incoming } from "./protocol";

const WS = "ws-1";
const EPOCH = "e1";

/** A sequenced claude_message carrying one stream-json line. */
function claude(seq: number, data: Record<string, unknown>, epoch = EPOCH): Incoming {
  return { type: "claude_message", workspaceId: WS, seq, epoch, data };
}
function ev(seq: number, event: Record<string, unknown>): Incoming {
  return claude(seq, { type: "stream_event", event, parent_tool_use_id: null });
}
/** The stream-json lines of one assistant text reply, deltas then the whole message. */
function textTurn(start: number, id: string, parts: string[]): Incoming[] {
  const out: Incoming[] = [
    ev(start, { type: "message_start", message: { id, role: "assistant", content: [] } }),
    ev(start + 1, {
      type: "content_block_start",
      index: 0,
      content_block: { type: "text", text: "" },
    }),
  ];
  let seq = start + 2;
  for (const p of parts) {
    out.push(
      ev(seq++, { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: p } }),
    );
  }
  out.push(ev(seq++, { type: "content_block_stop", index: 0 }));
  out.push(ev(seq++, { type: "message_stop" }));
  out.push(
    claude(seq++, {
      type: "assistant",
      message: { id, role: "assistant", content: [{ type: "text", text: parts.join("") }] },
    }),
  );
  return out;
}
function snapshot(
  seq: number,
  messages: Incoming[],
  extra: Record<string, unknown> = {},
): Incoming {
  return {
    type: "messages_snapshot",
    workspaceId: WS,
    seq,
    epoch: EPOCH,
    requestId: "snap",
    status: "idle",
    messages,
    pending: [],
    ...extra,
  };
}
function run(state: Conversation, msgs: Incoming[]): Conversation {
  return msgs.reduce((s, m) => reduce(s, { type: "receive", message: m }), state);
}
function loaded(): Conversation {
  return run(emptyConversation(WS), [snapshot(0, [])]);
}
function texts(c: Conversation): string[] {
  return c.items.flatMap((i) => {
    if (i.kind === "user") return [`user:${i.text}`];
    if (i.kind === "assistant") {
      return [
        `assistant:${assistantBlocks(i)
          .map((b) => (b.kind === "text" ? b.text : b.kind))
          .join("|")}`,
      ];
    }
    return [i.kind];
  });
}

describe("snapshot", () => {
  test("an empty snapshot loads the conversation at its seq and epoch", () => {
    const c = run(emptyConversation(WS), [snapshot(0, [], { status: "starting" })]);
    expect(c.loaded).toBe(true);
    expect(c.epoch).toBe(EPOCH);
    expect(c.lastSeq).toBe(0);
    expect(c.status).toBe("starting");
    expect(c.items).toEqual([]);
  });

  test("compacted messages rebuild the conversation, and the seq is the snapshot's", () => {
    const msgs: Incoming[] = [
      {
        type: "user_message",
        workspaceId: WS,
        seq: 1,
        epoch: EPOCH,
        clientMessageId: "c1",
        userId: "u1",
        text: "hi",
      },
      // stream events 2..6 were compacted away; only the complete message remains.
      claude(7, {
        type: "assistant",
        message: { id: "m1", content: [{ type: "text", text: "Hello there" }] },
      }),
      claude(8, {
        type: "result",
        subtype: "success",
        is_error: false,
        duration_ms: 1200,
        total_cost_usd: 0.0123,
        usage: { input_tokens: 10, output_tokens: 20 },
      }),
    ];
    const c = run(emptyConversation(WS), [snapshot(9, msgs)]);
    expect(texts(c)).toEqual(["user:hi", "assistant:Hello there", "result"]);
    expect(c.lastSeq).toBe(9);
    const result = c.items[2];
    expect(result).toMatchObject({
      kind: "result",
      durationMs: 1200,
      costUsd: 0.0123,
      inputTokens: 10,
      outputTokens: 20,
    });
  });

  test("a message still streaming in the snapshot keeps streaming with live deltas", () => {
    const turn = textTurn(1, "m1", ["Hel", "lo", " world"]);
    // snapshot up to the first delta (seq 3), then the live rest.
    const c0 = run(emptyConversation(WS), [snapshot(3, turn.slice(0, 3), { status: "running" })]);
    expect(texts(c0)).toEqual(["assistant:Hel"]);
    const c = run(c0, turn.slice(3));
    expect(texts(c)).toEqual(["assistant:Hello world"]);
    expect((c.items[0] as AssistantItem).complete).toBe(true);
  });

  test("pending prompts of the snapshot are open, resolved ones closed", () => {
    const q = {
      type: "user_question",
      workspaceId: WS,
      seq: 1,
      epoch: EPOCH,
      requestId: "q1",
      questions: [
        {
          question: "Which?",
          options: [{ label: "A" }, { label: "B", description: "bee" }],
          multiSelect: false,
        },
      ],
    };
    const p = {
      type: "permission_request",
      workspaceId: WS,
      seq: 2,
      epoch: EPOCH,
      requestId: "p1",
      toolName: "Bash",
      toolInput: { command: "rm -rf x" },
    };
    const r = {
      type: "request_resolved",
      workspaceId: WS,
      seq: 3,
      epoch: EPOCH,
      requestId: "p1",
      resolution: "denied",
      userId: "u2",
    };
    const c = run(emptyConversation(WS), [
      snapshot(3, [q, p, r], { pending: [q], status: "waiting_for_input" }),
    ]);
    const open = openPrompts(c);
    expect(open.map((x) => x.requestId)).toEqual(["q1"]);
    expect(open[0]).toMatchObject({
      kind: "question",
      questions: [
        {
          question: "Which?",
          options: [{ label: "A" }, { label: "B", description: "bee" }],
          multiSelect: false,
        },
      ],
    });
    expect(c.items[1]).toMatchObject({
      kind: "permission",
      resolution: "denied",
      resolvedBy: "u2",
    });
  });

  test("a pending prompt missing from the messages is still shown", () => {
    const q = {
      type: "user_question",
      workspaceId: WS,
      seq: 5,
      epoch: EPOCH,
      requestId: "q9",
      questions: [{ question: "Go?", options: [{ label: "yes" }] }],
    };
    const c = run(emptyConversation(WS), [snapshot(5, [], { pending: [q] })]);
    expect(openPrompts(c).map((x) => x.requestId)).toEqual(["q9"]);
  });

  test("a second snapshot replaces the conversation instead of adding to it", () => {
    const msgs = textTurn(1, "m1", ["a", "b"]);
    const once = run(emptyConversation(WS), [snapshot(7, msgs)]);
    const twice = run(once, [snapshot(7, msgs)]);
    expect(texts(twice)).toEqual(["assistant:ab"]);
    expect(twice.items).toHaveLength(1);
  });

  test("messages of another workspace are ignored", () => {
    const c = run(loaded(), [{ ...textTurn(1, "m1", ["x"])[0]!, workspaceId: "other" }]);
    expect(c.items).toEqual([]);
    expect(c.lastSeq).toBe(0);
  });
});

describe("live stream", () => {
  test("text deltas render before the message is complete", () => {
    const turn = textTurn(1, "m1", ["The ", "answer ", "is 42."]);
    let c = loaded();
    const seen: string[] = [];
    for (const m of turn) {
      c = run(c, [m]);
      const a = c.items[0];
      if (a?.kind === "assistant")
        seen.push(
          assistantBlocks(a)
            .map((b) => (b.kind === "text" ? b.text : ""))
            .join(""),
        );
    }
    expect(seen).toContain("The ");
    expect(seen).toContain("The answer ");
    expect(seen.at(-1)).toBe("The answer is 42.");
    expect(c.lastSeq).toBe(turn.length);
  });

  test("thinking and tool_use stream, and the tool result attaches by id", () => {
    const msgs: Incoming[] = [
      ev(1, { type: "message_start", message: { id: "m1" } }),
      ev(2, {
        type: "content_block_start",
        index: 0,
        content_block: { type: "thinking", thinking: "" },
      }),
      ev(3, {
        type: "content_block_delta",
        index: 0,
        delta: { type: "thinking_delta", thinking: "Let me " },
      }),
      ev(4, {
        type: "content_block_delta",
        index: 0,
        delta: { type: "thinking_delta", thinking: "look." },
      }),
      ev(5, { type: "content_block_stop", index: 0 }),
      ev(6, {
        type: "content_block_start",
        index: 1,
        content_block: { type: "tool_use", id: "t1", name: "Bash", input: {} },
      }),
      ev(7, {
        type: "content_block_delta",
        index: 1,
        delta: { type: "input_json_delta", partial_json: '{"comm' },
      }),
      ev(8, {
        type: "content_block_delta",
        index: 1,
        delta: { type: "input_json_delta", partial_json: 'and":"ls"}' },
      }),
    ];
    let c = run(loaded(), msgs);
    let blocks = assistantBlocks(c.items[0] as AssistantItem);
    expect(blocks[0]).toEqual({ kind: "thinking", text: "Let me look." });
    expect(blocks[1]).toMatchObject({
      kind: "tool_use",
      name: "Bash",
      partialJson: '{"command":"ls"}',
      input: undefined,
    });
    c = run(c, [ev(9, { type: "content_block_stop", index: 1 })]);
    blocks = assistantBlocks(c.items[0] as AssistantItem);
    expect(blocks[1]).toMatchObject({ kind: "tool_use", id: "t1", input: { command: "ls" } });
    c = run(c, [
      claude(10, {
        type: "user",
        message: {
          role: "user",
          content: [
            {
              type: "tool_result",
              tool_use_id: "t1",
              content: [{ type: "text", text: "a.txt\nb.txt" }],
              is_error: false,
            },
          ],
        },
      }),
    ]);
    expect(c.toolResults.t1).toEqual({ content: "a.txt\nb.txt", isError: false });
  });

  test("one assistant line per content block adds up, complete blocks win over partial ones", () => {
    const msgs: Incoming[] = [
      ev(1, { type: "message_start", message: { id: "m1" } }),
      ev(2, { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }),
      ev(3, {
        type: "content_block_delta",
        index: 0,
        delta: { type: "text_delta", text: "Partial" },
      }),
      claude(4, {
        type: "assistant",
        message: { id: "m1", content: [{ type: "text", text: "Whole text" }] },
      }),
      ev(5, {
        type: "content_block_start",
        index: 1,
        content_block: { type: "tool_use", id: "t1", name: "Read", input: {} },
      }),
      claude(6, {
        type: "assistant",
        message: {
          id: "m1",
          content: [{ type: "tool_use", id: "t1", name: "Read", input: { file_path: "/a" } }],
        },
      }),
    ];
    const c = run(loaded(), msgs);
    expect(c.items).toHaveLength(1);
    const blocks = assistantBlocks(c.items[0] as AssistantItem);
    expect(blocks).toEqual([
      { kind: "text", text: "Whole text" },
      { kind: "tool_use", id: "t1", name: "Read", input: { file_path: "/a" }, partialJson: "" },
    ]);
  });

  test("the result line carries duration, cost and tokens and ends streaming", () => {
    const turn = textTurn(1, "m1", ["x"]).slice(0, 3); // no message_stop
    let c = run(loaded(), turn);
    expect((c.items[0] as AssistantItem).complete).toBe(false);
    c = run(c, [
      claude(4, {
        type: "result",
        subtype: "success",
        is_error: false,
        duration_ms: 2500,
        total_cost_usd: 0.5,
        usage: { input_tokens: 3, cache_read_input_tokens: 7, output_tokens: 11 },
      }),
    ]);
    expect((c.items[0] as AssistantItem).complete).toBe(true);
    expect(c.items[1]).toMatchObject({
      kind: "result",
      durationMs: 2500,
      costUsd: 0.5,
      inputTokens: 10,
      outputTokens: 11,
    });
  });

  test("system init shows the session start once per session", () => {
    const init = { type: "system", subtype: "init", model: "demo", session_id: "s1" };
    const c = run(loaded(), [claude(1, init), claude(2, init)]);
    expect(c.items).toHaveLength(1);
    expect(c.items[0]).toMatchObject({ kind: "system", text: "Session started · demo" });
  });

  test("an interrupted turn says so, in either shape of user line", () => {
    const c = run(loaded(), [
      ...textTurn(1, "m1", ["half"]).slice(0, 3),
      claude(4, {
        type: "user",
        message: {
          role: "user",
          content: [{ type: "text", text: "[Request interrupted by user]" }],
        },
      }),
      claude(5, {
        type: "user",
        message: { role: "user", content: "[Request interrupted by user for tool use]" },
      }),
    ]);
    expect(texts(c)).toEqual(["assistant:half", "system", "system"]);
    expect((c.items[0] as AssistantItem).complete).toBe(true);
  });

  test("status messages set status, and an error status shows its detail", () => {
    let c = run(loaded(), [
      { type: "status", workspaceId: WS, seq: 1, epoch: EPOCH, status: "running" },
    ]);
    expect(c.status).toBe("running");
    c = run(c, [
      {
        type: "status",
        workspaceId: WS,
        seq: 2,
        epoch: EPOCH,
        status: "error",
        detail: "CLI crashed",
      },
    ]);
    expect(c.status).toBe("error");
    expect(c.items.at(-1)).toMatchObject({ kind: "error", text: "CLI crashed" });
  });

  test("deltas of a message never started are dropped, not crashing", () => {
    const c = run(loaded(), [
      ev(1, {
        type: "content_block_delta",
        index: 0,
        delta: { type: "text_delta", text: "orphan" },
      }),
    ]);
    expect(c.items).toEqual([]);
    expect(c.lastSeq).toBe(1);
  });

  test("malformed data is ignored", () => {
    const c = run(loaded(), [
      { type: "claude_message", workspaceId: WS, seq: 1, epoch: EPOCH, data: "not an object" },
      claude(2, { type: "assistant" }),
      claude(3, { type: "stream_event", event: 5 }),
    ]);
    expect(c.items).toEqual([]);
    expect(c.lastSeq).toBe(3);
  });
});

describe("order, duplicates and resume", () => {
  test("a message seen twice is applied once", () => {
    const turn = textTurn(1, "m1", ["a", "b", "c"]);
    const c = run(loaded(), [...turn.slice(0, 4), ...turn.slice(2, 4), ...turn.slice(2)]);
    expect(texts(c)).toEqual(["assistant:abc"]);
  });

  test("a replay after lastSeq continues exactly where the view was", () => {
    const turn = textTurn(1, "m1", ["one ", "two ", "three"]);
    const before = run(loaded(), turn.slice(0, 4));
    // Reconnect: subscribed(replay) then the relay replays from an older point too.
    const after = run(before, [
      { type: "subscribed", workspaceId: WS, epoch: EPOCH, mode: "replay" },
      ...turn.slice(1),
    ]);
    expect(texts(after)).toEqual(["assistant:one two three"]);
    expect(after.resync).toBeNull();
  });

  test("a gap asks for a resync and is not applied", () => {
    const turn = textTurn(1, "m1", ["a", "b"]);
    const c = run(loaded(), [turn[0]!, turn[3]!]);
    expect(c.resync).toBe("gap");
    expect(c.lastSeq).toBe(1);
    const again = reduce(c, { type: "resubscribe" });
    expect(again.resync).toBeNull();
  });

  test("a new epoch asks for a resync; the snapshot of the new epoch starts over", () => {
    const c = run(loaded(), textTurn(1, "m1", ["old"]));
    const seen = run(c, [{ ...claude(1, { type: "system", subtype: "init" }), epoch: "e2" }]);
    expect(seen.resync).toBe("epoch");
    expect(texts(seen)).toEqual(["assistant:old"]);
    const fresh = run(reduce(seen, { type: "resubscribe" }), [
      {
        ...snapshot(1, [{ ...claude(1, { type: "system", subtype: "init" }), epoch: "e2" }]),
        epoch: "e2",
      },
    ]);
    expect(fresh.epoch).toBe("e2");
    expect(texts(fresh)).toEqual(["system"]);
    expect(fresh.lastSeq).toBe(1);
  });

  test("subscribed in replay mode with another epoch asks for a resync", () => {
    const c = run(loaded(), [{ type: "subscribed", workspaceId: WS, epoch: "e2", mode: "replay" }]);
    expect(c.resync).toBe("epoch");
  });

  test("live messages before the first snapshot wait for it", () => {
    const c = run(emptyConversation(WS), [textTurn(1, "m1", ["x"])[0]!]);
    expect(c.items).toEqual([]);
    expect(c.loaded).toBe(false);
  });
});

describe("prompts", () => {
  const question: Incoming = {
    type: "user_question",
    workspaceId: WS,
    seq: 1,
    epoch: EPOCH,
    requestId: "q1",
    questions: [
      {
        question: "Pick",
        header: "Choice",
        options: [{ label: "A" }, { label: "B" }],
        multiSelect: true,
      },
    ],
  };
  const permission: Incoming = {
    type: "permission_request",
    workspaceId: WS,
    seq: 2,
    epoch: EPOCH,
    requestId: "p1",
    toolName: "Edit",
    toolUseId: "t1",
    toolInput: { file_path: "/x", old_string: "a", new_string: "b" },
  };

  test("questions and permissions open, and close on request_resolved with who decided", () => {
    let c = run(loaded(), [question, permission]);
    expect(openPrompts(c).map((p) => p.kind)).toEqual(["question", "permission"]);
    c = run(c, [
      {
        type: "request_resolved",
        workspaceId: WS,
        seq: 3,
        epoch: EPOCH,
        requestId: "q1",
        resolution: "answered",
        userId: "u7",
      },
    ]);
    expect(openPrompts(c).map((p) => p.requestId)).toEqual(["p1"]);
    expect(c.items[0]).toMatchObject({ resolution: "answered", resolvedBy: "u7" });
    c = run(c, [
      {
        type: "request_resolved",
        workspaceId: WS,
        seq: 4,
        epoch: EPOCH,
        requestId: "p1",
        resolution: "allowed",
        userId: "u1",
      },
    ]);
    expect(openPrompts(c)).toEqual([]);
  });

  test("an already_resolved error shows on the prompt it refers to", () => {
    const c = run(loaded(), [
      question,
      {
        type: "error",
        workspaceId: WS,
        code: "already_resolved",
        message: "already answered",
        ref: "q1",
      },
    ]);
    expect(c.items[0]).toMatchObject({ error: "already answered" });
  });

  test("resolving an unknown request changes nothing but the seq", () => {
    const c = run(loaded(), [
      {
        type: "request_resolved",
        workspaceId: WS,
        seq: 1,
        epoch: EPOCH,
        requestId: "nope",
        resolution: "answered",
      },
    ]);
    expect(c.items).toEqual([]);
    expect(c.lastSeq).toBe(1);
  });
});

describe("offline and online", () => {
  test("the relay's offline status marks the VM offline; its next message brings it back", () => {
    let c = run(loaded(), [{ type: "status", workspaceId: WS, status: "offline" }]);
    expect(c.online).toBe(false);
    expect(c.status).toBe("offline");
    expect(c.lastSeq).toBe(0); // the relay's word is not part of the log
    c = run(c, [{ type: "status", workspaceId: WS, seq: 1, epoch: EPOCH, status: "idle" }]);
    expect(c.online).toBe(true);
    expect(c.status).toBe("idle");
  });

  test("a resubscribe answered without offline means the VM is back, with its last status", () => {
    let c = run(loaded(), [
      { type: "status", workspaceId: WS, seq: 1, epoch: EPOCH, status: "waiting_for_input" },
      { type: "status", workspaceId: WS, status: "offline" },
    ]);
    c = run(c, [
      { type: "subscribed", workspaceId: WS, epoch: EPOCH, mode: "replay" },
      { type: "status", workspaceId: WS, status: "offline" },
    ]);
    expect(c.online).toBe(false);
    c = run(c, [{ type: "subscribed", workspaceId: WS, epoch: EPOCH, mode: "replay" }]);
    expect(c.online).toBe(true);
    expect(c.status).toBe("waiting_for_input");
  });

  test("a snapshot taken while offline says offline", () => {
    const c = run(emptyConversation(WS), [snapshot(0, [], { status: "offline" })]);
    expect(c.online).toBe(false);
  });
});

describe("user messages and the outbox", () => {
  const echo = (seq: number, id: string, text: string): Incoming => ({
    type: "user_message",
    workspaceId: WS,
    seq,
    epoch: EPOCH,
    clientMessageId: id,
    userId: "u1",
    text,
  });
  const act = (c: Conversation, ...actions: Action[]) => actions.reduce(reduce, c);

  test("a queued message is unsent, then sent, then gone from the outbox once echoed", () => {
    let c = act(loaded(), { type: "queue", clientMessageId: "c1", text: "hello" });
    expect(c.outbox).toEqual([{ clientMessageId: "c1", text: "hello", state: "unsent" }]);
    c = act(c, { type: "sent", clientMessageId: "c1" });
    expect(c.outbox[0]?.state).toBe("sent");
    c = run(c, [echo(1, "c1", "hello")]);
    expect(c.outbox).toEqual([]);
    expect(texts(c)).toEqual(["user:hello"]);
  });

  test("queueing the same id twice keeps one entry", () => {
    const c = act(
      loaded(),
      { type: "queue", clientMessageId: "c1", text: "a" },
      { type: "queue", clientMessageId: "c1", text: "a" },
    );
    expect(c.outbox).toHaveLength(1);
  });

  test("a disconnect turns sent messages back into unsent ones, to resend", () => {
    const c = act(
      loaded(),
      { type: "queue", clientMessageId: "c1", text: "a" },
      { type: "sent", clientMessageId: "c1" },
      { type: "disconnected" },
    );
    expect(c.outbox[0]?.state).toBe("unsent");
  });

  test("a snapshot that contains the echo clears the entry; others stay to be resent", () => {
    let c = act(
      loaded(),
      { type: "queue", clientMessageId: "c1", text: "a" },
      { type: "queue", clientMessageId: "c2", text: "b" },
    );
    c = run(c, [snapshot(1, [echo(1, "c1", "a")])]);
    expect(c.outbox.map((e) => e.clientMessageId)).toEqual(["c2"]);
    expect(texts(c)).toEqual(["user:a"]);
  });

  test("the same message echoed twice (a resend) shows once", () => {
    const c = run(loaded(), [echo(1, "c1", "a"), echo(2, "c1", "a")]);
    expect(texts(c)).toEqual(["user:a"]);
    expect(c.lastSeq).toBe(2);
  });

  test("an error that refers to a message marks it failed", () => {
    let c = act(loaded(), { type: "queue", clientMessageId: "c1", text: "a" });
    c = run(c, [
      {
        type: "error",
        workspaceId: WS,
        code: "vm_offline",
        message: "the VM is offline",
        ref: "c1",
      },
    ]);
    expect(c.outbox[0]).toMatchObject({ state: "failed", error: "the VM is offline" });
  });

  test("another user's message is shown with their id", () => {
    const c = run(loaded(), [{ ...echo(1, "x9", "from bob"), userId: "bob" }]);
    expect(c.items[0]).toMatchObject({ kind: "user", userId: "bob", text: "from bob" });
  });

  test("an error without a reference becomes a notice", () => {
    let c = run(loaded(), [{ type: "error", workspaceId: WS, code: "forbidden", message: "no" }]);
    expect(c.notice).toBe("no");
    c = reduce(c, { type: "dismiss_notice" });
    expect(c.notice).toBeUndefined();
  });
});
