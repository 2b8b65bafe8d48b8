/** The workspace list: live status badges, create from an issue URL, delete with confirmation. */

import { useLayoutEffect, useRef, useState } from "react";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { ApiError, issueUrlError, type Workspace } from "../lib/api";
import { StatusBadge } from "./StatusBadge";

const GROUPS: { title: string; match: (s: string) => boolean }[] = [
  { title: "Waiting for you", match: (s) => s === "waiting_for_input" },
  { title: "Working", match: (s) => s === "running" || s === "starting" || s === "provisioning" },
  { title: "Other", match: () => true },
];

function CreateForm({ onCreate }: { onCreate: (url: string) => Promise<void> }) {
  const [url, setUrl] = useState("");
  const [touched, setTouched] = useState(false);
  const [serverError, setServerError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const localError = issueUrlError(url);
  const shown = serverError ?? (touched && url !== "" ? localError : null);
  return (
    <form
      className="create"
      noValidate
      onSubmit={async (e) => {
        e.preventDefault();
        setTouched(true);
        if (localError) return;
        setBusy(true);
        setServerError(null);
        try {
          await onCreate(url.trim());
          setUrl("");
          setTouched(false);
        } catch (err) {
          setServerError(err instanceof ApiError ? err.message : "Could not reach the server.");
        } finally {
          setBusy(false);
        }
      }}
    >
      <label htmlFor="issue-url">New workspace from a GitHub issue</label>
      <div className="row">
        <input
          id="issue-url"
          type="url"
          inputMode="url"
          placeholder="https://github.com/owner/repo/issues/1"
          value={url}
          aria-invalid={shown !== null}
          aria-describedby={shown ? "issue-url-error" : undefined}
          onChange={(e) => {
            setUrl(e.target.value);
            setServerError(null);
          }}
          onBlur={() => setTouched(true)}
        />
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Creating…" : "Create"}
        </button>
      </div>
      {shown && (
        <p id="issue-url-error" className="field-error" role="alert">
          {shown}
        </p>
      )}
    </form>
  );
}

export function Sidebar({
  workspaces,
  statuses,
  selected,
  loadError,
  onSelect,
  onCreate,
  onDelete,
}: {
  workspaces: Workspace[] | null;
  statuses: Record<string, string>;
  selected: string | null;
  loadError: string | null;
  onSelect: (id: string) => void;
  onCreate: (url: string) => Promise<void>;
  onDelete: (id: string) => Promise<void>;
}) {
  const [confirm, setConfirm] = useState<Workspace | null>(null);
  // An item moves to another group when its status changes, and React makes it anew there:
  // give the keyboard focus back to the same control of the same workspace.
  const focused = useRef<{ id: string; kind: string } | null>(null);
  const nav = useRef<HTMLElement>(null);
  useLayoutEffect(() => {
    const f = focused.current;
    if (!f || !nav.current || (document.activeElement && document.activeElement !== document.body))
      return;
    const item = Array.from(nav.current.querySelectorAll<HTMLElement>("[data-workspace-id]")).find(
      (li) => li.dataset.workspaceId === f.id,
    );
    item?.querySelector<HTMLElement>(`[data-focus="${f.kind}"]`)?.focus();
  });
  const statusOf = (w: Workspace) => statuses[w.id] ?? w.status;
  const left = new Set(workspaces ?? []);
  const groups = GROUPS.map((g) => {
    const items = [...left].filter((w) => g.match(statusOf(w)));
    for (const w of items) left.delete(w);
    return { title: g.title, items };
  }).filter((g) => g.items.length > 0);
  return (
    <nav className="sidebar" aria-label="Workspaces" ref={nav}>
      <CreateForm onCreate={onCreate} />
      {loadError && (
        <p className="field-error" role="alert">
          {loadError}
        </p>
      )}
      {workspaces === null && !loadError && <p className="muted">Loading workspaces…</p>}
      {workspaces?.length === 0 && (
        <p className="muted">No workspaces yet. Paste an issue URL above to start one.</p>
      )}
      {groups.map((g) => (
        <section key={g.title} aria-label={g.title}>
          <h2 className="group-title">{g.title}</h2>
          <ul className="ws-list">
            {g.items.map((w) => {
              const s = statusOf(w);
              return (
                <li
                  key={w.id}
                  className={`ws ${w.id === selected ? "selected" : ""} ${s === "waiting_for_input" ? "waiting" : ""}`}
                  data-testid="workspace-item"
                  data-workspace-id={w.id}
                  onFocus={(e) => {
                    const kind = (e.target as HTMLElement).dataset.focus;
                    focused.current = kind ? { id: w.id, kind } : null;
                  }}
                  onBlur={(e) => {
                    // Focus moving elsewhere on purpose (not lost with a removed node).
                    if (e.relatedTarget) focused.current = null;
                  }}
                >
                  <a
                    data-focus="open"
                    href={`/w/${encodeURIComponent(w.id)}`}
                    aria-current={w.id === selected ? "page" : undefined}
                    onClick={(e) => {
                      if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
                      e.preventDefault();
                      onSelect(w.id);
                    }}
                  >
                    <span className="ws-name">{w.name}</span>
                    <span className="ws-issue">
                      {w.issue.owner}/{w.issue.repo}#{w.issue.number}
                      {w.issue.title ? ` · ${w.issue.title}` : ""}
                    </span>
                    <StatusBadge status={s} />
                  </a>
                  <button
                    type="button"
                    data-focus="delete"
                    className="icon danger-text"
                    aria-label={`Delete ${w.name}`}
                    onClick={() => setConfirm(w)}
                  >
                    ✕
                  </button>
                </li>
              );
            })}
          </ul>
        </section>
      ))}
      {confirm && (
        <ConfirmDialog
          title={`Delete ${confirm.name}?`}
          confirmLabel="Delete workspace"
          errorOf={(err) => (err instanceof ApiError ? err.message : "Could not delete it.")}
          onCancel={() => setConfirm(null)}
          onConfirm={async () => {
            await onDelete(confirm.id);
            setConfirm(null);
          }}
        >
          Its session stops and its conversation is gone for good. The GitHub issue is not touched.
        </ConfirmDialog>
      )}
    </nav>
  );
}
