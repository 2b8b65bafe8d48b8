/**
 * The tabs of a workspace's sessions, above the conversation: one per open
 * session (and the closed one being read), a mark on each that runs or waits
 * for input, `+` for a new one, rename (double-click, F2 or the menu; Enter
 * saves, Escape cancels), close with a confirmation (main has none), and a
 * "Closed sessions" menu. Keyboard: arrow keys, Home and End move between
 * tabs, Enter or Space opens one.
 */

import { type KeyboardEvent, useEffect, useRef, useState } from "react";
import { MAIN_SESSION, type Status } from "../lib/protocol";
import { MAX_TITLE_LENGTH, type Tab } from "../lib/sessions";
import { ConfirmDialog } from "./ConfirmDialog";

/** What a tab's mark says, or null when it has none. */
export function markOf(status: Status | null | undefined): string | null {
  if (status === "waiting_for_input") return "waiting for input";
  if (status === "running") return "running";
  return null;
}

function errorText(e: unknown, what: string): string {
  return e instanceof Error && e.message ? `${what}: ${e.message}` : `${what}.`;
}

/** A small menu under a button: arrow keys move, Escape closes and gives the focus back. */
function Menu({
  label,
  buttonLabel,
  buttonClass,
  items,
}: {
  /** The button's accessible name. */
  label: string;
  buttonLabel: string;
  buttonClass?: string;
  items: { label: string; onSelect: () => void; danger?: boolean }[];
}) {
  const [open, setOpen] = useState(false);
  const button = useRef<HTMLButtonElement>(null);
  const list = useRef<HTMLDivElement>(null);
  const wrap = useRef<HTMLSpanElement>(null);
  useEffect(() => {
    if (!open) return;
    list.current?.querySelector<HTMLButtonElement>("[role=menuitem]")?.focus();
    // A click or the focus anywhere else closes it.
    const away = (e: Event) => {
      if (!wrap.current?.contains(e.target as Node | null)) setOpen(false);
    };
    document.addEventListener("pointerdown", away);
    document.addEventListener("focusin", away);
    return () => {
      document.removeEventListener("pointerdown", away);
      document.removeEventListener("focusin", away);
    };
  }, [open]);
  const close = (focus: boolean) => {
    setOpen(false);
    if (focus) button.current?.focus();
  };
  const onKeyDown = (e: KeyboardEvent) => {
    const all = [...(list.current?.querySelectorAll<HTMLButtonElement>("[role=menuitem]") ?? [])];
    const at = all.indexOf(document.activeElement as HTMLButtonElement);
    if (e.key === "Escape") {
      e.preventDefault();
      close(true);
    } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const step = e.key === "ArrowDown" ? 1 : -1;
      all[(at + step + all.length) % all.length]?.focus();
    } else if (e.key === "Tab") {
      close(false);
    }
  };
  return (
    <span className="menu-wrap" ref={wrap}>
      <button
        ref={button}
        type="button"
        className={buttonClass}
        aria-label={label}
        aria-haspopup="menu"
        aria-expanded={open}
        onClick={() => setOpen((o) => !o)}
      >
        {buttonLabel}
      </button>
      {open && (
        <div className="menu" role="menu" aria-label={label} ref={list} onKeyDown={onKeyDown}>
          {items.map((item) => (
            <button
              key={item.label}
              type="button"
              role="menuitem"
              tabIndex={-1}
              className={item.danger ? "danger-text" : undefined}
              onClick={() => {
                close(true);
                item.onSelect();
              }}
            >
              {item.label}
            </button>
          ))}
        </div>
      )}
    </span>
  );
}

function RenameField({
  tab,
  onSave,
  onDone,
}: {
  tab: Tab;
  onSave: (title: string) => void;
  onDone: () => void;
}) {
  const [draft, setDraft] = useState(tab.title || tab.label);
  const done = useRef(false);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => {
    input.current?.focus();
    input.current?.select();
  }, []);
  const finish = (save: boolean) => {
    if (done.current) return;
    done.current = true;
    const t = draft.trim();
    if (save && t && t !== tab.label) onSave(t);
    onDone();
  };
  return (
    <input
      ref={input}
      className="tab-rename"
      aria-label={`New name for ${tab.label}`}
      value={draft}
      maxLength={MAX_TITLE_LENGTH}
      onChange={(e) => setDraft(e.target.value)}
      onKeyDown={(e) => {
        if (e.nativeEvent.isComposing) return;
        if (e.key === "Enter") {
          e.preventDefault();
          finish(true);
        } else if (e.key === "Escape") {
          e.preventDefault();
          finish(false);
        }
      }}
      onBlur={() => finish(true)}
    />
  );
}

