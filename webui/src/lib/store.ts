/**
 * The app's live state: the status of every listed workspace and the
 * conversation of every session of the opened one, fed by one relay
 * connection.
 *
 * A workspace is subscribed either `statusOnly` (the list: relayd sends the
 * status of its most urgent session) or, while it is shown, fully, one
 * subscription per session (main, its open sessions, the one shown). Each
 * conversation is kept under its session's key (`sessionKey`: the workspace
 * id for main), and every method that acts on a conversation takes that key,
 * so whatever names a workspace acts on its main session. After every
 * (re)connect each subscription is sent again, a full one with its
 * `lastSeq`/`epoch`, and every user message not yet echoed by the VM is sent
 * again with the same `clientMessageId` (the VM records each id once, so a
 * resend is harmless).
 */

import type { ConnState } from "./connection";
import { reduce } from "./conversation";
import { type Action, type Conversation, emptyConversation } from "./conversationModel";
import {
  type Answers,
  type Incoming,
  MAIN_SESSION,
  type Outgoing,
  type OutgoingAttachment,
  type Status,
  str,
} from "./protocol";
import { aggregateStatus, parseSessionKey, sessionKey, sessionOf, withSession } from "./sessions";

/** What the store needs of a connection (RelayConnection, or a fake in tests). */
export interface RelayLike {
  state: ConnState;
  send(msg: Outgoing): boolean;
  onMessage(f: (m: Incoming) => void): () => void;
  onOpen(f: () => void): () => void;
  onClose(f: () => void): () => void;
  onState(f: (s: ConnState) => void): () => void;
}

export interface StoreState {
  conn: ConnState;
  /** Latest known status per workspace, over its sessions (list badges). */
  statuses: Record<string, Status>;
  /** Conversations by session key (`sessionKey(workspaceId, sessionId)`). */
  conversations: Record<string, Conversation>;
}

type Mode = "status" | "full";

export interface StoreOptions {
  /** When listeners hear about changes; null: at once. Default: within RENDER_INTERVAL_MS. */
  schedule?: ((f: () => void) => void) | null;
  /** A timer, for retrying subscriptions. */
  later?: (f: () => void, ms: number) => void;
}

/**
 * A workspace (or session) just created may reach relayd a moment after the
 * answer that made it: its `subscribe` gets `not_found`. Try again after this many milliseconds,
 * doubling up to RETRY_MAX_MS.
 */
export const RETRY_FIRST_MS = 250;
export const RETRY_MAX_MS = 10_000;

/**
 * A VM that comes back with nothing new to say sends nothing: while a
 * workspace is offline, subscribe again (from lastSeq) after this many
 * milliseconds, doubling up to OFFLINE_PROBE_MAX_MS, to learn that it is back.
 */
export const OFFLINE_PROBE_MS = 2_000;
export const OFFLINE_PROBE_MAX_MS = 15_000;

/** Longest wait between a change and the render that shows it (milliseconds). */
export const RENDER_INTERVAL_MS = 40;

let counter = 0;
/** A unique client message id (crypto.randomUUID where the page is secure). */
export function newClientMessageId(): string {
  const c = globalThis.crypto as Crypto | undefined;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  counter += 1;
  return `m-${Date.now().toString(36)}-${counter}-${Math.random().toString(36).slice(2, 10)}`;
}

export class Store {
  state: StoreState;
  /** Workspace -> how it is subscribed. */
  private readonly modes = new Map<string, Mode>();
  /** A fully subscribed workspace -> its sessions subscribed. */
  private readonly opened = new Map<string, Set<string>>();
  private readonly listeners = new Set<() => void>();
  private readonly statusListeners = new Set<
    (id: string, status: Status, prev: Status | undefined) => void
  >();

  private notifyScheduled = false;

  /**
   * `schedule` decides when listeners (React) hear about changes: a burst of
   * messages (a replay, fast deltas) becomes one render instead of hundreds.
   * The state itself is always current.
   */
  private readonly schedule: ((f: () => void) => void) | null;
  private readonly later: (f: () => void, ms: number) => void;
  /** Subscriptions (by key) the relay did not know yet -> failed subscribe attempts. */
  private readonly unknown = new Map<string, number>();
  /** The last status other than `offline` per workspace. */
  private readonly lastOnline = new Map<string, Status>();
  /** Subscriptions (by key) seen offline -> probes sent so far. */
  private readonly offline = new Map<string, number>();

