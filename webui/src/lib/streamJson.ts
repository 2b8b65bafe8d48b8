/**
 * Claude Code's stream-json output, one line at a time, into the
 * conversation's items: `system` init lines, complete `assistant` messages,
 * the partial deltas of `stream_event` lines, tool results in `user` lines,
 * and the turn's `result`. Everything is untrusted JSON: a line of an
 * unknown shape changes nothing.
 */

import {
  type AssistantItem,
  type Block,
  type Conversation,
  finishStreaming,
  push,
  replaceAt,
} from "./conversationModel";
import { isObject, num, str } from "./protocol";
import { applySettings } from "./sessionSettings";
import { parseMaxSessions, parseSessionList } from "./sessions";
import { applyUsage, turnCost } from "./usage";

function parseBlock(b: unknown): Block {
  if (!isObject(b)) return { kind: "other", type: "unknown" };
  switch (b.type) {
    case "text":
      return { kind: "text", text: str(b.text) ?? "" };
    case "thinking":
      return { kind: "thinking", text: str(b.thinking) ?? "" };
    case "redacted_thinking":
      return { kind: "thinking", text: "" };
    case "tool_use":
    case "server_tool_use":
      return {
        kind: "tool_use",
        id: str(b.id) ?? "",
        name: str(b.name) ?? "tool",
        input: b.input ?? {},
        partialJson: "",
      };
    default:
      return { kind: "other", type: str(b.type) ?? "unknown" };
  }
}

function toolResultText(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((c) => (isObject(c) ? (str(c.text) ?? (c.type === "image" ? "[image]" : "")) : ""))
      .join("\n");
  }
  return content === undefined || content === null ? "" : JSON.stringify(content);
}

function assistantAt(state: Conversation, messageId: string, seq: number): [Conversation, number] {
  const key = `msg:${messageId}`;
  const at = state.index[key];
  if (at !== undefined) return [state, at];
  const c = push(state, {
    kind: "assistant",
    key,
    seq,
    messageId,
    final: [],
    streamed: [],
    complete: false,
  });
  return [c, c.items.length - 1];
}

/** Apply one Claude Code stream-json line (a `claude_message`'s `data`) at `seq`. */
export function applyClaude(
  state: Conversation,
  data: Record<string, unknown>,
  seq: number,
): Conversation {
  const next = applyLine(state, data, seq);
  const usage = applyUsage(state.usage, data);
  const settings = applySettings(state.settings, data);
  // vmagent's session list (main's log): the whole list each time, the latest wins.
  const list = parseSessionList(data);
  const sessions = list ?? state.sessions;
  const maxSessions = list ? parseMaxSessions(data) : state.maxSessions;
  if (usage === state.usage && settings === state.settings && sessions === state.sessions)
    return next;
  return { ...next, usage, settings, sessions, maxSessions };
}

