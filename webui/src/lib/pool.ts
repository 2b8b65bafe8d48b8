/**
 * One relay connection per node the app needs (usually one), as one RelayLike.
 *
 * With several nodes, each workspace is relayed by the node its VM is
 * connected to; the API says which (`relayUrl` of each workspace,
 * docs/protocol.md section 7). The pool sends each message on the connection
 * of its workspace's node (the default node's until the API has said), opens
 * a connection when a node is first needed and stops one no workspace needs
 * any more. When a connection is closed with 4307 ("moved"), the pool asks
 * the API again where every workspace is now (the list); the store
 * resubscribes (from lastSeq) whenever a connection opens, so the moved
 * workspaces resume on their new node and nothing is lost. A workspace a
 * node reports `offline` makes the pool ask too: its VM may be on another
 * node that this tab has not heard of yet.
 */

import type { ConnState } from "./connection";
import { Listeners } from "./listeners";
import type { Incoming, Outgoing } from "./protocol";
import type { RelayLike } from "./store";

/** What the pool needs of one connection (RelayConnection, or a fake in tests). */
export interface PooledConnection extends RelayLike {
  start(): void;
  stop(): void;
  renewToken(token: string): void;
  nudge(): void;
  /** After a close with 4307: a workspace it served moved to another node. */
  onMoved(f: () => void): () => void;
}

/** A workspace and the relay URL it is relayed at (a Workspace of the API fits). */
export interface Placement {
  id: string;
  relayUrl?: string | null;
}

export interface PoolDeps {
  /** A connection to the relay at `relayUrl` (not started). */
  connect: (relayUrl: string) => PooledConnection;
  /** Where the API says the workspaces are relayed now (the list's relayUrls). */
  locate: () => Promise<Placement[]>;
}

/** The pool's state: the least ready of its connections. */
export function poolState(states: ConnState[]): ConnState {
  if (states.length === 0) return "stopped";
  for (const worst of ["reconnecting", "connecting", "stopped"] as const)
    if (states.includes(worst)) return worst;
  return "open";
}

export class RelayPool implements RelayLike {
  state: ConnState = "stopped";
  private readonly conns = new Map<string, PooledConnection>();
  /** workspace id -> relay URL, as the API last said. */
  private readonly nodeOf = new Map<string, string>();
  private readonly stateListeners = new Listeners<[ConnState]>();
  private readonly messageListeners = new Listeners<[Incoming]>();
  private readonly openListeners = new Listeners();
  private readonly closeListeners = new Listeners();
  private running = false;
  private locating = false;

  constructor(
    private readonly defaultUrl: string,
    private readonly deps: PoolDeps,
  ) {}

  onState(f: (s: ConnState) => void): () => void {
    return this.stateListeners.add(f);
  }
  onMessage(f: (m: Incoming) => void): () => void {
    return this.messageListeners.add(f);
  }
  onOpen(f: () => void): () => void {
    return this.openListeners.add(f);
  }
  onClose(f: () => void): () => void {
    return this.closeListeners.add(f);
  }

  /** The relay URLs with a connection now (for tests and the UI). */
  urls(): string[] {
    return [...this.conns.keys()];
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.ensure(this.defaultUrl);
  }

  stop(): void {
    this.running = false;
    for (const c of this.conns.values()) c.stop();
    this.conns.clear();
    this.update();
  }

  /** What the API says about where workspaces are relayed (e.g. from the list). */
  place(placements: Placement[]): void {
    let moved = false;
    for (const p of placements) {
      const before = this.urlOf(p.id);
      if (!p.relayUrl || before === p.relayUrl) continue;
      this.nodeOf.set(p.id, p.relayUrl);
      moved = true;
      // The old node must not go on reporting it (e.g. `offline`).
      this.conns.get(before)?.send({ type: "unsubscribe", workspaceId: p.id });
    }
    if (!moved || !this.running) return;
    for (const url of new Set(this.nodeOf.values())) this.ensure(url);
    this.prune();
    // Subscriptions go again, each to its node now (the store resends them all).
    this.openListeners.emit();
  }

  send(msg: Outgoing): boolean {
    const id = "workspaceId" in msg ? msg.workspaceId : undefined;
    if (id === undefined) {
      // `auth` goes to every node.
      let sent = false;
      for (const c of this.conns.values()) sent = c.send(msg) || sent;
      return sent;
    }
    const url = this.urlOf(id);
    return (this.running ? this.ensure(url) : this.conns.get(url))?.send(msg) ?? false;
  }

  renewToken(token: string): void {
    for (const c of this.conns.values()) c.renewToken(token);
  }

  nudge(): void {
    for (const c of this.conns.values()) c.nudge();
  }

  private ensure(url: string): PooledConnection {
    const found = this.conns.get(url);
    if (found) return found;
    const c = this.deps.connect(url);
    this.conns.set(url, c);
    c.onState(() => this.update());
    c.onMessage((m) => {
      // A workspace that moved away is another node's to report.
      const id = typeof m.workspaceId === "string" ? m.workspaceId : undefined;
      if (id !== undefined && this.urlOf(id) !== url) return;
      // Offline here may mean served elsewhere (placed on, or moved to, a VM
      // of another node before this tab heard): ask the API.
      if (m.type === "status" && m.status === "offline") void this.relocate();
      this.messageListeners.emit(m);
    });
    c.onOpen(() => {
      this.openListeners.emit();
    });
    c.onClose(() => {
      this.closeListeners.emit();
    });
    c.onMoved(() => void this.relocate());
    c.start();
    this.update();
    return c;
  }

  private urlOf(workspaceId: string): string {
    return this.nodeOf.get(workspaceId) ?? this.defaultUrl;
  }

  /** Ask the API where every workspace is now. */
  private async relocate(): Promise<void> {
    if (this.locating) return; // one question at a time
    this.locating = true;
    let found: Placement[];
    try {
      found = await this.deps.locate();
    } catch {
      return; // the API is away: the next list load, 4307 or offline asks again
    } finally {
      this.locating = false;
    }
    if (this.running) this.place(found);
  }

  /** Stop the connections that no workspace needs (the default node's stays). */
  private prune(): void {
    const needed = new Set([this.defaultUrl, ...this.nodeOf.values()]);
    for (const [url, c] of this.conns) {
      if (needed.has(url)) continue;
      c.stop();
      this.conns.delete(url);
    }
    this.update();
  }

  private update(): void {
    const next = poolState([...this.conns.values()].map((c) => c.state));
    if (next === this.state) return;
    this.state = next;
    this.stateListeners.emit(next);
  }
}
