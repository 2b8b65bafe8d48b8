/**
 * The sessions of a workspace, as the web app sees them (docs/protocol.md,
 * "Sessions"): the list from main's latest `vmagent_sessions` line, the tabs
 * and their titles, which sessions to subscribe to, the workspace's status
 * over its sessions, the key each conversation is kept under and the URL of
 * each session. Pure: no I/O.
 */

import { type Incoming, isObject, MAIN_SESSION, type Outgoing, type Status, str } from "./protocol";

/** One session of the list line. */
export interface SessionInfo {
  sessionId: string;
  /** "" for a session nobody named: the app names it ("Session N"). */
  title: string;
  createdAt: string;
  closed: boolean;
}

/**
 * At most this many sessions open at once, counting main, when the list line
 * does not say (`maxSessions`, vmagent's `--max-sessions`; this is its
 * default). `+` is disabled at the limit; a VM that refuses anyway
 * (`rate_limited`) has its words shown.
 */
export const MAX_OPEN_SESSIONS = 5;
/** A limit past this is taken as not said: no VM runs that many sessions at once. */
const MAX_SAID_LIMIT = 1000;

/**
 * The open-session limit a `vmagent_sessions` line says (`maxSessions`), or
 * null when it says none or something that cannot be one (not a whole
 * number from 1 to 1000).
 */
export function parseMaxSessions(data: Record<string, unknown>): number | null {
  const n = data.maxSessions;
  return typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= MAX_SAID_LIMIT ? n : null;
}
/** Longest title vmagent accepts (`session_create`, `session_rename`). */
export const MAX_TITLE_LENGTH = 100;

const SESSION_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** True for a valid `sessionId`: 1 to 64 characters `[A-Za-z0-9_-]`. */
export function isSessionId(v: unknown): v is string {
  return typeof v === "string" && SESSION_ID.test(v);
}

/** The list before any list line: main alone. */
export const ONLY_MAIN: readonly SessionInfo[] = [
  { sessionId: MAIN_SESSION, title: "", createdAt: "", closed: false },
];

/**
 * The session list of a `vmagent_sessions` system line (a `claude_message`'s
 * `data`), or null when the line is not one. Entries without a valid id and
 * repeated ids are dropped; main is always there, first, and never closed.
 */
export function parseSessionList(data: Record<string, unknown>): SessionInfo[] | null {
  if (data.type !== "system" || data.subtype !== "vmagent_sessions") return null;
  if (!Array.isArray(data.sessions)) return null;
  const seen = new Set<string>();
  const out: SessionInfo[] = [];
  for (const s of data.sessions) {
    if (!isObject(s) || !isSessionId(s.sessionId) || seen.has(s.sessionId)) continue;
    seen.add(s.sessionId);
    const main = s.sessionId === MAIN_SESSION;
    out.push({
      sessionId: s.sessionId,
      title: (str(s.title) ?? "").slice(0, MAX_TITLE_LENGTH),
      createdAt: str(s.createdAt) ?? "",
      closed: !main && s.closed === true,
    });
  }
  const at = out.findIndex((s) => s.sessionId === MAIN_SESSION);
  const main = at < 0 ? ONLY_MAIN[0]! : out.splice(at, 1)[0]!;
  return [main, ...out];
}

/** A session as a tab: its title as shown, and its number in the list (from 1). */
export interface Tab extends SessionInfo {
  label: string;
  number: number;
}

/** The tabs of a list, in its order (oldest first): untitled ones are "Session N". */
export function tabsOf(list: readonly SessionInfo[]): Tab[] {
  return list.map((s, i) => ({
    ...s,
    number: i + 1,
    label: s.title.trim() || `Session ${i + 1}`,
  }));
}

/** How many sessions are open (main included). */
export function openCount(list: readonly SessionInfo[]): number {
  return list.filter((s) => !s.closed).length;
}

/**
 * Why `+` cannot make another session now, or null when it can: at `max`
 * open sessions (the VM's `maxSessions`; `MAX_OPEN_SESSIONS` when unknown).
 */
export function createBlock(
  list: readonly SessionInfo[],
  max: number | null = MAX_OPEN_SESSIONS,
): string | null {
  const limit = max ?? MAX_OPEN_SESSIONS;
  const what = limit === 1 ? "open session" : "open sessions";
  return openCount(list) >= limit ? `At most ${limit} ${what}: close one to start another.` : null;
}

/**
 * The sessions to subscribe to while a workspace is shown: main, every open
 * session (so that every tab's mark is live) and the one shown, even closed
 * (its transcript). `shown` is left out when the list is known and it is not
 * on it, unless it is `pending` (just created, its list line not here yet).
 */