  constructor(
    private readonly relay: RelayLike,
    options: StoreOptions = {},
  ) {
    this.schedule =
      options.schedule === undefined ? (f) => setTimeout(f, RENDER_INTERVAL_MS) : options.schedule;
    this.later = options.later ?? ((f, ms) => setTimeout(f, ms));
    this.state = { conn: relay.state, statuses: {}, conversations: {} };
    relay.onState((conn) => this.set({ ...this.state, conn }));
    relay.onMessage((m) => this.receive(m));
    relay.onOpen(() => this.resume());
    relay.onClose(() => {
      for (const key of Object.keys(this.state.conversations))
        this.dispatch(key, { type: "disconnected" });
    });
  }

  subscribe = (f: () => void): (() => void) => {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  };
  getState = (): StoreState => this.state;

  /** Called on each status change of a workspace (for notifications and the title badge). */
  onStatusChange(f: (id: string, status: Status, prev: Status | undefined) => void): () => void {
    this.statusListeners.add(f);
    return () => this.statusListeners.delete(f);
  }

  private set(next: StoreState): void {
    this.state = next;
    if (this.schedule === null) {
      for (const f of this.listeners) f();
      return;
    }
    if (this.notifyScheduled) return;
    this.notifyScheduled = true;
    this.schedule(() => {
      this.notifyScheduled = false;
      for (const f of this.listeners) f();
    });
  }

  private setStatus(id: string, status: Status): void {
    const prev = this.state.statuses[id];
    if (status !== "offline") this.lastOnline.set(id, status);
    if (prev === status) return;
    this.set({ ...this.state, statuses: { ...this.state.statuses, [id]: status } });
    for (const f of this.statusListeners) f(id, status, prev);
  }

  /** Seed a status from the HTTP list before the relay says more. */
  seedStatus(id: string, status: Status): void {
    if (this.state.statuses[id] === undefined) {
      this.set({ ...this.state, statuses: { ...this.state.statuses, [id]: status } });
    }
  }

  /** Watch these workspaces' statuses; forget the ones no longer listed. */
  watch(ids: string[]): void {
    const want = new Set(ids);
    for (const [id, mode] of this.modes) {
      if (!want.has(id) && mode === "status") {
        this.modes.delete(id);
        this.relay.send({ type: "unsubscribe", workspaceId: id });
      }
    }
    for (const id of ids) {
      if (!this.modes.has(id)) {
        this.modes.set(id, "status");
        this.relay.send({ type: "subscribe", workspaceId: id, statusOnly: true });
      }
    }
  }

  /**
   * Show a workspace: subscribe fully to these of its sessions (main always),
   * each resuming where this tab left off, and leave the ones subscribed
   * before that are not among them (their conversations are kept, to resume).
   */
  open(id: string, sessions: readonly string[] = [MAIN_SESSION]): void {
    const mode = this.modes.get(id);
    let have = this.opened.get(id);
    if (mode !== "full" || !have) {
      this.modes.set(id, "full");
      have = new Set();
      this.opened.set(id, have);
      if (mode === "status") this.relay.send({ type: "unsubscribe", workspaceId: id });
    }
    const want = new Set([MAIN_SESSION, ...sessions]);
    for (const sid of [...have]) {
      if (want.has(sid)) continue;
      have.delete(sid);
      this.unknown.delete(sessionKey(id, sid));
      this.offline.delete(sessionKey(id, sid));
      this.relay.send(withSession({ type: "unsubscribe", workspaceId: id }, sid));
    }
    for (const sid of want) {
      if (have.has(sid)) continue;
      have.add(sid);
      const key = sessionKey(id, sid);
      if (!this.state.conversations[key]) {
        this.set({
          ...this.state,
          conversations: { ...this.state.conversations, [key]: emptyConversation(id, sid) },
        });
      }
      this.relay.send(this.subscribeMessage(key));
    }
  }

  /** Leave a workspace's sessions; keep watching its status for the list. */
  close(id: string): void {
    const have = this.opened.get(id);
    if (this.modes.get(id) !== "full" || !have) return;
    this.modes.set(id, "status");
    this.opened.delete(id);
    for (const sid of have) {
      this.unknown.delete(sessionKey(id, sid));
      this.offline.delete(sessionKey(id, sid));
      this.relay.send(withSession({ type: "unsubscribe", workspaceId: id }, sid));
    }
    this.relay.send({ type: "subscribe", workspaceId: id, statusOnly: true });
  }

