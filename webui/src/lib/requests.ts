/**
 * Requests to the workspace's VM and their replies (docs/protocol.md, "Requests
 * and replies"): for this connection alone, never part of the conversation.
 * Every request ends: with its reply, an `error` about it, the connection
 * closing, or a timeout of its own; so no panel waits for ever.
 */

import { type Incoming, isObject, num, str } from "./protocol";
import { parseSessionKey, withSession } from "./sessions";
import type { RelayLike } from "./store";

/** How long a request may go unanswered before the panel says so. */
export const REQUEST_TIMEOUT_MS = 30_000;

export class RequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type Relay = Pick<RelayLike, "send" | "onMessage" | "onClose">;

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: RequestError) => void;
  timer: unknown;
}

export interface RequesterDeps {
  setTimeout?: (f: () => void, ms: number) => unknown;
  clearTimeout?: (h: unknown) => void;
  newId?: () => string;
  timeoutMs?: number;
}

let counter = 0;
function defaultId(): string {
  counter += 1;
  const rnd = globalThis.crypto?.randomUUID?.() ?? Math.random().toString(36).slice(2);
  return `q-${counter}-${rnd}`;
}

export class Requester {
  private readonly pending = new Map<string, Pending>();
  private readonly off: (() => void)[];
  private readonly setT: (f: () => void, ms: number) => unknown;
  private readonly clearT: (h: unknown) => void;
  private readonly newId: () => string;
  private readonly timeoutMs: number;

  constructor(
    private readonly relay: Relay,
    deps: RequesterDeps = {},
  ) {
    this.setT = deps.setTimeout ?? ((f, ms) => setTimeout(f, ms));
    this.clearT = deps.clearTimeout ?? ((h) => clearTimeout(h as ReturnType<typeof setTimeout>));
    this.newId = deps.newId ?? defaultId;
    this.timeoutMs = deps.timeoutMs ?? REQUEST_TIMEOUT_MS;
    this.off = [
      relay.onMessage((m) => this.receive(m)),
      relay.onClose(() => this.failAll("connection_lost", "The connection to the relay was lost.")),
    ];
  }

  /**
   * Ask the VM: the op's result, or a RequestError with words for the user.
   * `target` is a workspace id, or a session's key (`sessionKey`) for the
   * ops that act on one session (the request then names it).
   */
  request(target: string, op: string, args: Record<string, unknown> = {}): Promise<unknown> {
    const { workspaceId, sessionId } = parseSessionKey(target);
    const requestId = this.newId();
    return new Promise((resolve, reject) => {
      const timer = this.setT(() => {
        this.settle(requestId)?.reject(
          new RequestError("timeout", "The VM did not answer in time. Try again."),
        );
      }, this.timeoutMs);
      this.pending.set(requestId, { resolve, reject, timer });
      const msg = withSession({ type: "request", workspaceId, requestId, op, args }, sessionId);
      if (!this.relay.send(msg)) {
        this.settle(requestId)?.reject(
          new RequestError("not_connected", "Not connected to the relay right now."),
        );
      }
    });
  }

  /** Requests still waiting. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Stop listening; what waits fails. */
  close(): void {
    for (const f of this.off) f();
    this.failAll("closed", "Closed.");
  }

  private settle(id: string): Pending | undefined {
    const p = this.pending.get(id);
    if (!p) return undefined;
    this.pending.delete(id);
    this.clearT(p.timer);
    return p;
  }

  private failAll(code: string, message: string): void {
    for (const id of [...this.pending.keys()])
      this.settle(id)?.reject(new RequestError(code, message));
  }

  private receive(m: Incoming): void {
    if (m.type === "reply") {
      const id = str(m.requestId);
      const p = id === undefined ? undefined : this.settle(id);
      if (!p) return;
      if (m.ok === true) p.resolve(m.result);
      else {
        const e = isObject(m.error) ? m.error : {};
        p.reject(new RequestError(str(e.code) ?? "error", str(e.message) ?? "The request failed."));
      }
    } else if (m.type === "error") {
      const id = str(m.ref);
      const p = id === undefined ? undefined : this.settle(id);
      p?.reject(new RequestError(str(m.code) ?? "error", str(m.message) ?? "The request failed."));
    }
  }
}

/** True for a frame after which the working tree may have changed: a tool's
 *  result or the end of a turn, in that workspace's stream; the session
 *  becoming idle (its working tree is ready, or a turn ended); or a fresh
 *  snapshot (the view caught up after a gap). */
export function treeMayHaveChanged(m: Incoming, workspaceId: string): boolean {
  if (m.workspaceId !== workspaceId) return false;
  if (m.type === "messages_snapshot") return true;
  if (m.type === "status" && m.status === "idle") return true;
  if (m.type !== "claude_message" || m.workspaceId !== workspaceId || !isObject(m.data))
    return false;
  const data = m.data;
  if (data.type === "result") return true;
  if (data.type !== "user" || !isObject(data.message)) return false;
  const content = data.message.content;
  return Array.isArray(content) && content.some((b) => isObject(b) && b.type === "tool_result");
}

