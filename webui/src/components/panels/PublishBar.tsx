/**
 * The way out of a workspace: commit what Claude left uncommitted (the message
 * editable), push the branch, open a pull request, and its state with a link.
 * Every action ends in words: done, or a readable error; never a spinner left.
 */

import { useEffect, useState } from "react";
import {
  type Changes,
  type PullRequest,
  parsePullRequest,
  RequestError,
  type Requester,
} from "../../lib/requests";
import { latest, useReply } from "./useReply";

export const DEFAULT_COMMIT_MESSAGE = "Changes made with Claude";

type Busy = "commit" | "push" | "pull_request" | null;

const BUSY_WORDS: Record<Exclude<Busy, null>, string> = {
  commit: "Committing…",
  push: "Pushing…",
  pull_request: "Opening the pull request…",
};

function why(e: unknown): string {
  return e instanceof RequestError || e instanceof Error ? e.message : String(e);
}

/** The pull request's state and link (the panel's header line). */
export function PullRequestBadge({
  pr,
  withTitle = true,
}: {
  pr: PullRequest;
  withTitle?: boolean;
}) {
  const label = `Pull request #${pr.number}: ${pr.state}`;
  return (
    <p className="pr-status small" data-state={pr.state}>
      {pr.url ? (
        <a href={pr.url} target="_blank" rel="noreferrer noopener">
          {label}
        </a>
      ) : (
        label
      )}
      {withTitle && pr.title ? <span className="muted"> {pr.title}</span> : null}
    </p>
  );
}

export function PublishBar({
  requester,
  workspaceId,
  changes,
  refresh,
  onChanged,
  onPullRequest,
}: {
  requester: Requester;
  workspaceId: string;
  changes: Changes | undefined;
  refresh: number;
  onChanged: () => void;
  /** The pull request as known here, for the session header. */
  onPullRequest?: (pr: PullRequest | null) => void;
}) {
  const [message, setMessage] = useState(DEFAULT_COMMIT_MESSAGE);
  const [busy, setBusy] = useState<Busy>(null);
  const [error, setError] = useState<string | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const [opened, setOpened] = useState<PullRequest | null>(null);
  const status = useReply(`${workspaceId}:pr:${refresh}`, async () =>
    parsePullRequest(await requester.request(workspaceId, "pr_status")),
  );
  const pr = latest(status) ?? opened;
  useEffect(() => onPullRequest?.(pr), [pr, onPullRequest]);
  const uncommitted = changes?.files.some((f) => f.uncommitted) ?? false;
  const unpushed = changes?.files.some((f) => f.unpushed) ?? false;

  async function run(step: Exclude<Busy, null>, args: Record<string, unknown> = {}) {
    setBusy(step);
    return requester.request(workspaceId, step, args);
  }

  async function commitAndPush() {
    setError(null);
    setNote(null);
    let step: "Commit" | "Push" = "Commit";
    try {
      if (uncommitted) await run("commit", { message });
      step = "Push";
      await run("push");
      setNote(uncommitted ? "Committed and pushed." : "Pushed.");
    } catch (e) {
      setError(`${step} failed: ${why(e)}`);
    } finally {
      setBusy(null);
      onChanged();
    }
  }

  async function openPullRequest() {
    setError(null);
    setNote(null);
    try {
      setOpened(parsePullRequest(await run("pull_request")));
      onChanged();
    } catch (e) {
      setError(`The pull request could not be opened: ${why(e)}`);
    } finally {
      setBusy(null);
    }
  }

  const canPush = uncommitted || unpushed;
  return (
    <section className="publish" aria-label="Commit, push and pull request">
      {pr && <PullRequestBadge pr={pr} />}
      {uncommitted && (
        <label className="small publish-message">
          Commit message
          <textarea
            value={message}
            className="publish-input"
            rows={2}
            onChange={(e) => setMessage(e.target.value)}
            disabled={busy !== null}
          />
        </label>
      )}
      <div className="publish-actions">
        <button
          type="button"
          onClick={commitAndPush}
          disabled={busy !== null || !canPush || (uncommitted && !message.trim())}
        >
          {uncommitted ? "Commit & push" : "Push"}
        </button>
        {(pr === null || pr.state !== "open") && (
          <button type="button" onClick={openPullRequest} disabled={busy !== null}>
            Create pull request
          </button>
        )}
      </div>
      {busy && (
        <p className="muted small" role="status">
          {BUSY_WORDS[busy]}
        </p>
      )}
      {note && !busy && (
        <p className="muted small" role="status">
          {note}
        </p>
      )}
      {error && (
        <p className="field-error small" role="alert">
          {error}
        </p>
      )}
      {status.state === "error" && !pr && (
        <p className="muted small">Pull request unknown: {status.message}</p>
      )}
    </section>
  );
}
