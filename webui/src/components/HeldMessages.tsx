/** The queue of messages written while Claude works: shown above the composer, editable, removable. */

import { useCallback, useEffect, useLayoutEffect, useRef, useState } from "react";
import { formatBytes, shownOf } from "../lib/attachments";
import type { Conversation } from "../lib/conversationModel";
import { COMPOSER_INPUT_ID, focusLost } from "../lib/focus";
import { canRelease, type Held, isBusy, loadHeld, MAX_HELD_MESSAGES, saveHeld } from "../lib/held";
import type { OutgoingAttachment } from "../lib/protocol";
import { tabStorage } from "../lib/tabStorage";

let counter = 0;
function heldId(): string {
  counter += 1;
  return `h${Date.now().toString(36)}${counter}`;
}

export interface HeldQueue {
  held: Held[];
  editing: string | null;
  /** Send now, or hold while a turn is going on (or others are held before it). */
  submit: (text: string, attachments?: OutgoingAttachment[]) => "sent" | "held" | "full";
  edit: (id: string, text: string) => void;
  remove: (id: string) => void;
  setEditing: (id: string | null) => void;
}

/** A workspace's held messages, released one per turn as the conversation allows. */
export function useHeldMessages(
  workspaceId: string | undefined,
  c: Conversation | undefined,
  send: (text: string, attachments?: OutgoingAttachment[]) => string,
): HeldQueue {
  const [held, setHeld] = useState<Held[]>(() =>
    workspaceId ? loadHeld(tabStorage(), workspaceId) : [],
  );
  const [editing, setEditing] = useState<string | null>(null);
  const awaiting = useRef<string | null>(null);
  // Held ids already sent: an effect run again on a stale render never sends one twice.
  const released = useRef(new Set<string>());

  useEffect(() => {
    setHeld(workspaceId ? loadHeld(tabStorage(), workspaceId) : []);
    setEditing(null);
    awaiting.current = null;
  }, [workspaceId]);

  const update = useCallback(
    (f: (prev: Held[]) => Held[]) =>
      setHeld((prev) => {
        const next = f(prev);
        if (workspaceId) saveHeld(tabStorage(), workspaceId, next);
        return next;
      }),
    [workspaceId],
  );

  // The turn is over: the first held message goes out (unless it is being edited).
  useEffect(() => {
    const first = held[0];
    if (!first || editing === first.id || !canRelease(c, awaiting.current)) return;
    if (released.current.has(first.id)) return;
    released.current.add(first.id);
    awaiting.current = send(first.text, first.attachments);
    update((prev) => prev.filter((h) => h.id !== first.id));
  }, [c, held, editing, send, update]);

  const submit = (
    text: string,
    attachments: OutgoingAttachment[] = [],
  ): "sent" | "held" | "full" => {
    const hold = isBusy(c?.status) || held.length > 0 || !canRelease(c, awaiting.current);
    if (!hold) {
      awaiting.current = send(text, attachments);
      return "sent";
    }
    if (held.length >= MAX_HELD_MESSAGES) return "full";
    const h: Held = { id: heldId(), text };
    if (attachments.length) h.attachments = attachments;
    update((prev) => [...prev, h]);
    return "held";
  };
  return {
    held,
    editing,
    submit,
    setEditing,
    edit: (id, text) => {
      update((prev) => prev.map((h) => (h.id === id ? { ...h, text } : h)));
      setEditing(null);
    },
    remove: (id) => {
      update((prev) => prev.filter((h) => h.id !== id));
      if (editing === id) setEditing(null);
    },
  };
}

function HeldRow({
  h,
  n,
  q,
  onRemove,
}: {
  h: Held;
  n: number;
  q: HeldQueue;
  onRemove: () => void;
}) {
  const [draft, setDraft] = useState(h.text);
  const box = useRef<HTMLTextAreaElement>(null);
  const editButton = useRef<HTMLButtonElement>(null);
  const wasEditing = useRef(false);
  const isEditing = q.editing === h.id;
  useLayoutEffect(() => {
    if (isEditing) box.current?.focus();
    // Saved or cancelled: the focus goes back to the row's Edit button
    // (the text box that had it is gone).
    else if (wasEditing.current && focusLost()) editButton.current?.focus();
    wasEditing.current = isEditing;
  }, [isEditing]);
  if (isEditing) {
    const save = () => {
      const t = draft.trim();
      // Emptied: gone, unless it still carries files.
      if (t || h.attachments?.length) q.edit(h.id, t);
      else q.remove(h.id);
    };
    return (
      <li className="held-item editing">
        <textarea
          ref={box}
          aria-label={`Edit queued message ${n}`}
          value={draft}
          rows={2}
          onChange={(e) => setDraft(e.target.value)}
          onKeyDown={(e) => {
            if (e.nativeEvent.isComposing) return;
            if (e.key === "Escape") {
              e.preventDefault();
              q.setEditing(null);
            } else if (e.key === "Enter" && !e.shiftKey) {
              e.preventDefault();
              save();
            }
          }}
        />
        <span className="held-actions">
          <button type="button" className="primary" onClick={save}>
            Save
          </button>
          <button type="button" onClick={() => q.setEditing(null)}>
            Cancel
          </button>
        </span>
      </li>
    );
  }
  return (
    <li className="held-item" data-testid="held-message">
      <span className="held-text">
        {h.text}
        {h.attachments?.length ? (
          <span className="held-files muted small">
            {" "}
            +{" "}
            {shownOf(h.attachments)
              .map(
                (a) =>
                  `${a.name ?? "image"} (${a.type === "text" ? `${a.size} characters` : formatBytes(a.size ?? 0)})`,
              )
              .join(", ")}
          </span>
        ) : null}
      </span>
      <span className="held-actions">
        <button
          ref={editButton}
          type="button"
          className="link"
          aria-label={`Edit queued message ${n}`}
          onClick={() => {
            setDraft(h.text);
            q.setEditing(h.id);
          }}
        >
          Edit
        </button>
        <button
          type="button"
          className="link danger-text"
          aria-label={`Remove queued message ${n}`}
          onClick={onRemove}
        >
          Remove
        </button>
      </span>
    </li>
  );
}

export function HeldMessages({ q }: { q: HeldQueue }) {
  const list = useRef<HTMLElement>(null);
  // After a Remove: the row that took its place (or the last one, or the composer).
  const refocus = useRef<number | null>(null);
  useLayoutEffect(() => {
    const at = refocus.current;
    if (at === null) return;
    refocus.current = null;
    if (!focusLost()) return;
    const n = Math.min(at, q.held.length);
    const next =
      n > 0
        ? list.current?.querySelector<HTMLElement>(`[aria-label="Remove queued message ${n}"]`)
        : document.getElementById(COMPOSER_INPUT_ID);
    next?.focus();
  });
  if (q.held.length === 0) return null;
  return (
    <section className="held" aria-label="Queued messages" ref={list}>
      <p className="held-title small muted">
        Queued ({q.held.length}): sent when Claude's turn ends, one per turn
        {q.held.length >= MAX_HELD_MESSAGES ? ` · full, at most ${MAX_HELD_MESSAGES}` : ""}
      </p>
      <ol className="held-list">
        {q.held.map((h, i) => (
          <HeldRow
            key={h.id}
            h={h}
            n={i + 1}
            q={q}
            onRemove={() => {
              refocus.current = i + 1;
              q.remove(h.id);
            }}
          />
        ))}
      </ol>
    </section>
  );
}
