/** Fakes for the connection tests: a scripted WebSocket and a manual clock. */

import type { SocketLike } from "./connection";
import type { Incoming, Outgoing } from "./protocol";
import type { Relay } from "./requests";

export class FakeSocket implements SocketLike {
  readyState = 0;
  sent: unknown[] = [];
  closed: { code?: number; reason?: string } | null = null;
  onopen: ((ev: unknown) => void) | null = null;
  onclose: ((ev: { code: number; reason?: string }) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("not open");
    this.sent.push(JSON.parse(data));
  }
  close(code?: number, reason?: string): void {
    this.closed = { code, reason };
    this.readyState = 3;
  }
  /** The server accepts the handshake. */
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  /** The server sends a message. */
  deliver(msg: unknown): void {
    this.onmessage?.({ data: typeof msg === "string" ? msg : JSON.stringify(msg) });
  }
  /** The connection ends (server close, network loss, refused handshake). */
  drop(code = 1006): void {
    this.readyState = 3;
    this.onclose?.({ code });
  }
}

export class ManualClock {
  now = 0;
  private timers: { at: number; f: () => void; id: number }[] = [];
  private nextId = 1;

  setTimeout = (f: () => void, ms: number): unknown => {
    const id = this.nextId++;
    this.timers.push({ at: this.now + ms, f, id });
    return id;
  };
  clearTimeout = (h: unknown): void => {
    this.timers = this.timers.filter((t) => t.id !== h);
  };
  pending(): number[] {
    return this.timers.map((t) => t.at - this.now);
  }
  /** Run every timer due within `ms`, in order. */
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const t = this.timers[0];
      if (!t || t.at > end) break;
      this.timers.shift();
      this.now = t.at;
      t.f();
    }
    this.now = end;
  }
}

/** Let pending promise callbacks run. */
export async function flush(): Promise<void> {
  // A real macrotask: Response.json() and friends take several microtask turns.
  await new Promise((resolve) => setTimeout(resolve, 0));
}

/** A relay connection that records what is sent and delivers what a test says. */
export class FakeRelay implements Relay {
  sent: Outgoing[] = [];
  connected = true;
  private messages = new Set<(m: Incoming) => void>();
  private closes = new Set<() => void>();
  send(msg: Outgoing): boolean {
    if (!this.connected) return false;
    this.sent.push(msg);
    return true;
  }
  onMessage(f: (m: Incoming) => void): () => void {
    this.messages.add(f);
    return () => this.messages.delete(f);
  }
  onClose(f: () => void): () => void {
    this.closes.add(f);
    return () => this.closes.delete(f);
  }
  deliver(m: Incoming): void {
    for (const f of this.messages) f(m);
  }
  close(): void {
    for (const f of this.closes) f();
  }
  get listeners(): number {
    return this.messages.size + this.closes.size;
  }
}
