import { describe, expect, it } from "vitest";
import { reduce } from "./conversation";
import { emptyConversation } from "./conversationModel";
import type { Incoming } from "./protocol";
import { applyUsage, contextFill, emptyUsage, type Usage } from "./usage";

// Lines as Claude Code 2.1.332 prints them against the fake Messages API
// (tests/support/fake_anthropic.py), cut to the fields that matter and a few around them.
const SESSION = "d49bcff0-2d57-492a-ab0f-e2510ae4490b";
const init = {
  type: "system",
  subtype: "init",
  cwd: "/tmp/w",
  session_id: SESSION,
  tools: ["Task", "Bash", "Edit", "Read", "Write"],
  model: "claude-opus-5-5",
  permissionMode: "default",
  apiKeySource: "ANTHROPIC_API_KEY",
  claude_code_version: "2.1.332",
};
function assistant(input: number, cacheRead: number, output: number, parent: string | null = null) {
  return {
    type: "assistant",
    message: {
      id: "msg_fake_0001",
      type: "message",
      role: "assistant",
      model: "claude-fake-1",
      content: [{ type: "text", text: "Hello there!" }],
      stop_reason: null,
      stop_sequence: null,
      usage: {
        input_tokens: input,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: cacheRead,
        output_tokens: output,
      },
      context_management: null,
    },
    parent_tool_use_id: parent,
    session_id: SESSION,
  };
}
function modelUsage(input: number, output: number, cost: number) {
  return {
    "claude-opus-5-5": {
      inputTokens: input,
      outputTokens: output,
      cacheReadInputTokens: 0,
      cacheCreationInputTokens: 0,
      webSearchRequests: 0,
      costUSD: cost,
      contextWindow: 1000000,
      maxOutputTokens: 128000,
    },
  };
}
function result(index: number, total: number, turnCost: number | null, input = 25, output = 4) {
  const line: Record<string, unknown> = {
    type: "result",
    subtype: "success",
    is_error: false,
    duration_ms: 117,
    duration_api_ms: 22,
    num_turns: 1,
    result: "Hello there!",
    stop_reason: "end_turn",
    session_id: SESSION,
    total_cost_usd: total,
    usage: {
      input_tokens: input,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      output_tokens: output,
      output_tokens_details: { thinking_tokens: 0 },
      server_tool_use: { web_search_requests: 0, web_fetch_requests: 0 },
      service_tier: "standard",
    },
    modelUsage: modelUsage(input * (index + 1), output * (index + 1), total),
    permission_denials: [],
    queued_turn_count: 0,
    result_index: index,
  };
  if (turnCost !== null) line.model_usage_since_last_result = modelUsage(input, output, turnCost);
  return line;
}

const run = (lines: Record<string, unknown>[], from: Usage = emptyUsage) =>
  lines.reduce(applyUsage, from);

describe("usage meter", () => {
  it("sums two turns of one CLI process without counting its running total twice", () => {
    const u = run([
      init,
      assistant(25, 0, 1),
      result(0, 0.00018, 0.00018),
      init,
      assistant(40, 0, 1),
      result(1, 0.00036, 0.00018, 40, 4),
    ]);
    expect(u.model).toBe("claude-opus-5-5");
    expect(u.turns).toBe(2);
    expect(u.inputTokens).toBe(65);
    expect(u.outputTokens).toBe(8);
    expect(u.costUsd).toBeCloseTo(0.00036, 10);
    expect(u.contextWindow).toBe(1000000);
    expect(u.contextTokens).toBe(41);
    expect(contextFill(u)).toBeCloseTo(41 / 1e6, 12);
  });

  it("takes the growth of total_cost_usd when the CLI gives no turn share, and starts again after a restart", () => {
    const u = run([
      result(0, 0.5, null),
      result(1, 0.75, null), // +0.25
      result(0, 0.1, null), // the CLI restarted (--resume): its total starts at 0 again
      result(1, 0.3, null), // +0.2
    ]);
    expect(u.turns).toBe(4);
    expect(u.costUsd).toBeCloseTo(0.5 + 0.25 + 0.1 + 0.2, 10);
    // An older CLI without result_index: a total that went down is a new process too.
    const old = [{ ...result(0, 0.4, null), result_index: undefined }];
    const v = run([...old, { ...result(0, 0.1, null), result_index: undefined }]);
    expect(v.costUsd).toBeCloseTo(0.5, 10);
  });

  it("counts cache reads in the context and leaves a subagent's calls out of it", () => {
    const u = run([init, assistant(3, 12000, 200), assistant(50000, 0, 10, "toolu_1")]);
    expect(u.contextTokens).toBe(12203);
    expect(contextFill(u)).toBeUndefined(); // no result yet: the window is not known
    const v = run([result(0, 0.01, 0.01)], u);
    expect(contextFill(v)).toBeCloseTo(12203 / 1e6, 12);
  });

  it("ignores what it does not know and the demo engine's empty prompt", () => {
    const u = run([
      { type: "stream_event", event: { type: "message_start" } },
      { type: "assistant", message: "nonsense" },
      { type: "result", usage: "nope", total_cost_usd: "free" },
      assistant(0, 0, 7),
    ]);
    expect(u).toEqual({ ...emptyUsage, turns: 1 });
  });

  it("counts a message replayed after a reconnect once (the reducer's seq dedup)", () => {
    const snap: Incoming = {
      type: "messages_snapshot",
      workspaceId: "w",
      seq: 0,
      epoch: "e",
      status: "idle",
      messages: [],
      pending: [],
    };
    const lines = [init, assistant(25, 0, 1), result(0, 0.00018, 0.00018)];
    const msgs: Incoming[] = lines.map((data, i) => ({
      type: "claude_message",
      workspaceId: "w",
      seq: i + 1,
      epoch: "e",
      data,
    }));
    const c = [snap, ...msgs, ...msgs].reduce(
      (s, m) => reduce(s, { type: "receive", message: m }),
      emptyConversation("w"),
    );
    expect(c.usage.turns).toBe(1);
    expect(c.usage.costUsd).toBeCloseTo(0.00018, 10);
    // A snapshot with the same log rebuilds the same figures.
    const again = reduce(c, {
      type: "receive",
      message: { ...snap, seq: 3, messages: msgs },
    });
    expect(again.usage.turns).toBe(1);
    expect(again.usage.inputTokens).toBe(25);
  });

  it("gives each turn's result line its own cost, not the CLI's running total", () => {
    const data = [init, result(0, 0.00018, 0.00018), init, result(1, 0.00036, 0.00018)];
    const c = data.reduce(
      (s, d, i) =>
        reduce(s, {
          type: "receive",
          message: { type: "claude_message", workspaceId: "w", seq: i + 1, epoch: "e", data: d },
        }),
      reduce(emptyConversation("w"), {
        type: "receive",
        message: { type: "messages_snapshot", workspaceId: "w", seq: 0, epoch: "e", messages: [] },
      }),
    );
    const costs = c.items.flatMap((i) => (i.kind === "result" ? [i.costUsd] : []));
    expect(costs).toHaveLength(2);
    expect(costs[0]).toBeCloseTo(0.00018, 10);
    expect(costs[1]).toBeCloseTo(0.00018, 10);
  });
});
