/**
 * A shown workspace: its session tabs and the session view of the tab the
 * URL names. Subscribes to main, to every open session (so every tab's mark
 * is live) and to the one shown, and leaves them all when the workspace is
 * no longer shown. Creates, renames and closes sessions with the VM's
 * session ops; what the tabs show always comes from main's list line.
 */

import { useEffect, useState } from "react";
import type { Workspace } from "../lib/api";
import type { Conversation } from "../lib/conversationModel";
import { isObject, MAIN_SESSION, type Status } from "../lib/protocol";
import { type PullRequest, RequestError, type Requester } from "../lib/requests";
import {
  createBlock,
  isSessionId,
  ONLY_MAIN,
  sessionKey,
  sessionsToSubscribe,
  tabsOf,
} from "../lib/sessions";
import type { Store } from "../lib/store";
import { SessionView } from "../ui/Session";
import { SessionTabs } from "./SessionTabs";

/** The new session's id from a `session_create` reply. */
export function createdSession(result: unknown): string {
  if (isObject(result) && isSessionId(result.sessionId)) return result.sessionId;
  throw new RequestError("bad_reply", "A bad answer from the VM.");
}

export function WorkspaceSessions({
  workspace,
  sessionId,
  conversations,
  store,
  requester,
  me,
  onBack,
  onSession,
  pullRequest,
}: {
  workspace: Workspace;
  /** The session the URL names. */
  sessionId: string;
  conversations: Record<string, Conversation>;
  store: Store;
  requester: Pick<Requester, "request">;
  me: string;
  onBack: () => void;
  /** Show another session of this workspace (`replace`: instead of the current URL). */
  onSession: (sessionId: string, replace?: boolean) => void;
  pullRequest?: PullRequest | null;
}) {
  const ws = workspace.id;
  const main = conversations[ws];
  const list = main?.sessions ?? ONLY_MAIN;
  // A session just created, until the list line that names it arrives.
  const [pending, setPending] = useState<string | null>(null);
  const known = list.some((s) => s.sessionId === sessionId);
  useEffect(() => {
    if (pending && known && pending === sessionId) setPending(null);
  }, [pending, known, sessionId]);
  // A session the list does not name (deleted long after it was closed, or a wrong URL).
  const missing = main?.loaded === true && !known && sessionId !== pending;
  useEffect(() => {
    if (missing) onSession(MAIN_SESSION, true);
  }, [missing, onSession]);

  const wanted = sessionsToSubscribe(list, sessionId, pending).join(" ");
  useEffect(() => () => store.close(ws), [ws, store]);
  useEffect(() => {
    store.open(ws, wanted.split(" "));
  }, [ws, wanted, store]);

  const tabs = tabsOf(list);
  if (!known && sessionId === pending) {
    // Its line is on its way: a tab for it meanwhile.
    tabs.push({
      sessionId,
      title: "",
      createdAt: "",
      closed: false,
      number: tabs.length + 1,
      label: `Session ${tabs.length + 1}`,
    });
  }
  const statuses: Record<string, Status | null> = {};
  for (const t of tabs)
    statuses[t.sessionId] = conversations[sessionKey(ws, t.sessionId)]?.status ?? null;
  const shown = tabs.find((t) => t.sessionId === sessionId);

  return (
    <SessionView
      workspace={workspace}
      sessionId={sessionId}
      closed={shown?.closed === true}
      c={conversations[sessionKey(ws, sessionId)]}
      store={store}
      me={me}
      onBack={onBack}
      pullRequest={pullRequest}
      requester={requester}
      tabs={
        // Once main's log is here: its list line says which sessions there are.
        main?.loaded && (
          <SessionTabs
            tabs={tabs}
            shown={sessionId}
            statuses={statuses}
            createBlock={createBlock(list, main?.maxSessions ?? null)}
            onSelect={(sid) => onSession(sid)}
            onCreate={async () => {
              const sid = createdSession(await requester.request(ws, "session_create"));
              setPending(sid);
              onSession(sid);
            }}
            onRename={async (sid, title) => {
              await requester.request(sessionKey(ws, sid), "session_rename", { title });
            }}
            onClose={async (sid) => {
              await requester.request(sessionKey(ws, sid), "session_close");
              if (sid !== sessionId) return null;
              // The tab before it (main at worst) takes its place.
              const open = tabs.filter((t) => !t.closed && t.sessionId !== sid);
              const at = tabs.findIndex((t) => t.sessionId === sid);
              const before = open.filter((t) => tabs.indexOf(t) < at).at(-1);
              const next = before?.sessionId ?? MAIN_SESSION;
              onSession(next);
              return next;
            }}
          />
        )
      }
    />
  );
}
