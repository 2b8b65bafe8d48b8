import { beforeEach, describe, expect, test } from "vitest";
import { type ConnectionDeps, RelayConnection } from "./connection";
import { type Placement, poolState, RelayPool } from "./pool";
import { CLOSE_MOVED, type Incoming } from "./protocol";
import { Store } from "./store";
import { FakeSocket, flush, ManualClock } from "./testkit";

let clock: ManualClock;
let sockets: FakeSocket[];
let placements: Placement[];

function deps(): ConnectionDeps {
  return {
    createSocket: (url, protocols) => {
      const s = new FakeSocket(url, protocols);
      sockets.push(s);
      return s;
    },
    getToken: () => "tok",
    refresh: async () => "tok",
    onAuthFailed: () => {},
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: () => 0.5,
  };
}

function pool(): RelayPool {
  return new RelayPool("wss://h/nodes/a", {
    connect: (url) => new RelayConnection(`${url}/v1/client`, deps()),
    locate: async () => placements,
  });
}

/** The newest socket to a node. */
function socketOf(node: string): FakeSocket {
  const found = sockets.filter((s) => s.url === `wss://h/nodes/${node}/v1/client`);
  const s = found[found.length - 1];
  if (!s) throw new Error(`no socket to ${node}`);
  return s;
}

beforeEach(() => {
  clock = new ManualClock();
  sockets = [];
  placements = [];
});

describe("poolState", () => {
  test("is the least ready of the connections", () => {
    expect(poolState([])).toBe("stopped");
    expect(poolState(["open", "open"])).toBe("open");
    expect(poolState(["open", "connecting"])).toBe("connecting");
    expect(poolState(["connecting", "reconnecting", "open"])).toBe("reconnecting");
  });
});

describe("RelayPool", () => {
  test("one socket per node a workspace needs, each message to its workspace's node", () => {
    const p = pool();
    p.start();
    expect(p.urls()).toEqual(["wss://h/nodes/a"]);
    socketOf("a").open();
    p.place([
      { id: "w1", relayUrl: "wss://h/nodes/a" },
      { id: "w2", relayUrl: "wss://h/nodes/b" },
    ]);
    expect(p.urls()).toEqual(["wss://h/nodes/a", "wss://h/nodes/b"]);
    socketOf("b").open();
    expect(p.state).toBe("open");
    expect(p.send({ type: "interrupt", workspaceId: "w1" })).toBe(true);
    expect(p.send({ type: "interrupt", workspaceId: "w2" })).toBe(true);
    // w2 was a's (the default) until the API said b: a was told to let it go.
    expect(socketOf("a").sent).toEqual([
      { type: "unsubscribe", workspaceId: "w2" },
      { type: "interrupt", workspaceId: "w1" },
    ]);
    expect(socketOf("b").sent).toEqual([{ type: "interrupt", workspaceId: "w2" }]);
    // A renewed token goes to every node.
    p.renewToken("tok2");
    expect(socketOf("b").sent.at(-1)).toEqual({ type: "auth", token: "tok2" });
    // w2 comes back to a: b's socket is no longer needed.
    p.place([{ id: "w2", relayUrl: "wss://h/nodes/a" }]);
    expect(p.urls()).toEqual(["wss://h/nodes/a"]);
    expect(socketOf("b").closed?.code).toBe(1000);
    p.stop();
    expect(p.state).toBe("stopped");
  });

  test("after 4307 the moved workspace resumes on its new node from lastSeq", async () => {
    const p = pool();
    const store = new Store(p, { schedule: null, later: () => {} });
    const got: Incoming[] = [];
    p.onMessage((m) => got.push(m));
    p.start();
    socketOf("a").open();
    p.place([{ id: "w1", relayUrl: "wss://h/nodes/b" }]);
    socketOf("b").open();
    store.open("w1");
    expect(socketOf("b").sent.at(-1)).toMatchObject({ type: "subscribe", workspaceId: "w1" });
    socketOf("b").deliver({ type: "subscribed", workspaceId: "w1", epoch: "e1", mode: "snapshot" });
    socketOf("b").deliver({
      type: "messages_snapshot",
      workspaceId: "w1",
      requestId: "r1",
      seq: 7,
      epoch: "e1",
      status: "idle",
      messages: [],
      pending: [],
    });
    // The VM reconnected to a: b closes with 4307; the API says a.
    placements = [{ id: "w1", relayUrl: "wss://h/nodes/a" }];
    socketOf("b").drop(CLOSE_MOVED);
    await flush();
    expect(p.urls()).toEqual(["wss://h/nodes/a"]);
    const resumed = socketOf("a").sent.filter((m) => (m as { type: string }).type === "subscribe");
    expect(resumed.at(-1)).toMatchObject({ workspaceId: "w1", lastSeq: 7, epoch: "e1" });
    // What the old node still says about w1 is not heard; the new node's is.
    const before = got.length;
    socketOf("b").deliver({ type: "status", workspaceId: "w1", status: "offline" });
    expect(got.length).toBe(before);
    socketOf("a").deliver({ type: "subscribed", workspaceId: "w1", epoch: "e1", mode: "replay" });
    expect(got.length).toBe(before + 1);
  });

  test("a workspace reported offline is looked for on the other nodes", async () => {
    const p = pool();
    const store = new Store(p, { schedule: null, later: () => {} });
    p.start();
    socketOf("a").open();
    store.open("w1");
    // Placed on a VM of node b after this tab loaded the list.
    placements = [{ id: "w1", relayUrl: "wss://h/nodes/b" }];
    socketOf("a").deliver({ type: "subscribed", workspaceId: "w1", epoch: null, mode: "snapshot" });
    socketOf("a").deliver({ type: "status", workspaceId: "w1", status: "offline" });
    await flush();
    expect(p.urls()).toEqual(["wss://h/nodes/a", "wss://h/nodes/b"]);
    socketOf("b").open();
    expect(socketOf("b").sent.at(-1)).toMatchObject({ type: "subscribe", workspaceId: "w1" });
  });
});
