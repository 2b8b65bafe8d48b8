/**
 * The conversation of one workspace as a pure reducer over protocol messages.
 *
 * Everything the session view shows comes from here: the snapshot, replayed
 * and live messages (deduplicated by `seq` within an `epoch`), partial
 * stream-json deltas, open and resolved prompts, the VM being offline, and the
 * user's own messages that the VM has not echoed yet (the outbox). No I/O:
 * the connection feeds messages in and reads `resync` to know when it has to
 * subscribe again. The state's shape is in `conversationModel.ts`; Claude
 * Code's own lines are decoded by `streamJson.ts`.
 */

import { parseShown } from "./attachments";
import {
  type Action,
  type AssistantItem,
  assistantBlocks,
  type Conversation,
  emptyConversation,
  finishStreaming,
  type Item,
  type OutboxEntry,
  type PermissionItem,
  push,
  type QuestionItem,
  replaceAt,
} from "./conversationModel";
import {
  type Incoming,
  isObject,
  num,
  type Question,
  type Resolution,
  type Status,
  str,
} from "./protocol";
import { applyClaude } from "./streamJson";

const SEQUENCED = new Set([
  "claude_message",
  "user_message",
  "status",
  "user_question",
  "permission_request",
  "request_resolved",
]);

/** The conversation after one action: a message received, or the outbox moving. */
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
          {
            clientMessageId: action.clientMessageId,
            text: action.text,
            ...(action.attachments?.length ? { attachments: action.attachments } : {}),
            state: "unsent",
          },
        ],
      };
    case "discard":
      return {
        ...state,
        outbox: state.outbox.filter((e) => e.clientMessageId !== action.clientMessageId),
      };
    case "sent":
      return mapOutbox(state, action.clientMessageId, (e) => ({
        ...e,
        state: "sent",
        error: undefined,
      }));
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
  // Another session's (the store routes by session; a message naming none may be about
  // any session's request, e.g. an error with a `ref`, so only a named one is refused).
  if (msg.sessionId !== undefined && msg.sessionId !== state.sessionId) return state;
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

/**
 * A snapshot replaces the conversation, the first one or a fresh one the relay
 * sends in-band when this client fell behind its log: the view is rebuilt from
 * it, and every item that comes out the same keeps the very object it had (and
 * so its key and its rendered element), so that a fresh snapshot repaints only
 * what changed: no flicker, no duplicate, no jump of the scroll position.
 */
function applySnapshot(state: Conversation, snap: Incoming): Conversation {
  return keepUnchanged(state, rebuild(state, snap));
}

function keepUnchanged(old: Conversation, fresh: Conversation): Conversation {
  if (!old.loaded || old.items.length === 0) return fresh;
  let same = old.items.length === fresh.items.length;
  const items = fresh.items.map((item, i) => {
    const at = old.index[item.key];
    const before = at === undefined ? undefined : old.items[at];
    if (before !== undefined && sameView(before, item)) {
      if (at !== i) same = false;
      return before;
    }
    same = false;
    return item;
  });
  const toolResults = sameData(old.toolResults, fresh.toolResults)
    ? old.toolResults
    : fresh.toolResults;
  return {
    ...fresh,
    items: same ? old.items : items,
    index: same ? old.index : fresh.index,
    toolResults,
  };
}

/**
 * A snapshot gives a finished message once, whole (its `assistant` lines,
 * without the stream events that built it), and a message still streaming with
 * its events so far: every message not streaming is complete.
 */
function compactedAreComplete(c: Conversation): Conversation {
  const streaming = new Set(Object.values(c.streaming));
  let items: Item[] | undefined;
  c.items.forEach((item, i) => {
    if (item.kind === "assistant" && !item.complete && !streaming.has(item.key)) {
      items ??= [...c.items];
      items[i] = { ...item, complete: true };
    }
  });
  return items ? { ...c, items } : c;
}

/** Plain data (items are built of JSON values), compared as JSON. */
function sameData(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Whether two items show the same: what the view renders of them. A message
 * the live stream built from deltas and the same message compacted in a
 * snapshot differ in how they were built (their first seq, partial blocks
 * beside whole ones), not in what they show.
 */
function sameView(a: Item, b: Item): boolean {
  return a === b || sameData(viewOf(a), viewOf(b));
}

function viewOf(item: Item): unknown {
  const { seq: _seq, ...rest } = item;
  if (rest.kind !== "assistant") return rest;
  const { final: _final, streamed: _streamed, ...head } = rest;
  return { ...head, blocks: assistantBlocks(item as AssistantItem) };
}

function rebuild(state: Conversation, snap: Incoming): Conversation {
  let c: Conversation = {
    ...emptyConversation(state.workspaceId, state.sessionId),
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
  c = compactedAreComplete(c);
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

/** Apply one message of the log; the caller has checked its place. */
function applySequenced(state: Conversation, msg: Incoming, seq: number): Conversation {
  switch (msg.type) {
    case "user_message": {
      const clientMessageId = str(msg.clientMessageId);
      const attachments = parseShown(msg.attachments);
      let c = push(state, {
        kind: "user",
        key: clientMessageId ? `user:${clientMessageId}` : `seq:${seq}`,
        seq,
        clientMessageId,
        userId: str(msg.userId),
        text: str(msg.text) ?? "",
        ...(attachments.length ? { attachments } : {}),
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
        c = push(c, {
          kind: "error",
          key: `seq:${seq}`,
          seq,
          text: detail ?? "The session reported an error.",
        });
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
