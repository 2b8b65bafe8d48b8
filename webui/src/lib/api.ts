/**
 * The control plane's HTTP API (docs/protocol.md section 7) and the access token.
 *
 * The access token lives in memory only; the refresh cookie (HttpOnly, scoped
 * to /api/auth) restores a session after a reload. The token is renewed
 * before it expires, and listeners hear about each new one so the relay
 * connection can send it with `auth`.
 */

export interface User {
  id: string;
  username: string;
}

export interface Session {
  accessToken: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  user: User;
}

export interface Issue {
  url: string;
  owner: string;
  repo: string;
  number: number;
  title?: string | null;
}

export interface Workspace {
  id: string;
  name: string;
  issue: Issue;
  status: string;
  vmId?: string | null;
  /** Where it is relayed: its VM's node (docs/protocol.md section 7). */
  relayUrl?: string;
  /** When its VM was given up on: it was placed on another VM and started over. */
  lostAt?: string | null;
  createdAt: string;
  updatedAt: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** `expiresAt` as the server writes it (ISO string or seconds), else the JWT's `exp`. */
export function parseExpiry(expiresAt: unknown, token: string, now: number): number {
  if (typeof expiresAt === "number" && Number.isFinite(expiresAt)) {
    return expiresAt < 1e12 ? expiresAt * 1000 : expiresAt;
  }
  if (typeof expiresAt === "string") {
    const t = Date.parse(expiresAt);
    if (!Number.isNaN(t)) return t;
  }
  try {
    const payload = JSON.parse(atob(token.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/")));
    if (typeof payload.exp === "number") return payload.exp * 1000;
  } catch {
    // not a JWT we can read: fall through
  }
  return now + 5 * 60_000;
}

/** When to renew a token: a fifth of its life before it ends, at least 10 s before. */
export function renewDelay(expiresAt: number, now: number, issuedAt: number): number {
  const life = Math.max(0, expiresAt - issuedAt);
  const margin = Math.max(10_000, life / 5);
  return Math.max(1_000, expiresAt - margin - now);
}

export interface AuthDeps {
  fetch: typeof fetch;
  now: () => number;
  setTimeout: (f: () => void, ms: number) => unknown;
  clearTimeout: (h: unknown) => void;
}

const browserDeps = (): AuthDeps => ({
  fetch: (...a) => fetch(...a),
  now: () => Date.now(),
  setTimeout: (f, ms) => setTimeout(f, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
});

async function errorOf(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`;
  let message = res.statusText || `HTTP ${res.status}`;
  try {
    const body = await res.json();
    if (body && typeof body.error === "object" && body.error) {
      code = String(body.error.code ?? code);
      message = String(body.error.message ?? message);
    }
  } catch {
    // not JSON
  }
  return new ApiError(res.status, code, message);
}

export class Api {
  session: Session | null = null;
  private readonly deps: AuthDeps;
  private timer: unknown = null;
  private refreshing: Promise<Session | null> | null = null;
  private readonly tokenListeners = new Set<(s: Session | null) => void>();

  constructor(deps: Partial<AuthDeps> = {}) {
    this.deps = { ...browserDeps(), ...deps };
  }

  /** Called with every new session (login, renewal) and with null on logout or failure. */
  onSession(f: (s: Session | null) => void): () => void {
    this.tokenListeners.add(f);
    return () => this.tokenListeners.delete(f);
  }

  token(): string | null {
    return this.session?.accessToken ?? null;
  }

  async login(username: string, password: string): Promise<Session> {
    const res = await this.deps.fetch("/api/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({ username, password }),
    });
    if (!res.ok) throw await errorOf(res);
    return this.adopt(await res.json());
  }

  /** Renew the access token with the refresh cookie; one request at a time. Null if refused. */
  refresh(): Promise<Session | null> {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async doRefresh(): Promise<Session | null> {
    let res: Response;
    try {
      res = await this.deps.fetch("/api/auth/refresh", {
        method: "POST",
        credentials: "same-origin",
      });
    } catch {
      // The network, not the cookie, failed: keep the session, try again soon.
      this.schedule(5_000);
      return this.session;
    }
    if (!res.ok) {
      if (res.status >= 500) {
        this.schedule(5_000);
        return this.session;
      }
      this.drop();
      return null;
    }
    return this.adopt(await res.json());
  }

  async logout(): Promise<void> {
    try {
      await this.deps.fetch("/api/auth/logout", { method: "POST", credentials: "same-origin" });
    } finally {
      this.drop();
    }
  }

  private adopt(body: { accessToken: string; expiresAt: unknown; user: User }): Session {
    const now = this.deps.now();
    const session: Session = {
      accessToken: body.accessToken,
      expiresAt: parseExpiry(body.expiresAt, body.accessToken, now),
      user: body.user,
    };
    this.session = session;
    this.schedule(renewDelay(session.expiresAt, now, now));
    for (const f of this.tokenListeners) f(session);
    return session;
  }

  private schedule(ms: number): void {
    if (this.timer !== null) this.deps.clearTimeout(this.timer);
    this.timer = this.deps.setTimeout(() => {
      this.timer = null;
      void this.refresh();
    }, ms);
  }

  private drop(): void {
    if (this.timer !== null) this.deps.clearTimeout(this.timer);
    this.timer = null;
    const had = this.session !== null;
    this.session = null;
    if (had) for (const f of this.tokenListeners) f(null);
  }

  /** A JSON request with the access token; one refresh and retry on a 401. */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const go = () =>
      this.deps.fetch(path, {
        method,
        credentials: "same-origin",
        headers: {
          ...(body === undefined ? {} : { "Content-Type": "application/json" }),
          ...(this.session ? { Authorization: `Bearer ${this.session.accessToken}` } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    let res = await go();
    if (res.status === 401 && (await this.refresh())) res = await go();
    if (!res.ok) throw await errorOf(res);
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  }

  config(): Promise<{ relayUrl: string }> {
    return this.request("GET", "/api/config");
  }
  listWorkspaces(): Promise<Workspace[]> {
    return this.request("GET", "/api/workspaces");
  }
  getWorkspace(id: string): Promise<Workspace> {
    return this.request("GET", `/api/workspaces/${encodeURIComponent(id)}`);
  }
  createWorkspace(issueUrl: string): Promise<Workspace> {
    return this.request("POST", "/api/workspaces", { issueUrl });
  }
  deleteWorkspace(id: string): Promise<void> {
    return this.request("DELETE", `/api/workspaces/${encodeURIComponent(id)}`);
  }
}

const ISSUE_URL =
  /^https:\/\/github\.com\/([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+)\/issues\/([1-9][0-9]*)\/?(?:[?#].*)?$/;

/** Inline check of an issue URL, as the server will check it; an error text or null. */
export function issueUrlError(url: string): string | null {
  const u = url.trim();
  if (!u) return "Paste the URL of a GitHub issue.";
  if (!ISSUE_URL.test(u)) return "Expected https://github.com/OWNER/REPO/issues/NUMBER";
  return null;
}
