/** The app shell: session restore, login, the relay connection, routing. */

import { useCallback, useEffect, useMemo, useState, useSyncExternalStore } from "react";
import { WorkspacePanels } from "./components/panels/WorkspacePanels";
import { ThemeSwitch } from "./components/ThemeSwitch";
import { WorkspaceSessions } from "./components/WorkspaceSessions";
import { Api, type Session, type Workspace } from "./lib/api";
import { RelayConnection, type SocketLike } from "./lib/connection";
import { badgeTitle, shouldNotify } from "./lib/notify";
import { RelayPool } from "./lib/pool";
import { CLIENT_PATH, type Status } from "./lib/protocol";
import { type PullRequest, Requester } from "./lib/requests";
import { type Route, routeOf, sessionPath, waitingSession } from "./lib/sessions";
import { Store } from "./lib/store";
import { claimUserData, forgetUserData, tabStorage } from "./lib/tabData";
import { Login } from "./ui/Login";
import { ConnectionIndicator, SessionView } from "./ui/Session";
import { Sidebar } from "./ui/Sidebar";

const TITLE = "FF Cloud";

function relayEndpoint(relayUrl: string): string {
  const u = relayUrl.replace(/\/+$/, "");
  return u.endsWith(CLIENT_PATH) ? u : u + CLIENT_PATH;
}

/** Where to go: a workspace (its main session unless one is named), or null for the list. */
type Go = (id: string | null, sessionId?: string, replace?: boolean) => void;

function useRoute(): [Route | null, Go] {
  const [path, setPath] = useState(() => window.location.pathname);
  useEffect(() => {
    const f = () => setPath(window.location.pathname);
    window.addEventListener("popstate", f);
    return () => window.removeEventListener("popstate", f);
  }, []);
  const go = useCallback<Go>((id, sessionId, replace) => {
    const next = id ? sessionPath(id, sessionId) : "/";
    if (next !== window.location.pathname) {
      if (replace) window.history.replaceState(null, "", next);
      else window.history.pushState(null, "", next);
    }
    setPath(next);
  }, []);
  const route = useMemo(() => routeOf(path), [path]);
  return [route, go];
}

function Workspaces({
  api,
  session,
  store,
  relays,
  onLogout,
}: {
  api: Api;
  session: Session;
  store: Store;
  relays: RelayPool;
  onLogout: () => void;
}) {
  const state = useSyncExternalStore(store.subscribe, store.getState);
  // The session's own requests (model and mode); the panels keep their own.
  const requester = useMemo(() => new Requester(relays), [relays]);
  useEffect(() => () => requester.close(), [requester]);
  const [route, go] = useRoute();
  const [workspaces, setWorkspaces] = useState<Workspace[] | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [notifyPermission, setNotifyPermission] = useState(() =>
    "Notification" in window ? Notification.permission : "denied",
  );

  const load = useCallback(async () => {
    try {
      const list = await api.listWorkspaces();
      // Each workspace is relayed by its VM's node (usually this one).
      relays.place(list);
      setWorkspaces(list);
      setLoadError(null);
    } catch (err) {
      setLoadError(
        err instanceof Error
          ? `Could not load workspaces: ${err.message}`
          : "Could not load workspaces.",
      );
    }
  }, [api, relays]);

  useEffect(() => {
    void load();
    const onFocus = () => void load();
    window.addEventListener("focus", onFocus);
    return () => window.removeEventListener("focus", onFocus);
  }, [load]);

  useEffect(() => {
    if (!workspaces) return;
    for (const w of workspaces) store.seedStatus(w.id, w.status as Status);
    store.watch(workspaces.map((w) => w.id));
  }, [workspaces, store]);

  useEffect(() => {
    document.title = badgeTitle(TITLE, state.statuses);
  }, [state.statuses]);

  useEffect(
    () =>
      store.onStatusChange((id, status, prev) => {
        if (!shouldNotify(status, prev, document.hidden)) return;
        if (!("Notification" in window) || Notification.permission !== "granted") return;
        const w = workspaces?.find((x) => x.id === id);
        const n = new Notification(`Claude needs you: ${w?.name ?? "a workspace"}`, {
          body: "A question or a permission is waiting for your answer.",
          tag: `ffcloud-${id}`,
        });
        n.onclick = () => {
          window.focus();
          // The session that waits, when this tab follows it (the workspace shown).
          const c = store.getState().conversations;
          go(id, waitingSession(c, id, c[id]?.sessions ?? undefined) ?? undefined);
          n.close();
        };
      }),
    [store, workspaces, go],
  );

  const selected = route?.workspaceId ?? null;
  const workspace = workspaces?.find((w) => w.id === selected);
  // Each workspace's pull request, as its Changes panel last found it (for the header).
  const [pullRequests, setPullRequests] = useState<Record<string, PullRequest | null>>({});
  const shownId = workspace?.id;
  const onSession = useCallback(
    (sid: string, replace?: boolean) => {
      if (shownId) go(shownId, sid, replace);
    },
    [go, shownId],
  );
  const onPullRequest = useCallback(
    (pr: PullRequest | null) => {
      if (!shownId) return;
      setPullRequests((all) => (all[shownId] === pr ? all : { ...all, [shownId]: pr }));
    },
    [shownId],
  );

  return (
    <div className={`shell ${selected ? "has-session" : "no-session"}`}>
      <a href="#main" className="skip">
        Skip to content
      </a>
      <header className="topbar">
        <a
          href="/"
          className="brand"
          onClick={(e) => {
            e.preventDefault();
            go(null);
          }}
        >
          FF Cloud
        </a>
        <ConnectionIndicator conn={state.conn} />
        <span className="spacer" />
        {notifyPermission === "default" && (
          <button
            type="button"
            className="link"
            aria-label="Enable notifications"
            onClick={() => void Notification.requestPermission().then(setNotifyPermission)}
          >
            <span className="notify-long">Enable </span>notifications
          </button>
        )}
        <ThemeSwitch />
        <span className="muted small user">{session.user.username}</span>
        <button type="button" className="link" onClick={onLogout}>
          Sign out
        </button>
      </header>
      <div className="body">
        <Sidebar
          workspaces={workspaces}
          statuses={state.statuses}
          selected={selected}
          loadError={loadError}
          onSelect={(id) => go(id)}
          onCreate={async (url) => {
            const w = await api.createWorkspace(url);
            setWorkspaces((ws) => [w, ...(ws ?? []).filter((x) => x.id !== w.id)]);
            go(w.id);
          }}
          onDelete={async (id) => {
            await api.deleteWorkspace(id);
            store.forget(id);
            setWorkspaces((ws) => (ws ?? []).filter((x) => x.id !== id));
            if (selected === id) go(null);
          }}
        />
        {selected && workspaces && !workspace ? (
          <main className="session empty" id="main">
            <p>This workspace does not exist or is not yours.</p>
          </main>
        ) : workspace && route ? (
          <WorkspaceSessions
            workspace={workspace}
            sessionId={route.sessionId}
            conversations={state.conversations}
            store={store}
            requester={requester}
            me={session.user.id}
            onBack={() => go(null)}
            onSession={onSession}
            pullRequest={pullRequests[workspace.id]}
          />
        ) : (
          <SessionView
            workspace={undefined}
            c={undefined}
            store={store}
            me={session.user.id}
            onBack={() => go(null)}
          />
        )}
        {workspace && (
          <WorkspacePanels
            key={workspace.id}
            relay={relays}
            workspaceId={workspace.id}
            onPullRequest={onPullRequest}
            status={state.conversations[workspace.id]?.status ?? state.statuses[workspace.id]}
          />
        )}
      </div>
    </div>
  );
}

