/**
 * The panels beside the conversation: Changes, Files and Terminal. Desktop: a column
 * beside the session. Phone: tabs, where "Conversation" shows the session and
 * the others cover it. Refreshed after each tool run in the stream and on request.
 */

import { useEffect, useMemo, useState } from "react";
import type { Status } from "../../lib/protocol";
import { type PullRequest, type Relay, Requester, treeMayHaveChanged } from "../../lib/requests";
import { ChangesPanel } from "./ChangesPanel";
import { FilesPanel } from "./FilesPanel";
import { TerminalPanel } from "./TerminalPanel";

type Tab = "conversation" | "changes" | "files" | "terminal";

/** A burst of tool results refreshes once, this long after the last. */
export const REFRESH_DEBOUNCE_MS = 400;

/** The layout's phone breakpoint (styles.css). */
function isPhone(): boolean {
  return typeof window !== "undefined" && !!window.matchMedia?.("(max-width: 760px)").matches;
}

export function WorkspacePanels({
  relay,
  workspaceId,
  onPullRequest,
  status,
}: {
  relay: Relay;
  workspaceId: string;
  /** The workspace's status (the Changes panel waits while it is `starting`). */
  status?: Status;
  /** The workspace's pull request as the Changes panel knows it (for the header). */
  onPullRequest?: (pr: PullRequest | null) => void;
}) {
  const requester = useMemo(() => new Requester(relay), [relay]);
  useEffect(() => () => requester.close(), [requester]);
  // A phone starts on the conversation; a desktop shows it anyway, beside Changes.
  const [tab, setTab] = useState<Tab>(() => (isPhone() ? "conversation" : "changes"));
  const [refresh, setRefresh] = useState(0);
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const off = relay.onMessage((m) => {
      if (!treeMayHaveChanged(m, workspaceId)) return;
      clearTimeout(timer);
      timer = setTimeout(() => setRefresh((n) => n + 1), REFRESH_DEBOUNCE_MS);
    });
    return () => {
      off();
      clearTimeout(timer);
    };
  }, [relay, workspaceId]);
  // On a desktop the column always shows a panel: Changes unless another was chosen.
  const shown: Exclude<Tab, "conversation"> = tab === "conversation" ? "changes" : tab;
  const tabs: [Tab, string][] = [
    ["conversation", "Conversation"],
    ["changes", "Changes"],
    ["files", "Files"],
    ["terminal", "Terminal"],
  ];
  return (
    <aside
      className={`panels ${tab === "conversation" ? "panels-closed" : "panels-open"}`}
      aria-label="Workspace panels"
    >
      <div className="panel-tabs" role="tablist" aria-label="Workspace views">
        {tabs.map(([t, label]) => (
          <button
            key={t}
            type="button"
            role="tab"
            id={`panel-tab-${t}`}
            className={`panel-tab tab-${t}`}
            aria-selected={tab === t}
            aria-controls={t === "conversation" ? "main" : "panel-view"}
            onClick={() => setTab(t)}
          >
            {label}
          </button>
        ))}
        <button
          type="button"
          className="link panel-refresh"
          onClick={() => setRefresh((n) => n + 1)}
          aria-label="Refresh the panel"
        >
          Refresh
        </button>
      </div>
      <div
        className="panel-view"
        id="panel-view"
        role="tabpanel"
        aria-labelledby={`panel-tab-${shown}`}
      >
        {/* Always mounted: the terminals keep their shells and scroll-back. */}
        <TerminalPanel
          relay={relay}
          requester={requester}
          workspaceId={workspaceId}
          visible={shown === "terminal" && tab !== "conversation"}
        />
        {shown === "terminal" ? null : shown === "changes" ? (
          <ChangesPanel
            requester={requester}
            workspaceId={workspaceId}
            refresh={refresh}
            onChanged={() => setRefresh((n) => n + 1)}
            onPullRequest={onPullRequest}
            status={status}
          />
        ) : (
          <FilesPanel
            requester={requester}
            workspaceId={workspaceId}
            refresh={refresh}
            status={status}
          />
        )}
      </div>
    </aside>
  );
}
