/**
 * The conversation of one workspace as a pure reducer over protocol messages.
 *
 * Everything the session view shows comes from here: the snapshot, replayed
 * and live messages (deduplicated by `seq` within an `epoch`), partial
 * stream-json deltas, open and resolved prompts, the VM being offline, and the
 * user's own messages that the VM has not echoed yet (the outbox). No I/O:
 * the connection feeds messages in and reads `resync` to know when it has to
 * subscribe again.
 */

import {
  type Incoming,
  type Question,
  type Resolution,
  type Status,
  isObject,
  num,
  str,
} from "./protocol";

export interface TextBlock {
  kind: "text";
  text: string;
}
export interface ThinkingBlock {
  kind: "thinking";
  text: string;
}
export interface ToolUseBlock {
  kind: "tool_use";
  id: string;
  name: string;
  /** The parsed input once known; while streaming, `partialJson` grows instead. */
  input: unknown;
  partialJson: string;
}
export interface OtherBlock {
  kind: "other";
  type: string;
}
export type Block = TextBlock | ThinkingBlock | ToolUseBlock | OtherBlock;

export interface ToolResult {
  content: string;
  isError: boolean;
}

export interface UserItem {
  kind: "user";
  key: string;
  seq: number;
  clientMessageId?: string;
  userId?: string;
  text: string;
}
export interface AssistantItem {
  kind: "assistant";
  key: string;
  seq: number;
  messageId: string;
  /** Blocks from complete `assistant` lines, in block order. */
  final: Block[];
  /** Blocks built from `stream_event` deltas, by content block index. */
  streamed: Block[];
  /** True once the message stopped (message_stop, its turn ended). */
  complete: boolean;
}
export interface ResultItem {
  kind: "result";
  key: string;
  seq: number;
  isError: boolean;
  subtype?: string;
  durationMs?: number;
  costUsd?: number;
  inputTokens?: number;
  outputTokens?: number;
  text?: string;
}
export interface SystemItem {
  kind: "system";
  key: string;
  seq: number;
  text: string;
}
export interface PromptCommon {
  key: string;
  seq: number;
  requestId: string;
  resolution?: Resolution;
  resolvedBy?: string;
  /** An error the relay or VM gave for our answer (e.g. already_resolved). */
  error?: string;
}
export interface QuestionItem extends PromptCommon {
  kind: "question";
  questions: Question[];
}
export interface PermissionItem extends PromptCommon {
  kind: "permission";
  toolName: string;
  toolUseId?: string;
  toolInput: unknown;
}
export interface ErrorItem {
  kind: "error";
  key: string;
  seq: number;
  text: string;
}
export type Item =
  | UserItem
  | AssistantItem
  | ResultItem
  | SystemItem
  | QuestionItem
  | PermissionItem
  | ErrorItem;

export type OutboxState = "unsent" | "sent" | "failed";
export interface OutboxEntry {
  clientMessageId: string;
  text: string;
  state: OutboxState;
  error?: string;
}

export interface Conversation {
  workspaceId: string;
  epoch: string | null;
  /** Highest `seq` applied; the resume point for `subscribe`. */
  lastSeq: number;
  /** A snapshot has been applied: live messages can be placed. */
  loaded: boolean;
  status: Status | null;
  statusDetail?: string;
  /** The last status the VM itself reported (the relay's `offline` is not one). */
  logStatus: Status | null;
  /** The owning VM is connected (false after the relay's `offline`). */
  online: boolean;
  items: Item[];
  /** Item key -> position in `items`. */
  index: Record<string, number>;
  /** parent_tool_use_id ("" at top level) -> key of the assistant message streaming. */
  streaming: Record<string, string>;
  toolResults: Record<string, ToolResult>;
  outbox: OutboxEntry[];
  /** Set when the log cannot be continued (gap, new epoch): subscribe again. */
  resync: null | "gap" | "epoch";
  /** The last error not tied to a message or prompt. */
  notice?: string;
}

