/** The session view of one workspace: conversation, open prompts, composer. */

import { type ReactNode, useCallback, useEffect, useLayoutEffect, useRef, useState } from "react";
import {
  AttachButton,
  ComposerFilesView,
  useAttachmentLimits,
  useComposerFiles,
} from "../components/Attachments";
import { useCommandPalette } from "../components/CommandPalette";
import { HeldMessages, useHeldMessages } from "../components/HeldMessages";
import { PullRequestBadge } from "../components/panels/PublishBar";
import { SessionControls } from "../components/SessionControls";
import { UsageMeter } from "../components/UsageMeter";
import type { Workspace } from "../lib/api";
import type { AttachmentLimits } from "../lib/attachments";
import type { ConnState } from "../lib/connection";
import { type Conversation, openPrompts } from "../lib/conversationModel";
import { type DraftBook, drafts } from "../lib/drafts";
import { COMPOSER_INPUT_ID, focusComposerIfLost } from "../lib/focus";
import { isBusy } from "../lib/held";
import { MAIN_SESSION, type OutgoingAttachment } from "../lib/protocol";
import type { PullRequest, Requester } from "../lib/requests";
import { sessionKey } from "../lib/sessions";
import type { Store } from "../lib/store";
import { statusLabel } from "./format";
import { Messages } from "./Messages";
import { PermissionCard, PlanCard, QuestionCard } from "./Prompts";
import { StatusBadge } from "./StatusBadge";

/** Why the composer is disabled, or null when it is usable. */
export function composerBlock(c: Conversation | undefined): string | null {
  if (!c?.loaded) return "Loading the session…";
  if (!c.online || c.status === "offline")
    return "The VM is offline: you can send messages again when it is back.";
  if (c.status === "stopped") return "The session has stopped.";
  return null;
}

