import { describe, expect, test } from "vitest";
import { Api, ApiError, issueUrlError, parseExpiry, renewDelay } from "./api";
import { flush, ManualClock } from "./testkit";

function json(status: number, body: unknown): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

describe("issueUrlError", () => {
  test.each([
    ["https://github.com/acme/widgets/issues/12", null],
    ["https://github.com/acme/widgets/issues/12/", null],
    ["  https://github.com/acme/wid.gets/issues/3?x=1#c  ", null],
    ["", "Paste the URL of a GitHub issue."],
    [
      "https://github.com/acme/widgets/pull/12",
      "Expected https://github.com/OWNER/REPO/issues/NUMBER",
    ],
    [
      "http://github.com/acme/widgets/issues/12",
      "Expected https://github.com/OWNER/REPO/issues/NUMBER",
    ],
    [
      "https://github.com/acme/widgets/issues/0",
      "Expected https://github.com/OWNER/REPO/issues/NUMBER",
    ],
    [
      "https://gitlab.com/acme/widgets/issues/1",
      "Expected https://github.com/OWNER/REPO/issues/NUMBER",
    ],
  ])("%s", (url, err) => {
    expect(issueUrlError(url)).toBe(err);
  });
});

describe("token expiry", () => {
  test("parses ISO strings, seconds, milliseconds and falls back to the JWT exp", () => {
    expect(parseExpiry("2026-01-01T00:00:00Z", "x", 0)).toBe(Date.parse("2026-01-01T00:00:00Z"));
    expect(parseExpiry(1_700_000_000, "x", 0)).toBe(1_700_000_000_000);
    expect(parseExpiry(1_700_000_000_000, "x", 0)).toBe(1_700_000_000_000);
    const jwt = `h.${btoa(JSON.stringify({ exp: 1234 })).replace(/=+$/, "")}.s`;
    expect(parseExpiry(undefined, jwt, 0)).toBe(1_234_000);
    expect(parseExpiry(undefined, "garbage", 1000)).toBe(1000 + 300_000);
  });

  test("renews a fifth of the lifetime early, at least 10 s early", () => {
    expect(renewDelay(600_000, 0, 0)).toBe(480_000);
    expect(renewDelay(30_000, 0, 0)).toBe(20_000);
    expect(renewDelay(5_000, 0, 0)).toBe(1_000);
  });
});

describe("Api", () => {
  test("login stores the session, schedules renewal, and renewal tells listeners", async () => {
    const clock = new ManualClock();
    const calls: string[] = [];
    let n = 0;
    const api = new Api({
      now: () => clock.now,
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
      fetch: async (input) => {
        calls.push(String(input));
        n += 1;
        return json(200, {
          accessToken: `t${n}`,
          expiresAt: (clock.now + 100_000) / 1000,
          user: { id: "u1", username: "ann" },
        });
      },
    });
    const tokens: (string | null)[] = [];
    api.onSession((s) => tokens.push(s?.accessToken ?? null));
    await api.login("ann", "pw");
    expect(api.token()).toBe("t1");
    expect(clock.pending()).toEqual([80_000]);
    clock.advance(80_000);
    await flush();
    expect(calls).toEqual(["/api/auth/login", "/api/auth/refresh"]);
    expect(tokens).toEqual(["t1", "t2"]);
  });

  test("a wrong password gives the server's error", async () => {
    const api = new Api({
      fetch: async () =>
        json(401, {
          error: { code: "invalid_credentials", message: "Wrong username or password" },
        }),
    });
    const err = await api.login("ann", "bad").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({
      status: 401,
      code: "invalid_credentials",
      message: "Wrong username or password",
    });
  });

  test("a refused refresh ends the session", async () => {
    const clock = new ManualClock();
    let refuse = false;
    const api = new Api({
      now: () => clock.now,
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
      fetch: async () =>
        refuse
          ? json(401, { error: { code: "unauthorized", message: "no" } })
          : json(200, { accessToken: "t", expiresAt: 100, user: { id: "u", username: "a" } }),
    });
    const seen: (string | null)[] = [];
    api.onSession((s) => seen.push(s?.accessToken ?? null));
    await api.login("a", "b");
    refuse = true;
    expect(await api.refresh()).toBeNull();
    expect(api.session).toBeNull();
    expect(seen).toEqual(["t", null]);
  });

  test("a request answered 401 refreshes once and retries with the new token", async () => {
    const auths: (string | null)[] = [];
    let n = 0;
    const api = new Api({
      fetch: async (input, init) => {
        const path = String(input);
        if (path === "/api/auth/refresh" || path === "/api/auth/login") {
          n += 1;
          return json(200, {
            accessToken: `t${n}`,
            expiresAt: Date.now() / 1000 + 600,
            user: { id: "u", username: "a" },
          });
        }
        const h = (init?.headers ?? {}) as Record<string, string>;
        auths.push(h.Authorization ?? null);
        return h.Authorization === "Bearer t1"
          ? json(401, { error: { code: "unauthorized", message: "expired" } })
          : json(200, []);
      },
    });
    await api.login("a", "b");
    expect(await api.listWorkspaces()).toEqual([]);
    expect(auths).toEqual(["Bearer t1", "Bearer t2"]);
  });

  test("concurrent refreshes share one request", async () => {
    let n = 0;
    const api = new Api({
      fetch: async () => {
        n += 1;
        return json(200, {
          accessToken: "t",
          expiresAt: Date.now() / 1000 + 600,
          user: { id: "u", username: "a" },
        });
      },
    });
    await Promise.all([api.refresh(), api.refresh(), api.refresh()]);
    expect(n).toBe(1);
  });

  test("a 204 answer resolves without a body", async () => {
    const api = new Api({ fetch: async () => new Response(null, { status: 204 }) });
    await expect(api.deleteWorkspace("w1")).resolves.toBeUndefined();
  });
});