export type Action =
  | { type: "receive"; message: Incoming }
  | { type: "queue"; clientMessageId: string; text: string }
  | { type: "sent"; clientMessageId: string }
  | { type: "disconnected" }
  | { type: "resubscribe" }
  | { type: "dismiss_notice" };

export function emptyConversation(workspaceId: string): Conversation {
  return {
    workspaceId,
    epoch: null,
    lastSeq: 0,
    loaded: false,
    status: null,
    logStatus: null,
    online: true,
    items: [],
    index: {},
    streaming: {},
    toolResults: {},
    outbox: [],
    resync: null,
  };
}

/** The prompts still waiting for an answer, oldest first. */
export function openPrompts(c: Conversation): (QuestionItem | PermissionItem)[] {
  return c.items.filter(
    (i): i is QuestionItem | PermissionItem =>
      (i.kind === "question" || i.kind === "permission") && i.resolution === undefined,
  );
}

/** The blocks of an assistant message as they stand: complete ones win over partial ones. */
export function assistantBlocks(item: AssistantItem): Block[] {
  const n = Math.max(item.final.length, item.streamed.length);
  const out: Block[] = [];
  for (let i = 0; i < n; i++) {
    const b = item.final[i] ?? item.streamed[i];
    if (b) out.push(b);
  }
  return out;
}

const SEQUENCED = new Set([
  "claude_message",
  "user_message",
  "status",
  "user_question",
  "permission_request",
  "request_resolved",
]);

export function reduce(state: Conversation, action: Action): Conversation {
  switch (action.type) {
    case "receive":
      return receive(state, action.message);
    case "queue":
      if (state.outbox.some((e) => e.clientMessageId === action.clientMessageId)) return state;
      return {
        ...state,
        outbox: [
          ...state.outbox,
          { clientMessageId: action.clientMessageId, text: action.text, state: "unsent" },
        ],
      };
    case "sent":
      return mapOutbox(state, action.clientMessageId, (e) => ({ ...e, state: "sent", error: undefined }));
    case "disconnected":
      // Whatever was in flight may not have arrived: it is resent (same id) on reconnect.
      if (!state.outbox.some((e) => e.state === "sent")) return state;
      return {
        ...state,
        outbox: state.outbox.map((e) => (e.state === "sent" ? { ...e, state: "unsent" } : e)),
      };
    case "resubscribe":
      return state.resync === null ? state : { ...state, resync: null };
    case "dismiss_notice":
      return { ...state, notice: undefined };
  }
}

function mapOutbox(
  state: Conversation,
  id: string,
  f: (e: OutboxEntry) => OutboxEntry,
): Conversation {
  let changed = false;
  const outbox = state.outbox.map((e) => {
    if (e.clientMessageId !== id) return e;
    changed = true;
    return f(e);
  });
  return changed ? { ...state, outbox } : state;
}

function receive(state: Conversation, msg: Incoming): Conversation {
  if (msg.workspaceId !== undefined && msg.workspaceId !== state.workspaceId) return state;
  if (msg.type === "messages_snapshot") return applySnapshot(state, msg);
  if (msg.type === "subscribed") {
    const epoch = str(msg.epoch);
    if (msg.mode === "replay" && state.loaded && epoch && state.epoch && epoch !== state.epoch) {
      return { ...state, resync: "epoch" };
    }
    // The relay follows `subscribed` with `offline` when the VM is away; without it, the VM
    // is there (it may have come back without a word: its log had not moved).
    if (state.loaded && !state.online) {
      return { ...state, online: true, status: state.logStatus ?? "idle" };
    }
    return state;
  }
  if (msg.type === "error") return applyError(state, msg);
  const seq = num(msg.seq);
  if (SEQUENCED.has(msg.type) && seq !== undefined) {
    if (!state.loaded) return state; // the snapshot comes first; it covers this
    const epoch = str(msg.epoch);
    if (epoch !== undefined && state.epoch !== null && epoch !== state.epoch) {
      return state.resync ? state : { ...state, resync: "epoch" };
    }
    if (seq <= state.lastSeq) return state; // seen already
    if (seq > state.lastSeq + 1) return state.resync ? state : { ...state, resync: "gap" };
    const next = applySequenced(state, msg, seq);
    return { ...next, lastSeq: seq, online: true, epoch: epoch ?? next.epoch };
  }
  if (msg.type === "status") {
    // The relay's own word (no seq): `offline`, or the current status of a list subscription.
    const status = str(msg.status) as Status | undefined;
    if (!status) return state;
    return { ...state, status, statusDetail: str(msg.detail), online: status !== "offline" };
  }
  return state;
}