function Composer({
  disabledReason,
  running,
  onSend,
  onInterrupt,
  loadCommands,
  limits,
  draftKey,
  book = drafts,
}: {
  /** Whose draft this composer keeps (the conversation's key); none: nothing kept. */
  draftKey?: string;
  /** Where drafts are kept (tests give their own). */
  book?: DraftBook;
  disabledReason: string | null;
  running: boolean;
  /** Asks the VM for the slash commands (the palette on "/"). */
  loadCommands?: () => Promise<unknown>;
  /** False keeps the text in the box (the queue is full). */
  onSend: (text: string, attachments: OutgoingAttachment[]) => boolean;
  onInterrupt: () => void;
  limits: AttachmentLimits;
}) {
  // The draft left here before (another tab, workspace, or a reload), read once.
  const [initial] = useState(() =>
    draftKey === undefined ? { text: "", files: [] } : book.get(draftKey),
  );
  const [text, setText] = useState(initial.text);
  const ref = useRef<HTMLTextAreaElement>(null);
  // Stop goes away with the turn: the focus it had comes back to the text box.
  const stopHadFocus = useRef(false);
  useLayoutEffect(() => {
    if (!running && stopHadFocus.current) {
      stopHadFocus.current = false;
      focusComposerIfLost();
    }
  }, [running]);
  const palette = useCommandPalette({
    text,
    setText,
    load: loadCommands,
    focusInput: () => ref.current?.focus(),
  });
  const cf = useComposerFiles(limits, initial.files);
  const attached = cf.files.drafts;
  useEffect(() => {
    if (draftKey !== undefined) book.set(draftKey, { text, files: attached });
  }, [draftKey, book, text, attached]);
  const empty = !text.trim() && cf.files.drafts.length === 0;
  const send = () => {
    const t = text.trim();
    if (empty || disabledReason || cf.files.busy > 0) return;
    const attachments = cf.take(t);
    if (!attachments) return;
    if (onSend(t, attachments)) {
      setText("");
      cf.clear();
      if (draftKey !== undefined) book.clear(draftKey);
    }
  };
  // biome-ignore lint/correctness/useExhaustiveDependencies: the height follows the text.
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, 200)}px`;
  }, [text]);
  return (
    <form
      className={`composer${cf.dragging ? " dragging" : ""}`}
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
      {...cf.dropProps}
    >
      <ComposerFilesView cf={cf} />
      <label htmlFor={COMPOSER_INPUT_ID} className="sr-only">
        Message to Claude
      </label>
      {palette.element}
      <AttachButton files={cf.files} disabled={disabledReason !== null} />
      <textarea
        {...palette.inputProps}
        id={COMPOSER_INPUT_ID}
        ref={ref}
        rows={1}
        value={text}
        disabled={disabledReason !== null}
        aria-describedby={disabledReason ? "composer-reason" : "composer-hint"}
        placeholder={disabledReason ? "" : "Message Claude…"}
        onChange={(e) => setText(e.target.value)}
        onPaste={cf.onPaste}
        onKeyDown={(e) => {
          if (e.nativeEvent.isComposing || e.keyCode === 229) return; // IME at work
          if (palette.onKeyDown(e)) return;
          // Ctrl/Cmd+. is the session view's, wherever the focus is.
          if (e.key === "Enter" && (e.ctrlKey || e.metaKey || !e.shiftKey)) {
            e.preventDefault();
            send();
          }
        }}
      />
      {running ? (
        <button
          type="button"
          className="danger"
          onClick={onInterrupt}
          title="Stop Claude (Ctrl+.)"
          onFocus={() => {
            stopHadFocus.current = true;
          }}
          onBlur={(e) => {
            if (e.relatedTarget) stopHadFocus.current = false;
          }}
        >
          Stop
        </button>
      ) : null}
      <button
        type="submit"
        className="primary"
        disabled={disabledReason !== null || empty || cf.files.busy > 0}
      >
        Send
      </button>
      {disabledReason ? (
        <p id="composer-reason" className="composer-reason" role="status">
          {disabledReason}
        </p>
      ) : (
        <p id="composer-hint" className="sr-only">
          {running
            ? "Claude is working: what you send now is queued and goes out when the turn ends. Ctrl+. stops."
            : "Enter sends, Shift+Enter starts a new line, / at the start lists the commands, Ctrl+. stops Claude. Paste or drop images and text files to attach them."}
        </p>
      )}
    </form>
  );
}

export function ConnectionIndicator({ conn }: { conn: ConnState }) {
  const label = {
    open: "Connected",
    connecting: "Connecting…",
    reconnecting: "Reconnecting…",
    stopped: "Disconnected",
  }[conn];
  return (
    <span className={`conn conn-${conn}`} role="status" aria-live="polite" data-testid="connection">
      <span className="dot" aria-hidden="true" />
      {label}
    </span>
  );
}

export function SessionView({
  workspace,
  c,
  store,
  me,
  onBack,
  pullRequest,
  requester,
  sessionId = MAIN_SESSION,
  closed = false,
  tabs,
}: {
  workspace: Workspace | undefined;
  c: Conversation | undefined;
  store: Store;
  me: string;
  onBack: () => void;
  /** The workspace branch's pull request, once the Changes panel has looked it up. */
  pullRequest?: PullRequest | null;
  /** Asks the VM (model and mode); without it the pickers are not shown. */
  requester?: Pick<Requester, "request">;
  /** Which of the workspace's sessions `c` is (the caller subscribes to it). */
  sessionId?: string;
  /** A closed session: its transcript, read only. */
  closed?: boolean;
  /** The session tabs, under the header. */
  tabs?: ReactNode;
}) {
  // The session's key: everything below that sends acts on this session.
  const id = workspace ? sessionKey(workspace.id, sessionId) : undefined;
  // The list's status is the workspace's (its most urgent session): main's until it has loaded.
  const listed = sessionId === MAIN_SESSION ? workspace?.status : undefined;
  const scroller = useRef<HTMLDivElement>(null);
  const [stuck, setStuck] = useState(true);
  const send = useCallback(
    (t: string, files?: OutgoingAttachment[]) =>
      !id ? "" : files?.length ? store.sendUserMessage(id, t, files) : store.sendUserMessage(id, t),
    [id, store],
  );
  const limits = useAttachmentLimits(id, requester);
  const queue = useHeldMessages(id, c, send);
  const busy = !closed && isBusy(c?.loaded ? c.status : listed);
  const loadCommands = useCallback(
    // The commands of the session shown (each session has its own Claude Code).
    () =>
      id && requester
        ? requester.request(id, "session_commands")
        : Promise.reject(new Error("No session.")),
    [id, requester],
  );

  // Ctrl/Cmd+. stops the turn from anywhere in the page, prompts open or not.
  useEffect(() => {
    if (!id || !busy) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "." && (e.ctrlKey || e.metaKey) && !e.isComposing) {
        e.preventDefault();
        store.interrupt(id);
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [id, busy, store]);

  // Another session's transcript starts at its latest message.
  // biome-ignore lint/correctness/useExhaustiveDependencies: on each new session.
  useEffect(() => setStuck(true), [id]);

  // Follow the stream while the reader is at the bottom; leave them be when they scrolled up.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (el && stuck) el.scrollTop = el.scrollHeight;
  });
  const onScroll = useCallback(() => {
    const el = scroller.current;
    if (el) setStuck(el.scrollHeight - el.scrollTop - el.clientHeight < 40);
  }, []);
  // The dock growing (a confirmation, the queue, the palette) shrinks the
  // conversation without a render here: a reader at the bottom stays there.
  const stuckNow = useRef(stuck);
  stuckNow.current = stuck;
  // biome-ignore lint/correctness/useExhaustiveDependencies: the scroller exists once the workspace does.
  useEffect(() => {
    const el = scroller.current;
    if (!el || typeof ResizeObserver === "undefined") return;
    const follow = new ResizeObserver(() => {
      if (stuckNow.current) el.scrollTop = el.scrollHeight;
    });
    follow.observe(el);
    return () => follow.disconnect();
  }, [id]);

  if (!workspace || !id) {
    return (
      <main className="session empty" id="main">
        <p>Choose a workspace, or create one from a GitHub issue.</p>
      </main>
    );
  }
  const prompts = c && !closed ? openPrompts(c) : [];
  const status = c?.loaded ? c.status : (listed ?? null);
  const running = status === "running";
  const issue = workspace.issue;
  return (
    <main className="session" id="main" aria-label={`Session ${workspace.name}`}>
      <header className="session-head">
        <button type="button" className="back" onClick={onBack} aria-label="Back to workspaces">
          ←
        </button>
        <div className="session-title">
          <h2>{workspace.name}</h2>
          <a href={issue.url} target="_blank" rel="noopener noreferrer" className="muted small">
            {issue.owner}/{issue.repo}#{issue.number}
            {issue.title ? ` · ${issue.title}` : ""}
          </a>
          {pullRequest && <PullRequestBadge pr={pullRequest} withTitle={false} />}
        </div>
        <StatusBadge status={status ?? undefined} />
      </header>
      {tabs}
      {workspace.lostAt && (
        <p className="notice lost" role="status">
          Its VM stopped answering and was given up on at{" "}
          {new Date(workspace.lostAt).toLocaleString()}; the conversation started over on another
          VM.
        </p>
      )}
      <div className="scroll-area">
        <div className="scroller" ref={scroller} onScroll={onScroll}>
          <div
            className="messages"
            role="log"
            aria-live="polite"
            aria-relevant="additions"
            aria-label="Conversation"
          >
            {!c?.loaded && <p className="muted center">Loading session…</p>}
            {c?.loaded && c.items.length === 0 && c.outbox.length === 0 && (
              <div className="empty-state">
                <h3>Ready to start</h3>
                <p className="muted">
                  Ask Claude about {issue.title ? `“${issue.title}”` : "this issue"}.
                </p>
              </div>
            )}
            {c && (
              <Messages
                c={c}
                me={me}
                onRetry={(cid) => store.retry(id, cid)}
                onDiscard={(cid) => store.discard(id, cid)}
              />
            )}
            {running && prompts.length === 0 && (
              <div className="working" aria-hidden="true">
                <span className="pulse" /> Claude is working…
              </div>
            )}
          </div>
        </div>
        {!stuck && (
          <button
            type="button"
            className="to-bottom"
            onClick={() => {
              const el = scroller.current;
              if (el) el.scrollTop = el.scrollHeight;
              setStuck(true);
            }}
          >
            ↓ Latest
          </button>
        )}
      </div>
      <div className="dock">
        {/* The notice and the cards scroll in an area of their own, so a tall plan
            or permission card never pushes the composer and pickers out of view. */}
        <div className="dock-prompts">
          {c?.notice && (
            <div className="notice" role="alert">
              {c.notice}
              <button type="button" className="link" onClick={() => store.dismissNotice(id)}>
                Dismiss
              </button>
            </div>
          )}
          {prompts.map((p) =>
            p.kind === "question" ? (
              <QuestionCard
                key={p.key}
                item={p}
                onAnswer={(a) => store.answer(id, p.requestId, a)}
              />
            ) : p.toolName === "ExitPlanMode" ? (
              <PlanCard
                key={p.key}
                item={p}
                onDecide={(allow, m) => store.decide(id, p.requestId, allow, m)}
              />
            ) : (
              <PermissionCard
                key={p.key}
                item={p}
                onDecide={(allow, m) => store.decide(id, p.requestId, allow, m)}
              />
            ),
          )}
        </div>
        {closed ? (
          <p className="notice session-closed" role="status">
            This session is closed: its transcript is read only.
          </p>
        ) : (
          <>
            <HeldMessages q={queue} />
            <Composer
              key={id}
              draftKey={id}
              disabledReason={composerBlock(c)}
              running={busy}
              limits={limits}
              onSend={(t, files) => {
                const r = queue.submit(t, files);
                if (r === "sent") setStuck(true);
                return r !== "full";
              }}
              onInterrupt={() => store.interrupt(id)}
              loadCommands={requester ? loadCommands : undefined}
            />
          </>
        )}
        {c && requester && !closed ? (
          <SessionControls workspaceId={id} settings={c.settings} requester={requester} />
        ) : null}
        {c ? <UsageMeter usage={c.usage} /> : null}
        <span className="sr-only" role="status">
          {statusLabel(status)}
        </span>
      </div>
    </main>
  );
}