function applyLine(state: Conversation, data: Record<string, unknown>, seq: number): Conversation {
  const parent = str(data.parent_tool_use_id) ?? "";
  switch (data.type) {
    case "system": {
      if (data.subtype !== "init") return state;
      const model = str(data.model);
      // Claude Code prints an init line at every turn; one "started" line per session is enough.
      return push(state, {
        kind: "system",
        key: `init:${str(data.session_id) ?? seq}`,
        seq,
        text: model ? `Session started · ${model}` : "Session started",
      });
    }
    case "conversation_reset":
      // `/clear`: Claude Code starts a new session; the transcript stays, Claude forgets it.
      return push(finishStreaming(state), {
        kind: "system",
        key: `seq:${seq}`,
        seq,
        text: "Context cleared: Claude starts afresh from here",
      });
    case "stream_event":
      return isObject(data.event) ? applyStreamEvent(state, data.event, parent, seq) : state;
    case "assistant": {
      const message = isObject(data.message) ? data.message : undefined;
      if (!message) return state;
      const messageId = str(message.id) ?? `seq${seq}`;
      const content = Array.isArray(message.content) ? message.content.map(parseBlock) : [];
      const [c, at] = assistantAt(state, messageId, seq);
      const item = c.items[at] as AssistantItem;
      // Claude Code prints one `assistant` line per content block, all with the same id.
      return replaceAt(c, at, { ...item, final: [...item.final, ...content] });
    }
    case "user": {
      const message = isObject(data.message) ? data.message : undefined;
      if (!message) return state;
      if (!Array.isArray(message.content)) {
        const text = str(message.content);
        return text?.startsWith("[Request interrupted")
          ? push(state, { kind: "system", key: `seq:${seq}`, seq, text: "Interrupted" })
          : state;
      }
      const first = message.content[0];
      if (
        isObject(first) &&
        first.type === "text" &&
        str(first.text)?.startsWith("[Request interrupted")
      ) {
        return push(finishStreaming(state), {
          kind: "system",
          key: `seq:${seq}`,
          seq,
          text: "Interrupted",
        });
      }
      let results = state.toolResults;
      for (const b of message.content) {
        if (!isObject(b) || b.type !== "tool_result") continue;
        const id = str(b.tool_use_id);
        if (!id) continue;
        results = {
          ...results,
          [id]: { content: toolResultText(b.content), isError: b.is_error === true },
        };
      }
      return results === state.toolResults ? state : { ...state, toolResults: results };
    }
    case "result": {
      const usage = isObject(data.usage) ? data.usage : {};
      const inputTokens =
        (num(usage.input_tokens) ?? 0) +
        (num(usage.cache_read_input_tokens) ?? 0) +
        (num(usage.cache_creation_input_tokens) ?? 0);
      const c = finishStreaming(state);
      return push(c, {
        kind: "result",
        key: `seq:${seq}`,
        seq,
        isError: data.is_error === true,
        subtype: str(data.subtype),
        durationMs: num(data.duration_ms),
        // total_cost_usd runs over the CLI's life: the line shows this turn's share.
        costUsd:
          num(data.total_cost_usd) === undefined
            ? undefined
            : turnCost(data, state.usage.cliTotalCost),
        inputTokens: isObject(data.usage) ? inputTokens : undefined,
        outputTokens: num(usage.output_tokens),
        text: data.is_error === true ? str(data.result) : undefined,
      });
    }
    default:
      return state;
  }
}

function applyStreamEvent(
  state: Conversation,
  ev: Record<string, unknown>,
  parent: string,
  seq: number,
): Conversation {
  if (ev.type === "message_start") {
    const message = isObject(ev.message) ? ev.message : {};
    const messageId = str(message.id) ?? `seq${seq}`;
    const [c, at] = assistantAt(state, messageId, seq);
    return { ...c, streaming: { ...c.streaming, [parent]: c.items[at]!.key } };
  }
  const key = state.streaming[parent];
  const at = key === undefined ? undefined : state.index[key];
  if (at === undefined) return state; // deltas of a message we never saw start
  const item = state.items[at] as AssistantItem;
  const index = num(ev.index) ?? 0;
  switch (ev.type) {
    case "content_block_start": {
      const streamed = item.streamed.slice();
      streamed[index] = parseBlock(ev.content_block);
      const b = streamed[index];
      // The input of a streamed tool_use arrives as JSON text deltas.
      if (b?.kind === "tool_use") streamed[index] = { ...b, input: undefined };
      return replaceAt(state, at, { ...item, streamed });
    }
    case "content_block_delta": {
      const delta = isObject(ev.delta) ? ev.delta : {};
      const prev = item.streamed[index];
      let next: Block | undefined;
      if (delta.type === "text_delta") {
        next = {
          kind: "text",
          text: (prev?.kind === "text" ? prev.text : "") + (str(delta.text) ?? ""),
        };
      } else if (delta.type === "thinking_delta") {
        next = {
          kind: "thinking",
          text: (prev?.kind === "thinking" ? prev.text : "") + (str(delta.thinking) ?? ""),
        };
      } else if (delta.type === "input_json_delta" && prev?.kind === "tool_use") {
        next = { ...prev, partialJson: prev.partialJson + (str(delta.partial_json) ?? "") };
      }
      if (!next) return state;
      const streamed = item.streamed.slice();
      streamed[index] = next;
      return replaceAt(state, at, { ...item, streamed });
    }
    case "content_block_stop": {
      const b = item.streamed[index];
      if (b?.kind !== "tool_use" || b.input !== undefined) return state;
      let input: unknown = {};
      try {
        input = b.partialJson ? JSON.parse(b.partialJson) : {};
      } catch {
        input = { _raw: b.partialJson };
      }
      const streamed = item.streamed.slice();
      streamed[index] = { ...b, input };
      return replaceAt(state, at, { ...item, streamed });
    }
    case "message_stop": {
      const streaming = { ...state.streaming };
      delete streaming[parent];
      return { ...replaceAt(state, at, { ...item, complete: true }), streaming };
    }
    default:
      return state;
  }
}