function applySnapshot(state: Conversation, snap: Incoming): Conversation {
  let c: Conversation = {
    ...emptyConversation(state.workspaceId),
    outbox: state.outbox,
    epoch: str(snap.epoch) ?? null,
    loaded: true,
  };
  const messages = Array.isArray(snap.messages) ? snap.messages : [];
  for (const m of messages) {
    if (!isObject(m) || typeof m.type !== "string") continue;
    const seq = num(m.seq) ?? c.lastSeq;
    if (seq < c.lastSeq) continue; // compaction leaves gaps, never goes back
    c = applySequenced(c, m as Incoming, seq);
    c.lastSeq = seq;
  }
  const pending = Array.isArray(snap.pending) ? snap.pending : [];
  for (const p of pending) {
    if (!isObject(p)) continue;
    const requestId = str(p.requestId);
    if (!requestId) continue;
    const key = `req:${requestId}`;
    const at = c.index[key];
    if (at === undefined) {
      c = applySequenced(c, p as Incoming, num(p.seq) ?? c.lastSeq);
    } else {
      const item = c.items[at] as QuestionItem | PermissionItem;
      if (item.resolution !== undefined) {
        c = replaceAt(c, at, { ...item, resolution: undefined, resolvedBy: undefined });
      }
    }
  }
  const status = (str(snap.status) as Status | undefined) ?? c.status;
  return {
    ...c,
    lastSeq: num(snap.seq) ?? c.lastSeq,
    status,
    logStatus: status === "offline" ? c.logStatus : status,
    statusDetail: str(snap.statusDetail) ?? (status === c.status ? c.statusDetail : undefined),
    online: status !== "offline",
  };
}

function applyError(state: Conversation, msg: Incoming): Conversation {
  const ref = str(msg.ref);
  const text = str(msg.message) ?? str(msg.code) ?? "error";
  if (ref) {
    if (state.outbox.some((e) => e.clientMessageId === ref)) {
      return mapOutbox(state, ref, (e) => ({ ...e, state: "failed", error: text }));
    }
    const at = state.index[`req:${ref}`];
    if (at !== undefined) {
      const item = state.items[at] as QuestionItem | PermissionItem;
      return replaceAt(state, at, { ...item, error: text });
    }
  }
  return { ...state, notice: text };
}

function push(state: Conversation, item: Item): Conversation {
  if (state.index[item.key] !== undefined) return state;
  return {
    ...state,
    items: [...state.items, item],
    index: { ...state.index, [item.key]: state.items.length },
  };
}

function replaceAt(state: Conversation, at: number, item: Item): Conversation {
  const items = state.items.slice();
  items[at] = item;
  return { ...state, items };
}

