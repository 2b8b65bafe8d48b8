/** Readable views of a tool's input and output, shared by tool cards and permission cards. */

import { useState } from "react";
import { diffLines, withContext } from "../lib/diff";
import { isObject, str } from "../lib/protocol";

/** Input shown whole up to this many characters. */
export const INPUT_LIMIT = 5_000;
/** Output (tool results) shown up to this many characters before "Show more". */
export const OUTPUT_PREVIEW = 2_000;
/** Output never rendered past this many characters, even after "Show more". */
export const OUTPUT_LIMIT = 20_000;

/** Long text cut short with a "Show more" button. */
export function Truncated({
  text,
  preview = OUTPUT_PREVIEW,
  limit = OUTPUT_LIMIT,
  className = "",
}: {
  text: string;
  preview?: number;
  limit?: number;
  className?: string;
}) {
  const [open, setOpen] = useState(false);
  const long = text.length > preview;
  const shown = open ? text.slice(0, limit) : text.slice(0, preview);
  return (
    <div>
      <pre className={`output ${className}`}>
        {shown}
        {long && !open ? "…" : ""}
      </pre>
      {long && (
        <button type="button" className="link" aria-expanded={open} onClick={() => setOpen(!open)}>
          {open
            ? "Show less"
            : `Show more (${(text.length - preview).toLocaleString("en-US")} more characters)`}
        </button>
      )}
      {open && text.length > limit && (
        <p className="muted">Cut at {limit.toLocaleString("en-US")} characters.</p>
      )}
    </div>
  );
}

export function Diff({ before, after, path }: { before: string; after: string; path?: string }) {
  const lines = withContext(diffLines(before, after));
  return (
    <figure className="diff" aria-label={path ? `Changes to ${path}` : "Changes"}>
      {path && <div className="diff-path">{path}</div>}
      <pre>
        {/* A diff is drawn once from fixed text: a line's place is its identity. */}
        {lines.map((l, i) =>
          l === null ? (
            // biome-ignore lint/suspicious/noArrayIndexKey: a fixed list (above).
            <span key={i} className="diff-skip">
              ⋯{"\n"}
            </span>
          ) : (
            <span
              // biome-ignore lint/suspicious/noArrayIndexKey: a fixed list (above).
              key={i}
              className={l.op === "+" ? "diff-add" : l.op === "-" ? "diff-del" : "diff-ctx"}
            >
              <span aria-hidden="true">{l.op}</span>
              <span className="sr-only">
                {l.op === "+" ? "added: " : l.op === "-" ? "removed: " : ""}
              </span>
              {l.text}
              {"\n"}
            </span>
          ),
        )}
      </pre>
    </figure>
  );
}

/** A one-line description of a tool call: the command, path or pattern. */
export function toolSummary(name: string, input: unknown): string {
  if (!isObject(input)) return "";
  const pick =
    str(input.command) ??
    str(input.file_path) ??
    str(input.path) ??
    str(input.pattern) ??
    str(input.url) ??
    str(input.query) ??
    str(input.description);
  if (pick) return pick.split("\n")[0]!.slice(0, 160);
  if (name === "AskUserQuestion" && Array.isArray(input.questions)) {
    return `${input.questions.length} question${input.questions.length === 1 ? "" : "s"}`;
  }
  return "";
}

function Json({ value }: { value: unknown }) {
  let text: string;
  try {
    text = JSON.stringify(value, null, 2) ?? "";
  } catch {
    text = String(value);
  }
  return <Truncated text={text} preview={INPUT_LIMIT} limit={INPUT_LIMIT * 4} />;
}

/** The input of a tool call, in the form a person reads best. */
export function ToolInput({ name, input }: { name: string; input: unknown }) {
  if (!isObject(input)) return <Json value={input} />;
  const path = str(input.file_path) ?? str(input.path) ?? str(input.notebook_path);
  switch (name) {
    case "Bash": {
      const command = str(input.command) ?? "";
      return (
        <div>
          {str(input.description) && <p className="tool-desc">{str(input.description)}</p>}
          <pre className="command">
            <span aria-hidden="true">$ </span>
            {command.slice(0, INPUT_LIMIT)}
          </pre>
        </div>
      );
    }
    case "Edit":
      return (
        <Diff
          path={path}
          before={str(input.old_string) ?? ""}
          after={str(input.new_string) ?? ""}
        />
      );
    case "MultiEdit": {
      const edits = Array.isArray(input.edits) ? input.edits.filter(isObject) : [];
      return (
        <div>
          {edits.map((e, i) => (
            <Diff
              // biome-ignore lint/suspicious/noArrayIndexKey: the edits of one tool call never move.
              key={i}
              path={i === 0 ? path : undefined}
              before={str(e.old_string) ?? ""}
              after={str(e.new_string) ?? ""}
            />
          ))}
        </div>
      );
    }
    case "Write":
      return (
        <div>
          <div className="diff-path">{path}</div>
          <Truncated text={str(input.content) ?? ""} preview={INPUT_LIMIT} />
        </div>
      );
    case "Read": {
      const offset = typeof input.offset === "number" ? input.offset : undefined;
      const limit = typeof input.limit === "number" ? input.limit : undefined;
      return (
        <p className="mono">
          {path}
          {offset !== undefined || limit !== undefined
            ? ` (lines ${offset ?? 1}${limit !== undefined ? `–${(offset ?? 1) + limit - 1}` : "+"})`
            : ""}
        </p>
      );
    }
    case "TodoWrite": {
      const todos = Array.isArray(input.todos) ? input.todos.filter(isObject) : [];
      const done = todos.filter((t) => t.status === "completed").length;
      return (
        <div>
          <p className="muted">
            {done} of {todos.length} done
          </p>
          <ul className="todos">
            {todos.map((t, i) => (
              // biome-ignore lint/suspicious/noArrayIndexKey: one tool call's list, drawn as it came.
              <li key={i} className={`todo-${str(t.status) ?? "pending"}`}>
                <span aria-hidden="true">
                  {t.status === "completed" ? "☑" : t.status === "in_progress" ? "◐" : "☐"}{" "}
                </span>
                <span className="sr-only">{str(t.status) ?? "pending"}: </span>
                {str(t.content) ?? ""}
              </li>
            ))}
          </ul>
        </div>
      );
    }
    default:
      return <Json value={input} />;
  }
}