export function SessionTabs({
  tabs,
  shown,
  statuses,
  createBlock,
  onSelect,
  onCreate,
  onRename,
  onClose,
}: {
  /** Every session of the list, open and closed, oldest first. */
  tabs: Tab[];
  /** The session shown. */
  shown: string;
  /** Each session's status, for its mark. */
  statuses: Record<string, Status | null | undefined>;
  /** Why `+` is disabled, or null. */
  createBlock: string | null;
  onSelect: (sessionId: string) => void;
  onCreate: () => Promise<void>;
  onRename: (sessionId: string, title: string) => Promise<void>;
  /** Resolves once the session is closed, to the session shown next (null: the same). */
  onClose: (sessionId: string) => Promise<string | null>;
}) {
  const [renaming, setRenaming] = useState<string | null>(null);
  const [closing, setClosing] = useState<Tab | null>(null);
  const [creating, setCreating] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const strip = useRef<HTMLDivElement>(null);
  const visible = tabs.filter((t) => !t.closed || t.sessionId === shown);
  const closed = tabs.filter((t) => t.closed);
  const current = tabs.find((t) => t.sessionId === shown);

  const focusTab = (sessionId: string) =>
    strip.current?.querySelector<HTMLButtonElement>(`[data-session="${sessionId}"]`)?.focus();
  // After a close the focus goes to the tab shown next, once it is there (not to the page).
  const focusNext = useRef<string | null>(null);
  useEffect(() => {
    const next = focusNext.current;
    if (next === null || next !== shown || !strip.current) return;
    focusNext.current = null;
    focusTab(next);
  });

  const rename = (sessionId: string, title: string) => {
    setError(null);
    onRename(sessionId, title).catch((e: unknown) => setError(errorText(e, "Could not rename it")));
  };
  const startRename = (t: Tab) => {
    if (!t.closed) setRenaming(t.sessionId);
  };
  const askClose = (t: Tab) => {
    if (t.sessionId !== MAIN_SESSION && !t.closed) setClosing(t);
  };

  const onTabKey = (e: KeyboardEvent<HTMLButtonElement>, t: Tab) => {
    const at = visible.findIndex((v) => v.sessionId === t.sessionId);
    let to: number | null = null;
    if (e.key === "ArrowRight") to = (at + 1) % visible.length;
    else if (e.key === "ArrowLeft") to = (at - 1 + visible.length) % visible.length;
    else if (e.key === "Home") to = 0;
    else if (e.key === "End") to = visible.length - 1;
    else if (e.key === "F2") {
      e.preventDefault();
      startRename(t);
      return;
    } else if (e.key === "Delete") {
      e.preventDefault();
      askClose(t);
      return;
    }
    if (to === null) return;
    e.preventDefault();
    const next = visible[to];
    if (next) focusTab(next.sessionId);
  };

  return (
    <nav className="session-tabs" aria-label="Sessions of this workspace">
      <div className="tablist" role="tablist" aria-label="Sessions" ref={strip}>
        {visible.map((t) => {
          const selected = t.sessionId === shown;
          if (renaming === t.sessionId) {
            return (
              <RenameField
                key={t.sessionId}
                tab={t}
                onSave={(title) => rename(t.sessionId, title)}
                onDone={() => {
                  setRenaming(null);
                  requestAnimationFrame(() => focusTab(t.sessionId));
                }}
              />
            );
          }
          const mark = t.closed ? "closed" : markOf(statuses[t.sessionId]);
          const status = statuses[t.sessionId];
          return (
            <button
              key={t.sessionId}
              type="button"
              role="tab"
              className={`session-tab${t.closed ? " closed" : ""}`}
              data-session={t.sessionId}
              data-status={t.closed ? "closed" : (status ?? "")}
              aria-selected={selected}
              aria-controls="main"
              tabIndex={selected ? 0 : -1}
              title={t.closed ? undefined : "Double-click or F2 to rename"}
              onClick={() => onSelect(t.sessionId)}
              onDoubleClick={() => startRename(t)}
              onKeyDown={(e) => onTabKey(e, t)}
            >
              {markOf(status) && !t.closed && (
                <span className={`tab-mark tab-mark-${status}`} aria-hidden="true" />
              )}
              <span className="tab-label">{t.label}</span>
              {mark && <span className="sr-only">, {mark}</span>}
              {t.closed && (
                <span className="tab-closed-note" aria-hidden="true">
                  closed
                </span>
              )}
            </button>
          );
        })}
      </div>
      {current && !current.closed && (
        <Menu
          label={`Actions for ${current.label}`}
          buttonLabel="⋯"
          buttonClass="icon tab-actions"
          items={[
            { label: "Rename", onSelect: () => startRename(current) },
            ...(current.sessionId === MAIN_SESSION
              ? []
              : [{ label: "Close session", onSelect: () => askClose(current), danger: true }]),
          ]}
        />
      )}
      <button
        type="button"
        className="icon tab-new"
        aria-label="New session"
        aria-describedby={createBlock ? "tab-new-block" : undefined}
        title={createBlock ?? "New session"}
        disabled={createBlock !== null || creating}
        onClick={async () => {
          setCreating(true);
          setError(null);
          try {
            await onCreate();
          } catch (e) {
            setError(errorText(e, "Could not start a session"));
          } finally {
            setCreating(false);
          }
        }}
      >
        +
      </button>
      {closed.length > 0 && (
        <Menu
          label={`Closed sessions (${closed.length})`}
          buttonLabel={`Closed (${closed.length})`}
          buttonClass="link tab-closed-menu"
          items={closed.map((t) => ({ label: t.label, onSelect: () => onSelect(t.sessionId) }))}
        />
      )}
      {createBlock && (
        <span id="tab-new-block" className="small muted tab-block">
          {createBlock}
        </span>
      )}
      {error && (
        <p className="error-text small tab-error" role="alert">
          {error}
          <button type="button" className="link" onClick={() => setError(null)}>
            Dismiss
          </button>
        </p>
      )}
      {closing && (
        <ConfirmDialog
          title={`Close ${closing.label}?`}
          confirmLabel="Close session"
          errorOf={(e) => errorText(e, "Could not close it")}
          onCancel={() => {
            setClosing(null);
            requestAnimationFrame(() => focusTab(closing.sessionId));
          }}
          onConfirm={async () => {
            focusNext.current = (await onClose(closing.sessionId)) ?? shown;
            setClosing(null);
          }}
        >
          Claude stops working in it and anything it asked is cancelled. Its transcript stays
          readable under Closed sessions.
        </ConfirmDialog>
      )}
    </nav>
  );
}
