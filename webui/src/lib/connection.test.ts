import { beforeEach, describe, expect, test } from "vitest";
import { backoffDelay, type ConnectionDeps, type ConnState, RelayConnection } from "./connection";
import { FakeSocket, flush, ManualClock } from "./testkit";

let clock: ManualClock;
let sockets: FakeSocket[];
let token: string | null;
let refreshResult: string | null;
let refreshCalls: number;
let authFailed: number;
let rnd: number;

function deps(): ConnectionDeps {
  return {
    createSocket: (url, protocols) => {
      const s = new FakeSocket(url, protocols);
      sockets.push(s);
      return s;
    },
    getToken: () => token,
    refresh: async () => {
      refreshCalls += 1;
      token = refreshResult;
      return refreshResult;
    },
    onAuthFailed: () => {
      authFailed += 1;
    },
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: () => rnd,
  };
}

beforeEach(() => {
  clock = new ManualClock();
  sockets = [];
  token = "tok1";
  refreshResult = "tok2";
  refreshCalls = 0;
  authFailed = 0;
  rnd = 0.5;
});

const last = () => sockets[sockets.length - 1]!;

describe("backoffDelay", () => {
  test("grows exponentially up to the cap, with jitter in the upper half", () => {
    const s = { baseMs: 100, maxMs: 1000 };
    expect(backoffDelay(0, 0, s)).toBe(50);
    expect(backoffDelay(0, 1, s)).toBe(100);
    expect(backoffDelay(1, 0, s)).toBe(100);
    expect(backoffDelay(2, 1, s)).toBe(400);
    expect(backoffDelay(10, 1, s)).toBe(1000);
    expect(backoffDelay(10, 0, s)).toBe(500);
    expect(backoffDelay(1000, 0.5, s)).toBe(750);
  });
});

describe("RelayConnection", () => {
  test("offers ffcloud.v1 and the token as a bearer subprotocol, never in the URL", () => {
    const c = new RelayConnection("ws://127.0.0.1:8765/v1/client", deps());
    c.start();
    expect(last().protocols).toEqual(["ffcloud.v1", "bearer.tok1"]);
    expect(last().url).toBe("ws://127.0.0.1:8765/v1/client");
    expect(c.state).toBe("connecting");
  });

  test("opens, reports state, delivers parsed messages and ignores junk", () => {
    const c = new RelayConnection("ws://x/v1/client", deps());
    const states: ConnState[] = [];
    const got: unknown[] = [];
    let opens = 0;
    c.onState((s) => states.push(s));
    c.onMessage((m) => got.push(m));
    c.onOpen(() => (opens += 1));
    c.start();
    last().open();
    last().deliver({ type: "status", workspaceId: "w", status: "idle" });
    last().deliver("not json");
    last().deliver([1, 2]);
    last().deliver({ noType: true });
    expect(states).toEqual(["connecting", "open"]);
    expect(opens).toBe(1);
    expect(got).toEqual([{ type: "status", workspaceId: "w", status: "idle" }]);
    expect(c.send({ type: "interrupt", workspaceId: "w" })).toBe(true);
    expect(last().sent).toEqual([{ type: "interrupt", workspaceId: "w" }]);
  });

  test("send returns false while not open", () => {
    const c = new RelayConnection("ws://x", deps());
    c.start();
    expect(c.send({ type: "interrupt", workspaceId: "w" })).toBe(false);
  });

  test("reconnects with growing, jittered delays, and resets after a success", () => {
    const c = new RelayConnection("ws://x", deps(), { baseMs: 100, maxMs: 10_000 });
    c.start();
    last().open();
    last().drop(1006);
    expect(c.state).toBe("reconnecting");
    expect(clock.pending()).toEqual([75]); // attempt 0: 50..100, random 0.5
    clock.advance(75);
    expect(sockets).toHaveLength(2);
    last().drop(1006); // refused before open
    expect(clock.pending()).toEqual([150]); // attempt 1: 100..200
    clock.advance(150);
    expect(sockets).toHaveLength(3);
    last().open();
    expect(c.state).toBe("open");
    last().drop(1001);
    expect(clock.pending()).toEqual([75]); // back to the first delay
  });

  test("a renewed token is sent on the live socket with auth", () => {
    const c = new RelayConnection("ws://x", deps());
    c.start();
    last().open();
    c.renewToken("fresh");
    expect(last().sent).toEqual([{ type: "auth", token: "fresh" }]);
  });

  test("4401 renews the token and reconnects with the new one", async () => {
    const c = new RelayConnection("ws://x", deps(), { baseMs: 100, maxMs: 1000 });
    c.start();
    last().open();
    last().drop(4401);
    await flush();
    expect(refreshCalls).toBe(1);
    clock.advance(1000);
    expect(sockets).toHaveLength(2);
    expect(last().protocols).toEqual(["ffcloud.v1", "bearer.tok2"]);
    expect(authFailed).toBe(0);
  });

  test("a refused renewal after 4401 leads to the login screen and no reconnect", async () => {
    refreshResult = null;
    const c = new RelayConnection("ws://x", deps(), { baseMs: 100, maxMs: 1000 });
    c.start();
    last().open();
    last().drop(4401);
    await flush();
    expect(authFailed).toBe(1);
    expect(c.state).toBe("stopped");
    clock.advance(60_000);
    expect(sockets).toHaveLength(1);
  });

  test("repeated refused handshakes renew the token (a 401 looks like 1006 to a browser)", async () => {
    const c = new RelayConnection("ws://x", deps(), { baseMs: 100, maxMs: 1000 });
    c.start();
    last().drop(1006);
    clock.advance(1000);
    last().drop(1006);
    clock.advance(1000);
    expect(refreshCalls).toBe(0);
    last().drop(1006);
    await flush();
    expect(refreshCalls).toBe(1);
    clock.advance(1000);
    expect(last().protocols[1]).toBe("bearer.tok2");
  });

  test("without a token there is no connection, and the login screen shows", () => {
    token = null;
    const c = new RelayConnection("ws://x", deps());
    c.start();
    expect(sockets).toHaveLength(0);
    expect(authFailed).toBe(1);
    expect(c.state).toBe("stopped");
  });

  test("stop closes the socket and cancels the reconnect", () => {
    const c = new RelayConnection("ws://x", deps());
    c.start();
    last().open();
    const s = last();
    c.stop();
    expect(s.closed?.code).toBe(1000);
    expect(c.state).toBe("stopped");
    clock.advance(60_000);
    expect(sockets).toHaveLength(1);
  });

  test("nudge reconnects at once while waiting", () => {
    const c = new RelayConnection("ws://x", deps(), { baseMs: 10_000, maxMs: 10_000 });
    c.start();
    last().drop(1006);
    expect(sockets).toHaveLength(1);
    c.nudge();
    expect(sockets).toHaveLength(2);
    expect(clock.pending()).toEqual([]);
  });

  test("close listeners hear only about sockets that had opened", () => {
    const c = new RelayConnection("ws://x", deps(), { baseMs: 10, maxMs: 10 });
    let closes = 0;
    c.onClose(() => (closes += 1));
    c.start();
    last().drop(1006);
    expect(closes).toBe(0);
    clock.advance(10);
    last().open();
    last().drop(1006);
    expect(closes).toBe(1);
  });
});
