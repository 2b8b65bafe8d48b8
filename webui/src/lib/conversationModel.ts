/**
 * The state of one workspace's conversation, as the session view reads it:
 * the items (messages, prompts, results), the outbox of the user's own
 * messages not yet echoed, and where the log stands. Also the few small
 * updates that the reducer (`conversation.ts`) and the stream-json decoder
 * (`streamJson.ts`) share. Pure: no I/O.
 */

import type { ShownAttachment } from "./attachments";
import {
  type Incoming,
  MAIN_SESSION,
  type OutgoingAttachment,
  type Question,
  type Resolution,
  type Status,
} from "./protocol";
import { emptySettings, type SessionSettings } from "./sessionSettings";
import type { SessionInfo } from "./sessions";
import { emptyUsage, type Usage } from "./usage";

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
  /** The images and text files it carried (none: left out). */
  attachments?: ShownAttachment[];
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
  attachments?: OutgoingAttachment[];
  state: OutboxState;
  error?: string;
}

export interface Conversation {
  workspaceId: string;
  /** Which of the workspace's sessions this is (`MAIN_SESSION` for the first). */
  sessionId: string;
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
  /** Tokens, cost and context fill, for the usage meter. */
  usage: Usage;
  /** The model and permission mode the log last named. */
  settings: SessionSettings;
  /** The workspace's sessions as this log's latest `vmagent_sessions` line says (main's log). */
  sessions: SessionInfo[] | null;
  /** The open-session limit that line says (`maxSessions`), null when it says none. */
  maxSessions: number | null;
}

export type Action =
  | { type: "receive"; message: Incoming }
  | {
      type: "queue";
      clientMessageId: string;
      text: string;
      attachments?: OutgoingAttachment[];
    }
  | { type: "discard"; clientMessageId: string }
  | { type: "sent"; clientMessageId: string }
  | { type: "disconnected" }
  | { type: "resubscribe" }
  | { type: "dismiss_notice" };

export function emptyConversation(
  workspaceId: string,
  sessionId: string = MAIN_SESSION,
): Conversation {
  return {
    workspaceId,
    sessionId,
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
    usage: emptyUsage,
    settings: emptySettings,
    sessions: null,
    maxSessions: null,
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

/** Append an item, unless one with its key is there already. */
export function push(state: Conversation, item: Item): Conversation {
  if (state.index[item.key] !== undefined) return state;
  return {
    ...state,
    items: [...state.items, item],
    index: { ...state.index, [item.key]: state.items.length },
  };
}

/** Replace the item at `at`. */
export function replaceAt(state: Conversation, at: number, item: Item): Conversation {
  const items = state.items.slice();
  items[at] = item;
  return { ...state, items };
}

/** Mark every message still streaming as complete (the turn is over). */
export function finishStreaming(state: Conversation): Conversation {
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
