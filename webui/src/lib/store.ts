/**
 * The app's live state: the status of every listed workspace and the
 * conversation of every opened one, fed by one relay connection.
 *
 * A workspace is subscribed either `statusOnly` (the list) or fully (an open
 * session). After every (re)connect each subscription is sent again, a full
 * one with its `lastSeq`/`epoch`, and every user message not yet echoed by
 * the VM is sent again with the same `clientMessageId` (the VM records each
 * id once, so a resend is harmless).
 */

import type { ConnState } from "./connection";
import { reduce } from "./conversation";
import { type Action, type Conversation, emptyConversation } from "./conversationModel";
import type { Answers, Incoming, Outgoing, Status } from "./protocol";

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
  /** Latest known status per workspace (list badges). */
  statuses: Record<string, Status>;
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
 * A workspace just created may reach relayd a moment after the HTTP answer:
 * its `subscribe` gets `not_found`. Try again after this many milliseconds,
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
  private readonly modes = new Map<string, Mode>();
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
  /** Workspaces the relay did not know yet -> failed subscribe attempts. */
  private readonly unknown = new Map<string, number>();
  /** The last status other than `offline` per workspace. */
  private readonly lastOnline = new Map<string, Status>();
  /** Workspaces seen offline -> probes sent so far. */
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
      for (const id of Object.keys(this.state.conversations))
        this.dispatch(id, { type: "disconnected" });
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

  /** Open a session: subscribe fully, resuming where this tab left off. */
  open(id: string): void {
    if (this.modes.get(id) === "full") return;
    const wasWatched = this.modes.has(id);
    this.modes.set(id, "full");
    if (!this.state.conversations[id]) {
      this.set({
        ...this.state,
        conversations: { ...this.state.conversations, [id]: emptyConversation(id) },
      });
    }
    if (wasWatched) this.relay.send({ type: "unsubscribe", workspaceId: id });
    this.relay.send(this.subscribeMessage(id));
  }

  /** Leave a session; keep watching its status for the list. */
  close(id: string): void {
    if (this.modes.get(id) !== "full") return;
    this.modes.set(id, "status");
    this.relay.send({ type: "unsubscribe", workspaceId: id });
    this.relay.send({ type: "subscribe", workspaceId: id, statusOnly: true });
  }

  /** Forget a workspace entirely (deleted). */
  forget(id: string): void {
    if (this.modes.delete(id)) this.relay.send({ type: "unsubscribe", workspaceId: id });
    const conversations = { ...this.state.conversations };
    delete conversations[id];
    const statuses = { ...this.state.statuses };
    delete statuses[id];
    this.set({ ...this.state, conversations, statuses });
  }

  sendUserMessage(id: string, text: string): string {
    const clientMessageId = newClientMessageId();
    this.dispatch(id, { type: "queue", clientMessageId, text });
    if (this.relay.send({ type: "user_message", workspaceId: id, clientMessageId, text })) {
      this.dispatch(id, { type: "sent", clientMessageId });
    }
    return clientMessageId;
  }

  /** Send a failed message again, with its id. */
  retry(id: string, clientMessageId: string): void {
    const e = this.state.conversations[id]?.outbox.find(
      (x) => x.clientMessageId === clientMessageId,
    );
    if (
      e &&
      this.relay.send({ type: "user_message", workspaceId: id, clientMessageId, text: e.text })
    ) {
      this.dispatch(id, { type: "sent", clientMessageId });
    }
  }

  answer(id: string, requestId: string, answers: Answers): boolean {
    return this.relay.send({ type: "question_response", workspaceId: id, requestId, answers });
  }

  decide(id: string, requestId: string, allow: boolean, message?: string): boolean {
    const msg: Outgoing = { type: "permission_response", workspaceId: id, requestId, allow };
    if (message) msg.message = message;
    return this.relay.send(msg);
  }

  interrupt(id: string): boolean {
    return this.relay.send({ type: "interrupt", workspaceId: id });
  }

  dismissNotice(id: string): void {
    this.dispatch(id, { type: "dismiss_notice" });
  }

  private subscribeMessage(id: string): Outgoing {
    const c = this.state.conversations[id];
    if (c?.loaded && c.epoch !== null && c.resync !== "epoch") {
      return { type: "subscribe", workspaceId: id, lastSeq: c.lastSeq, epoch: c.epoch };
    }
    return { type: "subscribe", workspaceId: id };
  }

  private dispatch(id: string, action: Action): void {
    const c = this.state.conversations[id];
    if (!c) return;
    const next = reduce(c, action);
    if (next !== c)
      this.set({ ...this.state, conversations: { ...this.state.conversations, [id]: next } });
  }

  private receive(m: Incoming): void {
    const id = m.workspaceId;
    if (typeof id !== "string") return;
    if (m.type === "error" && m.code === "not_found" && m.ref === undefined && this.modes.has(id)) {
      this.retrySubscribe(id);
      return;
    }
    if (m.type === "subscribed") {
      this.unknown.delete(id);
      // statusOnly: the relay follows `subscribed` with `offline` while the VM is away, and
      // with nothing when the VM is back but has not reported since.
      if (this.modes.get(id) === "status" && this.state.statuses[id] === "offline") {
        this.setStatus(id, this.lastOnline.get(id) ?? "idle");
      }
    }
    if (m.type === "status" && typeof m.status === "string") {
      this.setStatus(id, m.status as Status);
      if (m.status === "offline") this.probeOffline(id);
      else this.offline.delete(id);
    }
    if (this.modes.get(id) !== "full") return;
    this.dispatch(id, { type: "receive", message: m });
    const c = this.state.conversations[id];
    if (!c) return;
    if ((m.type === "messages_snapshot" || m.type === "subscribed") && c.status)
      this.setStatus(id, c.status);
    // VM activity (not `subscribed`, which the relay may follow with `offline` at once).
    if (c.online && typeof m.seq === "number") this.offline.delete(id);
    if (c.resync) {
      // The log cannot be continued from here: subscribe again (from lastSeq after a gap,
      // from scratch after a new epoch).
      this.relay.send({ type: "unsubscribe", workspaceId: id });
      this.relay.send(this.subscribeMessage(id));
      this.dispatch(id, { type: "resubscribe" });
    }
  }

  private probeOffline(id: string): void {
    const probes = this.offline.get(id);
    if (probes !== undefined && probes < 0) return; // one probe at a time
    const n = probes ?? 0;
    this.offline.set(id, -1 - n);
    this.later(
      () => {
        const mode = this.modes.get(id);
        const state = this.offline.get(id);
        if (!mode || state === undefined) return;
        this.offline.set(id, n + 1);
        this.relay.send({ type: "unsubscribe", workspaceId: id });
        this.relay.send(
          mode === "full"
            ? this.subscribeMessage(id)
            : { type: "subscribe", workspaceId: id, statusOnly: true },
        );
      },
      Math.min(OFFLINE_PROBE_MAX_MS, OFFLINE_PROBE_MS * 2 ** n),
    );
  }

  private retrySubscribe(id: string): void {
    const attempt = this.unknown.get(id) ?? 0;
    this.unknown.set(id, attempt + 1);
    this.later(
      () => {
        const mode = this.modes.get(id);
        if (!mode || !this.unknown.has(id)) return;
        this.relay.send(
          mode === "full"
            ? this.subscribeMessage(id)
            : { type: "subscribe", workspaceId: id, statusOnly: true },
        );
      },
      Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** attempt),
    );
  }

  private resume(): void {
    for (const [id, mode] of this.modes) {
      this.relay.send(
        mode === "full"
          ? this.subscribeMessage(id)
          : { type: "subscribe", workspaceId: id, statusOnly: true },
      );
      if (mode !== "full") continue;
      for (const e of this.state.conversations[id]?.outbox ?? []) {
        if (e.state === "failed") continue;
        if (
          this.relay.send({
            type: "user_message",
            workspaceId: id,
            clientMessageId: e.clientMessageId,
            text: e.text,
          })
        ) {
          this.dispatch(id, { type: "sent", clientMessageId: e.clientMessageId });
        }
      }
    }
  }
}