export function sessionsToSubscribe(
  list: readonly SessionInfo[],
  shown: string,
  pending: string | null = null,
): string[] {
  const out = [MAIN_SESSION];
  for (const s of list) if (!s.closed && s.sessionId !== MAIN_SESSION) out.push(s.sessionId);
  const known = list.some((s) => s.sessionId === shown);
  if (!out.includes(shown) && (known || shown === pending)) out.push(shown);
  return out;
}

/** Most urgent first: the order relayd uses for a workspace's status over its sessions. */
const URGENCY: readonly Status[] = [
  "waiting_for_input",
  "running",
  "error",
  "starting",
  "idle",
  "stopped",
];

/**
 * The workspace's status over its sessions' (what the list shows): the most
 * urgent, as relayd chooses for `statusOnly` subscribers; `offline` when any
 * is (the sessions share one VM); null when none is known.
 */
export function aggregateStatus(statuses: readonly (Status | null | undefined)[]): Status | null {
  let best: Status | null = null;
  let rank = Number.POSITIVE_INFINITY;
  for (const s of statuses) {
    if (!s) continue;
    if (s === "offline") return "offline";
    const r = URGENCY.indexOf(s);
    const at = r < 0 ? URGENCY.length : r;
    if (at < rank) {
      rank = at;
      best = s;
    }
  }
  return best;
}

/**
 * The first session of a workspace, oldest first, that waits for an answer,
 * among the conversations the app follows (those of the workspace shown);
 * null when none is known to.
 */
export function waitingSession(
  conversations: Readonly<
    Record<string, { workspaceId: string; sessionId: string; status: Status | null }>
  >,
  workspaceId: string,
  list: readonly SessionInfo[] = ONLY_MAIN,
): string | null {
  const waiting = new Set<string>();
  for (const c of Object.values(conversations))
    if (c.workspaceId === workspaceId && c.status === "waiting_for_input") waiting.add(c.sessionId);
  for (const s of list) if (waiting.has(s.sessionId)) return s.sessionId;
  return waiting.values().next().value ?? null;
}

/**
 * A conversation's key in the store: the workspace id for main (so that
 * everything that names a workspace names its main session), and the
 * workspace id, a U+001F separator and the session id for the others. The
 * separator is a control character, which no workspace id has (they are the
 * control plane's UUIDs) and no session id can have.
 */
export function sessionKey(workspaceId: string, sessionId: string = MAIN_SESSION): string {
  return sessionId === MAIN_SESSION ? workspaceId : `${workspaceId}\u001f${sessionId}`;
}

/** The workspace and session of a key (`sessionKey`'s inverse). */
export function parseSessionKey(key: string): { workspaceId: string; sessionId: string } {
  const at = key.lastIndexOf("\u001f");
  if (at < 0) return { workspaceId: key, sessionId: MAIN_SESSION };
  return { workspaceId: key.slice(0, at), sessionId: key.slice(at + 1) };
}

/** A message with its `sessionId`: omitted for main, as writers do. */
export function withSession<T extends Outgoing>(msg: T, sessionId: string): T {
  return sessionId === MAIN_SESSION ? msg : { ...msg, sessionId };
}

/** The session a received message is about: its `sessionId`, main without one. */
export function sessionOf(m: Incoming): string {
  return isSessionId(m.sessionId) ? m.sessionId : MAIN_SESSION;
}

/** Where the app is: a workspace and one of its sessions. */
export interface Route {
  workspaceId: string;
  sessionId: string;
}

/** The path of a session: `/w/<id>` for main, `/w/<id>/s/<sessionId>` for the others. */
export function sessionPath(workspaceId: string, sessionId: string = MAIN_SESSION): string {
  const w = `/w/${encodeURIComponent(workspaceId)}`;
  return sessionId === MAIN_SESSION ? w : `${w}/s/${encodeURIComponent(sessionId)}`;
}

/** The route of a path, or null for anything else (the list). */
export function routeOf(path: string): Route | null {
  const m = /^\/w\/([^/]+)(?:\/s\/([^/]+))?\/?$/.exec(path);
  if (!m) return null;
  let workspaceId: string;
  let sessionId: string;
  try {
    workspaceId = decodeURIComponent(m[1]!);
    sessionId = m[2] === undefined ? MAIN_SESSION : decodeURIComponent(m[2]);
  } catch {
    return null; // a malformed escape
  }
  // A session part that cannot be one: the workspace's main session.
  return { workspaceId, sessionId: isSessionId(sessionId) ? sessionId : MAIN_SESSION };
}
