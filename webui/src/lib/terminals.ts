/**
 * One terminal on the workspace's VM (docs/protocol.md, "Terminals"): opened by
 * a `terminal_open` request, then keystrokes and sizes out, output in, for this
 * connection alone. Never part of the conversation.
 */

import { str } from "./protocol";
import type { Relay, Requester } from "./requests";

/** A paste is sent in pieces of at most this many characters (the protocol's limit). */
export const MAX_INPUT_CHARS = 16_384;

/**
 * Keystrokes go out at most once per this many milliseconds (the first at once,
 * the rest gathered), so fast typing or key repeat stays well under relayd's
 * per-connection message rate (20 a second by default) and none is refused.
 */
export const INPUT_INTERVAL_MS = 60;

export interface TerminalEvents {
  output: (data: string) => void;
  exit: (reason: string, exitCode: number | undefined) => void;
}

export class TerminalSession {
  private terminalId: string | undefined;
  private ended = false;
  private readonly offs: (() => void)[];
  private pending = "";
  private timer: ReturnType<typeof setTimeout> | undefined;
  private lastSent = Number.NEGATIVE_INFINITY;

  private constructor(
    private readonly relay: Relay,
    readonly workspaceId: string,
    private readonly events: TerminalEvents,
  ) {
    const offMessage = relay.onMessage((m) => {
      if (this.terminalId === undefined || m.workspaceId !== workspaceId) return;
      if (str(m.terminalId) !== this.terminalId) return;
      if (m.type === "terminal_output") {
        const data = str(m.data);
        if (data !== undefined) this.events.output(data);
      } else if (m.type === "terminal_exit") {
        this.finish(
          str(m.reason) ?? "exited",
          typeof m.exitCode === "number" ? m.exitCode : undefined,
        );
      }
    });
    this.offs = [offMessage, relay.onClose(() => this.finish("disconnected", undefined))];
  }

  private off(): void {
    for (const f of this.offs) f();
  }

  /** Open a terminal of `cols` by `rows`; rejects with the VM's RequestError. */
  static async open(
    relay: Relay,
    requester: Requester,
    workspaceId: string,
    size: { cols: number; rows: number },
    events: TerminalEvents,
  ): Promise<TerminalSession> {
    const session = new TerminalSession(relay, workspaceId, events);
    try {
      const result = (await requester.request(workspaceId, "terminal_open", size)) as {
        terminalId?: unknown;
      } | null;
      const id = str(result?.terminalId);
      if (id === undefined) throw new Error("the VM answered without a terminalId");
      session.terminalId = id;
    } catch (e) {
      session.off();
      throw e;
    }
    return session;
  }

  get id(): string | undefined {
    return this.terminalId;
  }

  get open(): boolean {
    return !this.ended;
  }

  /** Keystrokes or a paste: gathered (see INPUT_INTERVAL_MS), cut to the protocol's limit. */
  input(data: string): void {
    if (this.ended || this.terminalId === undefined) return;
    this.pending += data;
    if (this.timer !== undefined) return;
    const wait = this.lastSent + INPUT_INTERVAL_MS - Date.now();
    if (wait <= 0) this.flush();
    else this.timer = setTimeout(() => this.flush(), wait);
  }

  private flush(): void {
    this.timer = undefined;
    const data = this.pending;
    this.pending = "";
    if (this.ended || this.terminalId === undefined || !data) return;
    this.lastSent = Date.now();
    for (let i = 0; i < data.length; i += MAX_INPUT_CHARS) {
      this.relay.send({
        type: "terminal_input",
        workspaceId: this.workspaceId,
        terminalId: this.terminalId,
        data: data.slice(i, i + MAX_INPUT_CHARS),
      });
    }
  }

  resize(cols: number, rows: number): void {
    if (this.ended || this.terminalId === undefined) return;
    const clamp = (n: number) => Math.max(1, Math.min(1000, Math.floor(n)));
    this.relay.send({
      type: "terminal_resize",
      workspaceId: this.workspaceId,
      terminalId: this.terminalId,
      cols: clamp(cols),
      rows: clamp(rows),
    });
  }

  /** End the terminal on the VM (its shell is killed) and stop listening. */
  close(): void {
    clearTimeout(this.timer);
    if (!this.ended && this.terminalId !== undefined) {
      this.relay.send({
        type: "terminal_close",
        workspaceId: this.workspaceId,
        terminalId: this.terminalId,
      });
    }
    this.ended = true;
    this.off();
  }

  private finish(reason: string, exitCode: number | undefined): void {
    if (this.ended) return;
    clearTimeout(this.timer);
    this.ended = true;
    this.off();
    this.events.exit(reason, exitCode);
  }
}