// -- results, checked: the VM's answers are untrusted JSON too ------------------

export type ChangeStatus = "added" | "modified" | "deleted" | "renamed";

export interface ChangedFile {
  path: string;
  oldPath?: string;
  status: ChangeStatus;
  added: number;
  removed: number;
  binary: boolean;
  uncommitted: boolean;
  unpushed: boolean;
}

export interface Changes {
  base: string;
  branch: string;
  files: ChangedFile[];
  truncated: boolean;
}

const STATUSES = new Set(["added", "modified", "deleted", "renamed"]);

export function parseChanges(v: unknown): Changes {
  if (!isObject(v) || !Array.isArray(v.files))
    throw new RequestError("bad_reply", "A bad answer from the VM.");
  const files: ChangedFile[] = [];
  for (const f of v.files) {
    if (!isObject(f)) continue;
    const path = str(f.path);
    const status = str(f.status);
    if (path === undefined || status === undefined || !STATUSES.has(status)) continue;
    files.push({
      path,
      oldPath: str(f.oldPath),
      status: status as ChangeStatus,
      added: num(f.added) ?? 0,
      removed: num(f.removed) ?? 0,
      binary: f.binary === true,
      uncommitted: f.uncommitted === true,
      unpushed: f.unpushed === true,
    });
  }
  return {
    base: str(v.base) ?? "",
    branch: str(v.branch) ?? "",
    files,
    truncated: v.truncated === true,
  };
}

export interface FileDiff {
  path: string;
  diff: string;
  truncated: boolean;
}

export function parseDiff(v: unknown): FileDiff {
  if (!isObject(v) || typeof v.diff !== "string")
    throw new RequestError("bad_reply", "A bad answer from the VM.");
  return { path: str(v.path) ?? "", diff: v.diff, truncated: v.truncated === true };
}

export interface FileContent {
  path: string;
  size: number;
  binary: boolean;
  truncated: boolean;
  content: string;
}

export function parseFile(v: unknown): FileContent {
  if (!isObject(v) || typeof v.content !== "string")
    throw new RequestError("bad_reply", "A bad answer from the VM.");
  return {
    path: str(v.path) ?? "",
    size: num(v.size) ?? 0,
    binary: v.binary === true,
    truncated: v.truncated === true,
    content: v.content,
  };
}

export function parseFiles(v: unknown): { files: string[]; truncated: boolean } {
  if (!isObject(v) || !Array.isArray(v.files))
    throw new RequestError("bad_reply", "A bad answer from the VM.");
  return {
    files: v.files.filter((f): f is string => typeof f === "string"),
    truncated: v.truncated === true,
  };
}

// -- the tree ------------------------------------------------------------------

export interface TreeNode {
  name: string;
  /** The full path (a file's, or a directory's). */
  path: string;
  children?: TreeNode[];
}

/** Paths into a tree: directories first, each level sorted by name. */
export function buildTree(paths: string[]): TreeNode[] {
  const root: TreeNode = { name: "", path: "", children: [] };
  for (const p of paths) {
    const parts = p.split("/").filter(Boolean);
    let node = root;
    parts.forEach((name, i) => {
      const path = parts.slice(0, i + 1).join("/");
      const leaf = i === parts.length - 1;
      node.children ??= [];
      let next = node.children.find((c) => c.name === name && (leaf ? !c.children : !!c.children));
      if (!next) {
        next = leaf ? { name, path } : { name, path, children: [] };
        node.children.push(next);
      }
      node = next;
    });
  }
  const sort = (nodes: TreeNode[]): TreeNode[] => {
    nodes.sort((a, b) =>
      !!a.children === !!b.children ? a.name.localeCompare(b.name) : a.children ? -1 : 1,
    );
    for (const n of nodes) if (n.children) sort(n.children);
    return nodes;
  };
  return sort(root.children ?? []);
}

/** The highlighting language for a file: its extension (highlight() ignores unknown ones). */
export function languageOf(path: string): string | undefined {
  const name = path.split("/").pop() ?? "";
  const dot = name.lastIndexOf(".");
  return dot <= 0 ? undefined : name.slice(dot + 1).toLowerCase();
}

export type PullRequestState = "open" | "closed" | "merged";

export interface PullRequest {
  number: number;
  url: string;
  state: PullRequestState;
  title: string;
}

/** `pull_request` and `pr_status`: the workspace branch's pull request, or null. */
export function parsePullRequest(v: unknown): PullRequest | null {
  if (!isObject(v) || !("pullRequest" in v))
    throw new RequestError("bad_reply", "A bad answer from the VM.");
  const pr = v.pullRequest;
  if (pr === null) return null;
  if (!isObject(pr) || num(pr.number) === undefined)
    throw new RequestError("bad_reply", "A bad answer from the VM.");
  const state = pr.state === "open" || pr.state === "merged" ? pr.state : "closed";
  const url = str(pr.url) ?? "";
  return {
    number: num(pr.number) ?? 0,
    // Only a web link is ever made a link (the VM passes on what GitHub said).
    url: /^https?:\/\//.test(url) ? url : "",
    state,
    title: str(pr.title) ?? "",
  };
}
