/**
 * One WebSocket per tab to relayd, kept alive.
 *
 * The token goes in the `bearer.<jwt>` subprotocol next to `ffcloud.v1`.
 * A close is followed by a reconnect after an exponential backoff with
 * jitter; a 4401 (token expired or invalid) or 4403 first renews the token,
 * and a refused renewal ends in `onAuthFailed` (the login screen). A renewed
 * token is sent on the live socket with `auth`. What to subscribe to after
 * each (re)connect is the owner's business (`onOpen`); a 4307 (a workspace
 * moved to another node) is told to `onMoved` (the pool of pool.ts asks the
 * API where to go) and reconnects like any other close.
 */

import { Listeners } from "./listeners";
import {
  BEARER_PREFIX,
  CLOSE_CUT_OFF,
  CLOSE_MOVED,
  CLOSE_TOKEN_EXPIRED,
  type Incoming,
  isObject,
  type Outgoing,
  SUBPROTOCOL,
} from "./protocol";

export type ConnState = "connecting" | "open" | "reconnecting" | "stopped";

/** The part of the browser's WebSocket that we use. */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason?: string }) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface ConnectionDeps {
  createSocket: (url: string, protocols: string[]) => SocketLike;
  /** The current access token, or null when logged out. */
  getToken: () => string | null;
  /** Renew the access token; the new one, or null when the refresh was refused. */
  refresh: () => Promise<string | null>;
  onAuthFailed: () => void;
  setTimeout: (f: () => void, ms: number) => unknown;
  clearTimeout: (h: unknown) => void;
  random: () => number;
}

export interface BackoffSettings {
  /** First delay, milliseconds. */
  baseMs: number;
  /** Longest delay, milliseconds. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffSettings = { baseMs: 500, maxMs: 15_000 };

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential, capped, with
 * "equal jitter" (half fixed, half random) so a relay restart does not bring
 * every tab back in the same millisecond.
 */
export function backoffDelay(
  attempt: number,
  random: number,
  s: BackoffSettings = DEFAULT_BACKOFF,
): number {
  const ceiling = Math.min(s.maxMs, s.baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (ceiling / 2) * random);
}

const OPEN = 1;

export class RelayConnection {
  state: ConnState = "stopped";
  private socket: SocketLike | null = null;
  private attempt = 0;
  private timer: unknown = null;
  private readonly stateListeners = new Listeners<[ConnState]>();
  private readonly messageListeners = new Listeners<[Incoming]>();
  private readonly openListeners = new Listeners();
  private readonly closeListeners = new Listeners();
  private readonly movedListeners = new Listeners();

  constructor(
    private readonly url: string,
    private readonly deps: ConnectionDeps,
    private readonly backoff: BackoffSettings = DEFAULT_BACKOFF,
  ) {}

  onState(f: (s: ConnState) => void): () => void {
    return this.stateListeners.add(f);
  }
  onMessage(f: (m: Incoming) => void): () => void {
    return this.messageListeners.add(f);
  }
  /** After each successful (re)connect: subscribe, resend. */
  onOpen(f: () => void): () => void {
    return this.openListeners.add(f);
  }
  /** After each loss of the socket. */
  onClose(f: () => void): () => void {
    return this.closeListeners.add(f);
  }

  /** After a close with 4307: a workspace this node served moved to another node. */
  onMoved(f: () => void): () => void {
    return this.movedListeners.add(f);
  }

  start(): void {
    if (this.state !== "stopped") return;
    this.attempt = 0;
    this.connect("connecting");
  }

  stop(): void {
    this.setState("stopped");
    if (this.timer !== null) this.deps.clearTimeout(this.timer);
    this.timer = null;
    const s = this.socket;
    this.socket = null;
    if (s) {
      s.onclose = null;
      s.onmessage = null;
      s.close(1000, "bye");
    }
  }

  isOpen(): boolean {
    return this.state === "open" && this.socket?.readyState === OPEN;
  }

  /** Send now if the socket is open; false if not (the caller keeps it for later). */
  send(msg: Outgoing): boolean {
    if (!this.isOpen() || !this.socket) return false;
    try {
      this.socket.send(JSON.stringify(msg));
      return true;
    } catch {
      return false;
    }
  }

  /** A renewed token: hand it to the live connection so it outlives the old one. */
  renewToken(token: string): void {
    this.send({ type: "auth", token });
  }

  /** Reconnect at once (e.g. the browser came back online). */
  nudge(): void {
    if (this.state !== "reconnecting") return;
    if (this.timer !== null) this.deps.clearTimeout(this.timer);
    this.timer = null;
    this.connect("reconnecting");
  }

  private setState(s: ConnState): void {
    if (this.state === s) return;
    this.state = s;
    this.stateListeners.emit(s);
  }

  private connect(state: ConnState): void {
    const token = this.deps.getToken();
    if (!token) {
      this.setState("stopped");
      this.deps.onAuthFailed();
      return;
    }
    this.setState(state);
    let socket: SocketLike;
    try {
      socket = this.deps.createSocket(this.url, [SUBPROTOCOL, BEARER_PREFIX + token]);
    } catch {
      this.scheduleReconnect(false);
      return;
    }
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      opened = true;
      this.attempt = 0;
      this.setState("open");
      this.openListeners.emit();
    };
    socket.onmessage = (ev) => {
      if (this.socket !== socket || typeof ev.data !== "string") return;
      let msg: unknown;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (!isObject(msg) || typeof msg.type !== "string") return;
      this.messageListeners.emit(msg as Incoming);
    };
    socket.onerror = () => {
      // onclose follows and decides.
    };
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (opened) this.closeListeners.emit();
      if (this.state === "stopped") return;
      if (ev.code === CLOSE_MOVED) this.movedListeners.emit();
      const authClose = ev.code === CLOSE_TOKEN_EXPIRED || ev.code === CLOSE_CUT_OFF;
      // A refused handshake (401: expired token) reaches the browser as 1006 before open.
      // After a few of those in a row, the token is the likely cause: renew it too.
      this.scheduleReconnect(authClose || (!opened && this.attempt >= 2));
    };
  }

  private scheduleReconnect(renew: boolean): void {
    this.setState("reconnecting");
    if (renew) {
      void this.deps.refresh().then((token) => {
        if (this.state === "stopped") return;
        if (!token) {
          this.setState("stopped");
          this.deps.onAuthFailed();
          return;
        }
        this.wait();
      });
      return;
    }
    this.wait();
  }

  private wait(): void {
    const delay = backoffDelay(this.attempt, this.deps.random(), this.backoff);
    this.attempt += 1;
    if (this.timer !== null) this.deps.clearTimeout(this.timer);
    this.timer = this.deps.setTimeout(() => {
      this.timer = null;
      if (this.state === "reconnecting") this.connect("reconnecting");
    }, delay);
  }
}
