/** What changed in the working tree against its base: a file list, and a file's diff. */

import { useState } from "react";
import type { Status } from "../../lib/protocol";
import {
  type ChangedFile,
  type PullRequest,
  parseChanges,
  parseDiff,
  type Requester,
} from "../../lib/requests";
import { CodeView } from "./CodeView";
import { PublishBar } from "./PublishBar";
import { latest, type Reply, useReply, useTreeReply } from "./useReply";

const STATUS_LETTER: Record<ChangedFile["status"], string> = {
  added: "A",
  modified: "M",
  deleted: "D",
  renamed: "R",
};

export function ChangesPanel({
  requester,
  workspaceId,
  refresh,
  onChanged,
  onPullRequest,
  status,
}: {
  requester: Requester;
  workspaceId: string;
  refresh: number;
  /** The workspace's status: while `starting` the VM may not have it, so nothing is asked. */
  status?: Status;
  /** After a commit or push: refresh the list. */
  onChanged: () => void;
  onPullRequest?: (pr: PullRequest | null) => void;
}) {
  const [selected, setSelected] = useState<string | null>(null);
  const { reply: changes, preparing } = useTreeReply(
    status,
    `${workspaceId}:${refresh}`,
    async () => parseChanges(await requester.request(workspaceId, "changes")),
  );
  const diff = useReply(
    selected === null ? null : `${workspaceId}:${selected}:${refresh}`,
    async () => parseDiff(await requester.request(workspaceId, "diff", { path: selected })),
  );
  const value = latest(changes);
  if (preparing) return <PanelPreparing what="changes" />;
  return (
    <div className="panel-body">
      <PublishBar
        requester={requester}
        workspaceId={workspaceId}
        changes={value}
        refresh={refresh}
        onChanged={onChanged}
        onPullRequest={onPullRequest}
      />
      <PanelStatus reply={changes} what="changes" />
      {value && (
        <>
          <p className="muted small">
            {value.files.length === 0
              ? `No changes against ${value.base || "the start"}.`
              : `${value.files.length} file${value.files.length === 1 ? "" : "s"} changed against ${value.base || "the start"}` +
                (value.branch ? ` on ${value.branch}` : "")}
            {value.truncated ? " (list cut short)" : ""}
          </p>
          <ul className="change-list" aria-label="Changed files">
            {value.files.map((f) => (
              <li key={f.path}>
                <button
                  type="button"
                  className={`change ${selected === f.path ? "selected" : ""}`}
                  aria-pressed={selected === f.path}
                  onClick={() => setSelected(f.path)}
                >
                  <span className={`change-status status-${f.status}`} title={f.status}>
                    {STATUS_LETTER[f.status]}
                  </span>
                  <span className="change-path">
                    {f.oldPath ? `${f.oldPath} → ` : ""}
                    {f.path}
                  </span>
                  <span className="change-counts">
                    {f.binary ? (
                      "binary"
                    ) : (
                      <>
                        <span className="plus">+{f.added}</span>{" "}
                        <span className="minus">−{f.removed}</span>
                      </>
                    )}
                  </span>
                  {f.uncommitted && <span className="tag">uncommitted</span>}
                  {f.unpushed && <span className="tag">not pushed</span>}
                  <span className="sr-only">{`, ${f.status}`}</span>
                </button>
              </li>
            ))}
          </ul>
        </>
      )}
      {selected !== null && (
        <section className="panel-detail" aria-label={`Diff of ${selected}`}>
          <h3 className="small">{selected}</h3>
          <PanelStatus reply={diff} what="the diff" />
          {latest(diff) && (
            <>
              <CodeView
                code={latest(diff)?.diff ?? ""}
                language="diff"
                label={`Unified diff of ${selected}`}
              />
              {latest(diff)?.truncated && (
                <p className="muted small">The diff is long: only its beginning is shown.</p>
              )}
            </>
          )}
        </section>
      )}
    </div>
  );
}

/** Loading words or a readable error; never a spinner left turning. */
/** A panel's whole body while its workspace is being prepared (see useTreeReply). */
export function PanelPreparing({ what }: { what: string }) {
  return (
    <div className="panel-body">
      <p className="muted small" role="status">
        Preparing the workspace… its {what} show when it is ready.
      </p>
    </div>
  );
}

export function PanelStatus<T>({ reply, what }: { reply: Reply<T>; what: string }) {
  if (reply.state === "loading")
    return (
      <p className="muted small" role="status">
        Loading {what}…
      </p>
    );
  if (reply.state === "error")
    return (
      <p className="field-error small" role="alert">
        Could not load {what}: {reply.message}
      </p>
    );
  return null;
}
