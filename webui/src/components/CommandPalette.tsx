/**
 * The slash command palette of the composer: "/" at the start of the text
 * opens it with the session's commands (the VM's `session_commands`),
 * typing narrows it, arrows move, Enter or Tab (or a click, a tap) puts
 * `/name ` in the composer, Escape closes it. The text box stays focused
 * throughout and acts as the combobox: the list is a listbox whose active
 * option it names with aria-activedescendant. The options are in groups
 * (role group, named by its heading): the repository's own commands, the
 * built-in ones, and any other.
 */

import {
  type KeyboardEvent,
  type ReactNode,
  type TextareaHTMLAttributes,
  useEffect,
  useId,
  useMemo,
  useState,
} from "react";
import {
  completion,
  filterCommands,
  groupCommands,
  type OfferedCommands,
  paletteKey,
  paletteQuery,
  parseCommands,
  shownDescription,
} from "../lib/commands";
import "./CommandPalette.css";

/** How soon a session that was not ready for its commands is asked again (palette open). */
export const NOT_READY_RETRY_MS = 2000;

export interface CommandPalette {
  /** For the text box: the combobox role and its aria-* while the palette is open. */
  inputProps: TextareaHTMLAttributes<HTMLTextAreaElement>;
  /** The text box's keys first go here; true when the palette used the key. */
  onKeyDown: (e: KeyboardEvent<HTMLTextAreaElement>) => boolean;
  /** The palette, or null when closed. */
  element: ReactNode;
}

export function useCommandPalette({
  text,
  setText,
  load,
  focusInput,
}: {
  text: string;
  setText: (t: string) => void;
  /** Asks the VM for the commands (`session_commands`); without it there is no palette. */
  load?: () => Promise<unknown>;
  focusInput: () => void;
}): CommandPalette {
  const listId = useId();
  const [offered, setOffered] = useState<OfferedCommands | null>(null);
  const [loading, setLoading] = useState(false);
  const [failed, setFailed] = useState<string | null>(null);
  const [active, setActive] = useState(0);
  const [dismissed, setDismissed] = useState(false);
  const query = paletteQuery(text);
  const open = query !== null && !dismissed && load !== undefined;
  // Grouped, and the options in the groups' order: the arrows follow the screen.
  const groups = useMemo(
    () => (open && offered ? groupCommands(filterCommands(offered.commands, query ?? "")) : []),
    [open, offered, query],
  );
  const shown = useMemo(() => groups.flatMap((g) => g.commands), [groups]);

  // Another session (another way to ask): its own commands, not the last one's.
  // biome-ignore lint/correctness/useExhaustiveDependencies: load names the session.
  useEffect(() => setOffered(null), [load]);
  // Escape holds until the text no longer starts a command.
  useEffect(() => {
    if (query === null) setDismissed(false);
  }, [query]);
  // biome-ignore lint/correctness/useExhaustiveDependencies: the first command again for each query.
  useEffect(() => setActive(0), [query]);

  // Asked each time the palette opens: repository commands come and go. The
  // last answer stays on screen meanwhile. A session not started yet is asked
  // again every NOT_READY_RETRY_MS while the palette stays open.
  const [attempt, setAttempt] = useState(0);
  // biome-ignore lint/correctness/useExhaustiveDependencies: attempt asks again.
  useEffect(() => {
    if (!open || !load) return;
    let live = true;
    let retry: ReturnType<typeof setTimeout> | undefined;
    setLoading(true);
    setFailed(null);
    load().then(
      (r) => {
        if (!live) return;
        const parsed = parseCommands(r);
        setOffered(parsed);
        setLoading(false);
        if (!parsed.ready) retry = setTimeout(() => setAttempt((n) => n + 1), NOT_READY_RETRY_MS);
      },
      (e: unknown) => {
        if (!live) return;
        setFailed(e instanceof Error ? e.message : "The commands could not be loaded.");
        setLoading(false);
      },
    );
    return () => {
      live = false;
      clearTimeout(retry);
    };
  }, [open, load, attempt]);

  const optionId = (i: number) => `${listId}-option-${i}`;
  useEffect(() => {
    if (!open) return;
    const el = document.getElementById(optionId(active));
    el?.scrollIntoView?.({ block: "nearest" });
  });

  const choose = (i: number) => {
    const c = shown[i];
    if (!c) return;
    setText(completion(c));
    focusInput();
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>): boolean => {
    if (!open) return false;
    const action = paletteKey(e.key, active, shown.length, {
      shift: e.shiftKey,
      ctrl: e.ctrlKey,
      alt: e.altKey,
      meta: e.metaKey,
    });
    if (action.kind === "none") return false;
    e.preventDefault();
    if (action.kind === "move") setActive(action.active);
    else if (action.kind === "choose") choose(action.index);
    else setDismissed(true);
    return true;
  };

  if (!open) return { inputProps: {}, onKeyDown, element: null };

  let note: string | null = null;
  if (failed) note = `Commands could not be loaded: ${failed}`;
  else if (!offered) note = "Loading commands…";
  else if (!offered.ready)
    note = offered.detail
      ? `Commands are not available yet: ${offered.detail}`
      : "Commands are listed once the session has started.";
  else if (shown.length === 0)
    note = query ? `No command matches /${query}. Enter sends it as a message.` : "No commands.";

  const option = (c: (typeof shown)[number], i: number) => {
    const description = shownDescription(c);
    return (
      // biome-ignore lint/a11y/useKeyWithClickEvents: the keys are the text box's (aria-activedescendant).
      <div
        key={c.name}
        id={optionId(i)}
        role="option"
        // Focus stays in the text box (aria-activedescendant); -1 keeps options out of Tab.
        tabIndex={-1}
        aria-selected={i === active}
        className="command-option"
        // The text box keeps the focus (and a phone its keyboard).
        onMouseDown={(e) => e.preventDefault()}
        onMouseMove={() => i !== active && setActive(i)}
        onClick={() => choose(i)}
      >
        <span className="command-name">/{c.name}</span>
        {c.argumentHint ? <span className="command-hint">{c.argumentHint}</span> : null}
        {description ? <span className="command-desc">{description}</span> : null}
      </div>
    );
  };

  const element = (
    <div className="command-palette" data-testid="command-palette">
      <div
        id={listId}
        role="listbox"
        aria-label="Slash commands"
        className="command-list"
        hidden={shown.length === 0}
      >
        {groups.map((g) => {
          const first = shown.indexOf(g.commands[0]!);
          const headingId = `${listId}-group-${g.key}`;
          return (
            // A listbox's groups are role group (a fieldset is no listbox child).
            // biome-ignore lint/a11y/useSemanticElements: see above.
            <div key={g.key} role="group" aria-labelledby={headingId} className="command-group">
              <div id={headingId} role="presentation" className="command-group-label">
                {g.label}
              </div>
              {g.commands.map((c, j) => option(c, first + j))}
            </div>
          );
        })}
      </div>
      <p className="command-note muted small" role="status">
        {note ?? (loading ? "Updating…" : "")}
        <span className="sr-only">
          {note === null
            ? `${shown.length} command${shown.length === 1 ? "" : "s"}: arrows choose, Enter or Tab takes one, Escape closes.`
            : ""}
        </span>
      </p>
    </div>
  );
  return {
    inputProps: {
      role: "combobox",
      "aria-expanded": shown.length > 0,
      "aria-controls": listId,
      "aria-autocomplete": "list",
      "aria-activedescendant": shown.length > 0 ? optionId(active) : undefined,
    },
    onKeyDown,
    element,
  };
}