export function App() {
  const api = useMemo(() => new Api(), []);
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [store, setStore] = useState<{ store: Store; relay: RelayPool } | null>(null);
  const [bootError, setBootError] = useState<string | null>(null);

  useEffect(
    () =>
      api.onSession((s) => {
        // Unsent words kept in this tab are one user's: see lib/tabData.
        if (s) claimUserData(tabStorage(), s.user.id);
        setSession(s);
      }),
    [api],
  );
  useEffect(() => {
    // A refresh cookie from an earlier visit brings the session back without a login.
    void api.refresh().then((s) => {
      if (!s) setSession(null);
    });
  }, [api]);

  const loggedIn = session !== null && session !== undefined;
  useEffect(() => {
    if (!loggedIn) return;
    let relay: RelayPool | null = null;
    let cancelled = false;
    void api
      .config()
      .then(({ relayUrl }) => {
        if (cancelled) return;
        // One connection per node that relays a workspace of this user (usually one).
        relay = new RelayPool(relayUrl, {
          connect: (nodeUrl) =>
            new RelayConnection(relayEndpoint(nodeUrl), {
              createSocket: (url, protocols) =>
                new WebSocket(url, protocols) as unknown as SocketLike,
              getToken: () => api.token(),
              refresh: async () => (await api.refresh())?.accessToken ?? null,
              onAuthFailed: () => setSession(null),
              setTimeout: (f, ms) => window.setTimeout(f, ms),
              clearTimeout: (h) => window.clearTimeout(h as number),
              random: Math.random,
            }),
          locate: () => api.listWorkspaces(),
        });
        const s = new Store(relay);
        setStore({ store: s, relay });
        relay.start();
      })
      .catch((err: unknown) => setBootError(err instanceof Error ? err.message : String(err)));
    return () => {
      cancelled = true;
      relay?.stop();
      setStore(null);
    };
  }, [loggedIn, api]);

  // Every renewed token goes to the live relay connection too.
  useEffect(() => {
    if (!store) return;
    return api.onSession((s) => {
      if (s) store.relay.renewToken(s.accessToken);
    });
  }, [api, store]);

  useEffect(() => {
    if (!store) return;
    const online = () => store.relay.nudge();
    window.addEventListener("online", online);
    return () => window.removeEventListener("online", online);
  }, [store]);

  if (session === undefined) {
    return (
      <main className="login" id="main">
        <p className="muted">Loading…</p>
      </main>
    );
  }
  if (session === null) {
    return (
      <Login
        onLogin={async (u, p) => {
          await api.login(u, p);
        }}
      />
    );
  }
  if (bootError) {
    return (
      <main className="login" id="main">
        <p className="field-error" role="alert">
          Could not start: {bootError}
        </p>
      </main>
    );
  }
  if (!store) {
    return (
      <main className="login" id="main">
        <p className="muted">Connecting…</p>
      </main>
    );
  }
  return (
    <Workspaces
      api={api}
      session={session}
      store={store.store}
      relays={store.relay}
      onLogout={() => {
        void api.logout().finally(() => {
          forgetUserData(tabStorage());
          setSession(null);
        });
      }}
    />
  );
}