  /** Forget a workspace entirely (deleted), with all its sessions. */
  forget(id: string): void {
    const mode = this.modes.get(id);
    const have = this.opened.get(id);
    this.modes.delete(id);
    this.opened.delete(id);
    if (mode === "full" && have) {
      for (const sid of have)
        this.relay.send(withSession({ type: "unsubscribe", workspaceId: id }, sid));
    } else if (mode) this.relay.send({ type: "unsubscribe", workspaceId: id });
    const conversations = { ...this.state.conversations };
    for (const key of Object.keys(conversations))
      if (parseSessionKey(key).workspaceId === id) delete conversations[key];
    const statuses = { ...this.state.statuses };
    delete statuses[id];
    this.set({ ...this.state, conversations, statuses });
  }

  /** Send a user message (and its files) in the session of `key`; its clientMessageId. */
  sendUserMessage(key: string, text: string, attachments: OutgoingAttachment[] = []): string {
    const clientMessageId = newClientMessageId();
    this.dispatch(key, { type: "queue", clientMessageId, text, attachments });
    if (this.sendUser(key, clientMessageId, text, attachments)) {
      this.dispatch(key, { type: "sent", clientMessageId });
    }
    return clientMessageId;
  }

  /** Send a failed message again, with its id. */
  retry(key: string, clientMessageId: string): void {
    const e = this.state.conversations[key]?.outbox.find(
      (x) => x.clientMessageId === clientMessageId,
    );
    if (e && this.sendUser(key, clientMessageId, e.text, e.attachments)) {
      this.dispatch(key, { type: "sent", clientMessageId });
    }
  }

  /** Forget a message that was not sent (the VM refused it). */
  discard(key: string, clientMessageId: string): void {
    this.dispatch(key, { type: "discard", clientMessageId });
  }

  answer(key: string, requestId: string, answers: Answers): boolean {
    const { workspaceId, sessionId } = parseSessionKey(key);
    return this.relay.send(
      withSession({ type: "question_response", workspaceId, requestId, answers }, sessionId),
    );
  }

  decide(key: string, requestId: string, allow: boolean, message?: string): boolean {
    const { workspaceId, sessionId } = parseSessionKey(key);
    const msg: Outgoing = { type: "permission_response", workspaceId, requestId, allow };
    if (message) msg.message = message;
    return this.relay.send(withSession(msg, sessionId));
  }

  interrupt(key: string): boolean {
    const { workspaceId, sessionId } = parseSessionKey(key);
    return this.relay.send(withSession({ type: "interrupt", workspaceId }, sessionId));
  }

  dismissNotice(key: string): void {
    this.dispatch(key, { type: "dismiss_notice" });
  }

  private sendUser(
    key: string,
    clientMessageId: string,
    text: string,
    attachments: OutgoingAttachment[] = [],
  ): boolean {
    const { workspaceId, sessionId } = parseSessionKey(key);
    const msg: Outgoing = { type: "user_message", workspaceId, clientMessageId, text };
    if (attachments.length) msg.attachments = attachments;
    return this.relay.send(withSession(msg, sessionId));
  }

  private subscribeMessage(key: string): Outgoing {
    const { workspaceId, sessionId } = parseSessionKey(key);
    const c = this.state.conversations[key];
    if (c?.loaded && c.epoch !== null && c.resync !== "epoch") {
      return withSession(
        { type: "subscribe", workspaceId, lastSeq: c.lastSeq, epoch: c.epoch },
        sessionId,
      );
    }
    return withSession({ type: "subscribe", workspaceId }, sessionId);
  }

  /** The subscription of `key` as it stands now, or null when there is none. */
  private subscription(key: string): Outgoing | null {
    const { workspaceId, sessionId } = parseSessionKey(key);
    const mode = this.modes.get(workspaceId);
    if (mode === "status")
      return sessionId === MAIN_SESSION
        ? { type: "subscribe", workspaceId, statusOnly: true }
        : null;
    if (mode === "full" && this.opened.get(workspaceId)?.has(sessionId))
      return this.subscribeMessage(key);
    return null;
  }

  private dispatch(key: string, action: Action): void {
    const c = this.state.conversations[key];
    if (!c) return;
    const next = reduce(c, action);
    if (next !== c)
      this.set({ ...this.state, conversations: { ...this.state.conversations, [key]: next } });
  }

  /**
   * The session a message from the relay is about: the one it names, or for
   * an `error` naming none, the session whose message or prompt its `ref`
   * is (relayd's own errors about a client message name no session); main
   * otherwise.
   */
  private sessionFor(id: string, m: Incoming): string {
    const named = sessionOf(m);
    if (named !== MAIN_SESSION || m.sessionId !== undefined || m.type !== "error") return named;
    const ref = str(m.ref);
    if (ref === undefined) return named;
    for (const sid of this.opened.get(id) ?? []) {
      const c = this.state.conversations[sessionKey(id, sid)];
      if (c?.index[`req:${ref}`] !== undefined || c?.outbox.some((e) => e.clientMessageId === ref))
        return sid;
    }
    return named;
  }