/** Apply one message of the log; the caller has checked its place. */
function applySequenced(state: Conversation, msg: Incoming, seq: number): Conversation {
  switch (msg.type) {
    case "user_message": {
      const clientMessageId = str(msg.clientMessageId);
      let c = push(state, {
        kind: "user",
        key: clientMessageId ? `user:${clientMessageId}` : `seq:${seq}`,
        seq,
        clientMessageId,
        userId: str(msg.userId),
        text: str(msg.text) ?? "",
      });
      if (clientMessageId && c.outbox.some((e) => e.clientMessageId === clientMessageId)) {
        c = { ...c, outbox: c.outbox.filter((e) => e.clientMessageId !== clientMessageId) };
      }
      return c;
    }
    case "status": {
      const status = str(msg.status) as Status | undefined;
      if (!status) return state;
      const detail = str(msg.detail);
      let c: Conversation = { ...state, status, statusDetail: detail, logStatus: status };
      if (status === "error") {
        c = push(c, { kind: "error", key: `seq:${seq}`, seq, text: detail ?? "The session reported an error." });
      }
      if (status === "idle" || status === "error" || status === "stopped") c = finishStreaming(c);
      return c;
    }
    case "user_question": {
      const requestId = str(msg.requestId);
      if (!requestId) return state;
      return push(state, {
        kind: "question",
        key: `req:${requestId}`,
        seq,
        requestId,
        questions: parseQuestions(msg.questions),
      });
    }
    case "permission_request": {
      const requestId = str(msg.requestId);
      if (!requestId) return state;
      return push(state, {
        kind: "permission",
        key: `req:${requestId}`,
        seq,
        requestId,
        toolName: str(msg.toolName) ?? "tool",
        toolUseId: str(msg.toolUseId),
        toolInput: msg.toolInput,
      });
    }
    case "request_resolved": {
      const requestId = str(msg.requestId);
      const at = requestId ? state.index[`req:${requestId}`] : undefined;
      if (at === undefined) return state;
      const item = state.items[at] as QuestionItem | PermissionItem;
      return replaceAt(state, at, {
        ...item,
        resolution: (str(msg.resolution) as Resolution | undefined) ?? "cancelled",
        resolvedBy: str(msg.userId),
        error: undefined,
      });
    }
    case "claude_message":
      return isObject(msg.data) ? applyClaude(state, msg.data, seq) : state;
    default:
      return state;
  }
}

function parseQuestions(v: unknown): Question[] {
  if (!Array.isArray(v)) return [];
  const out: Question[] = [];
  for (const q of v) {
    if (!isObject(q)) continue;
    const question = str(q.question);
    if (!question) continue;
    const options = Array.isArray(q.options)
      ? q.options.filter(isObject).flatMap((o) => {
          const label = str(o.label);
          return label ? [{ label, description: str(o.description) }] : [];
        })
      : [];
    out.push({ question, header: str(q.header), options, multiSelect: q.multiSelect === true });
  }
  return out;
}

/** Mark every message still streaming as complete (the turn is over). */
function finishStreaming(state: Conversation): Conversation {
  const keys = Object.values(state.streaming);
  if (keys.length === 0) return state;
  let c: Conversation = { ...state, streaming: {} };
  for (const key of keys) {
    const at = c.index[key];
    const item = at === undefined ? undefined : c.items[at];
    if (at !== undefined && item?.kind === "assistant" && !item.complete) {
      c = replaceAt(c, at, { ...item, complete: true });
    }
  }
  return c;
}

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

/** One Claude Code stream-json line. */
function applyClaude(state: Conversation, data: Record<string, unknown>, seq: number): Conversation {
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
      if (isObject(first) && first.type === "text" && str(first.text)?.startsWith("[Request interrupted")) {
        return push(finishStreaming(state), { kind: "system", key: `seq:${seq}`, seq, text: "Interrupted" });
      }
      let results = state.toolResults;
      for (const b of message.content) {
        if (!isObject(b) || b.type !== "tool_result") continue;
        const id = str(b.tool_use_id);
        if (!id) continue;
        results = { ...results, [id]: { content: toolResultText(b.content), isError: b.is_error === true } };
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
        costUsd: num(data.total_cost_usd),
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
        next = { kind: "text", text: (prev?.kind === "text" ? prev.text : "") + (str(delta.text) ?? "") };
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