  private receive(m: Incoming): void {
    const id = m.workspaceId;
    if (typeof id !== "string") return;
    const mode = this.modes.get(id);
    if (mode === undefined) return;
    const sid = mode === "full" ? this.sessionFor(id, m) : MAIN_SESSION;
    const key = sessionKey(id, sid);
    if (m.type === "error" && m.code === "not_found" && m.ref === undefined) {
      this.retrySubscribe(key);
      return;
    }
    if (mode === "status") {
      this.receiveStatus(id, m);
      return;
    }
    if (!this.opened.get(id)?.has(sid)) return;
    if (m.type === "subscribed") this.unknown.delete(key);
    if (m.type === "status" && typeof m.status === "string") {
      if (m.status === "offline") this.probeOffline(key);
      else this.offline.delete(key);
    }
    this.dispatch(key, { type: "receive", message: m });
    const c = this.state.conversations[key];
    if (!c) return;
    // The list shows the workspace's most urgent session, as relayd does for statusOnly.
    this.updateAggregate(id);
    // VM activity (not `subscribed`, which the relay may follow with `offline` at once).
    if (c.online && typeof m.seq === "number") this.offline.delete(key);
    if (c.resync) {
      // The log cannot be continued from here: subscribe again (from lastSeq after a gap,
      // from scratch after a new epoch).
      this.relay.send(withSession({ type: "unsubscribe", workspaceId: id }, sid));
      this.relay.send(this.subscribeMessage(key));
      this.dispatch(key, { type: "resubscribe" });
    }
  }

  /** A message for a workspace of the list (statusOnly). */
  private receiveStatus(id: string, m: Incoming): void {
    if (m.type === "subscribed") {
      this.unknown.delete(id);
      // statusOnly: the relay follows `subscribed` with `offline` while the VM is away, and
      // with nothing when the VM is back but has not reported since.
      if (this.state.statuses[id] === "offline") {
        this.setStatus(id, this.lastOnline.get(id) ?? "idle");
      }
    }
    if (m.type === "status" && typeof m.status === "string") {
      this.setStatus(id, m.status as Status);
      if (m.status === "offline") this.probeOffline(id);
      else this.offline.delete(id);
    }
  }

  private updateAggregate(id: string): void {
    const statuses = [...(this.opened.get(id) ?? [])].map((sid) => {
      const c = this.state.conversations[sessionKey(id, sid)];
      // Before its snapshot a session says only what the relay said (offline), if anything.
      return c && (c.loaded || c.status === "offline") ? c.status : null;
    });
    const status = aggregateStatus(statuses);
    if (status) this.setStatus(id, status);
  }

  private probeOffline(key: string): void {
    const probes = this.offline.get(key);
    if (probes !== undefined && probes < 0) return; // one probe at a time
    const n = probes ?? 0;
    this.offline.set(key, -1 - n);
    this.later(
      () => {
        const sub = this.subscription(key);
        const state = this.offline.get(key);
        if (!sub || state === undefined) return;
        this.offline.set(key, n + 1);
        const { workspaceId, sessionId } = parseSessionKey(key);
        this.relay.send(withSession({ type: "unsubscribe", workspaceId }, sessionId));
        this.relay.send(sub);
      },
      Math.min(OFFLINE_PROBE_MAX_MS, OFFLINE_PROBE_MS * 2 ** n),
    );
  }

  private retrySubscribe(key: string): void {
    const attempt = this.unknown.get(key) ?? 0;
    this.unknown.set(key, attempt + 1);
    this.later(
      () => {
        const sub = this.subscription(key);
        if (sub && this.unknown.has(key)) this.relay.send(sub);
      },
      Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** attempt),
    );
  }

  private resume(): void {
    for (const [id, mode] of this.modes) {
      if (mode !== "full") {
        this.relay.send({ type: "subscribe", workspaceId: id, statusOnly: true });
        continue;
      }
      for (const sid of this.opened.get(id) ?? []) {
        const key = sessionKey(id, sid);
        this.relay.send(this.subscribeMessage(key));
        for (const e of this.state.conversations[key]?.outbox ?? []) {
          if (e.state === "failed") continue;
          if (this.sendUser(key, e.clientMessageId, e.text, e.attachments)) {
            this.dispatch(key, { type: "sent", clientMessageId: e.clientMessageId });
          }
        }
      }
    }
  }
}
