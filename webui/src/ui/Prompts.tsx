/** Question and permission cards, stacked above the composer while open. */

import { type FocusEvent, useEffect, useId, useLayoutEffect, useRef, useState } from "react";
import type { PermissionItem, QuestionItem } from "../lib/conversationModel";
import { focusComposerIfLost } from "../lib/focus";
import type { Answers, Question } from "../lib/protocol";
import { Markdown } from "./Markdown";
import { ToolInput, toolSummary } from "./ToolViews";

interface Choice {
  labels: string[];
  other: string;
  otherOn: boolean;
}

/**
 * A card's answer on its way: ``send`` runs it (true: handed to the
 * connection) and, when there is no connection, lets the card be used again
 * with a message saying why.
 */
function useSend() {
  const [sending, setSending] = useState(false);
  const [failed, setFailed] = useState<string | null>(null);
  const send = (deliver: () => boolean) => {
    setSending(true);
    if (!deliver()) {
      setSending(false);
      setFailed("Not connected: try again in a moment.");
    }
  };
  return { sending, failed, send };
}

/**
 * A card that goes away (answered here or elsewhere) while it had the focus
 * gives it to the composer: a keyboard user is never left on the bare page.
 * Spread the result on the card's section.
 */
function useFocusBack() {
  const ref = useRef<HTMLElement>(null);
  // Inside the card last (a button disabled while sending loses it unseen).
  const had = useRef(false);
  useLayoutEffect(() => {
    const el = ref.current;
    return () => {
      // Layout cleanups run before the card's DOM is removed.
      if (had.current || el?.contains(document.activeElement)) {
        requestAnimationFrame(() => focusComposerIfLost());
      }
    };
  }, []);
  return {
    ref,
    onFocus: () => {
      had.current = true;
    },
    onBlur: (e: FocusEvent<HTMLElement>) => {
      // Only a move to somewhere else counts; a removed or disabled control has no target.
      if (e.relatedTarget && !ref.current?.contains(e.relatedTarget as Node)) had.current = false;
    },
  };
}

/** A card's errors, each an alert: the VM's word on the request, a failed send. */
function PromptAlerts({ error, failed }: { error?: string | null; failed: string | null }) {
  return (
    <>
      {error && (
        <p className="error-text" role="alert">
          {error}
        </p>
      )}
      {failed && (
        <p className="error-text" role="alert">
          {failed}
        </p>
      )}
    </>
  );
}

/** The answer to one question as the protocol wants it, or null while unanswered. */
export function answerOf(q: Question, c: Choice): string | string[] | null {
  const other = c.otherOn ? c.other.trim() : "";
  if (q.multiSelect) {
    const all = [...c.labels, ...(other ? [other] : [])];
    return all.length > 0 ? all : null;
  }
  if (c.otherOn) return other || null;
  return c.labels[0] ?? null;
}

export function QuestionCard({
  item,
  onAnswer,
}: {
  item: QuestionItem;
  onAnswer: (a: Answers) => boolean;
}) {
  const [page, setPage] = useState(0);
  const [choices, setChoices] = useState<Choice[]>(() =>
    item.questions.map(() => ({ labels: [], other: "", otherOn: false })),
  );
  const { sending, failed, send } = useSend();
  const focusBack = useFocusBack();
  const id = useId();
  const firstInput = useRef<HTMLInputElement>(null);
  const n = item.questions.length;
  const q = item.questions[page];
  const choice = choices[page];

  // biome-ignore lint/correctness/useExhaustiveDependencies: each new page takes the focus.
  useEffect(() => {
    firstInput.current?.focus({ preventScroll: true });
  }, [page]);

  if (!q || !choice) return null;
  const answers = item.questions.map((qq, i) => answerOf(qq, choices[i]!));
  const complete = answers.every((a) => a !== null);
  const update = (f: (c: Choice) => Choice) =>
    setChoices(choices.map((c, i) => (i === page ? f(c) : c)));
  const toggle = (label: string, on: boolean) =>
    update((c) =>
      q.multiSelect
        ? { ...c, labels: on ? [...c.labels, label] : c.labels.filter((l) => l !== label) }
        : { ...c, labels: [label], otherOn: false },
    );
  const submit = () => {
    if (!complete) return;
    const out: Answers = {};
    item.questions.forEach((qq, i) => {
      out[qq.question] = answers[i]!;
    });
    send(() => onAnswer(out));
  };
  const inputType = q.multiSelect ? "checkbox" : "radio";
  return (
    <section
      {...focusBack}
      className="prompt question"
      aria-labelledby={`${id}-title`}
      data-testid="question-card"
    >
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (page < n - 1) setPage(page + 1);
          else submit();
        }}
      >
        <fieldset>
          <legend id={`${id}-title`}>
            <span>
              <span className="prompt-kind">{q.header ?? "Question"}</span>
              {n > 1 && (
                <span className="muted">
                  {" "}
                  · Question {page + 1} of {n}
                </span>
              )}
            </span>
            <span className="prompt-question">{q.question}</span>
            {q.multiSelect && <span className="muted small"> (choose any)</span>}
          </legend>
          {q.options.map((o, i) => (
            <label key={o.label} className="option">
              <input
                ref={i === 0 ? firstInput : undefined}
                type={inputType}
                name={`${id}-q${page}`}
                checked={choice.labels.includes(o.label)}
                onChange={(e) => toggle(o.label, e.target.checked)}
              />
              <span>
                <span className="option-label">{o.label}</span>
                {o.description && <span className="option-desc">{o.description}</span>}
              </span>
            </label>
          ))}
          <label className="option">
            <input
              type={inputType}
              name={`${id}-q${page}`}
              checked={choice.otherOn}
              onChange={(e) =>
                update((c) =>
                  q.multiSelect
                    ? { ...c, otherOn: e.target.checked }
                    : { ...c, labels: [], otherOn: true },
                )
              }
            />
            <span className="option-label">Other</span>
          </label>
          <textarea
            className="other-text"
            aria-label={`Other answer to: ${q.question}`}
            placeholder="Type your own answer"
            rows={2}
            value={choice.other}
            onChange={(e) => {
              const other = e.target.value;
              update((c) =>
                q.multiSelect
                  ? { ...c, other, otherOn: other.trim() !== "" || c.otherOn }
                  : { ...c, other, otherOn: true, labels: [] },
              );
            }}
          />
        </fieldset>
        <PromptAlerts error={item.error} failed={failed} />
        <div className="prompt-actions">
          {n > 1 && (
            <button type="button" disabled={page === 0} onClick={() => setPage(page - 1)}>
              Previous
            </button>
          )}
          {page < n - 1 ? (
            <button type="submit" className="primary" disabled={answers[page] === null}>
              Next
            </button>
          ) : (
            <button type="submit" className="primary" disabled={!complete || sending}>
              {sending ? "Submitting…" : "Submit answers"}
            </button>
          )}
        </div>
      </form>
    </section>
  );
}

export function PermissionCard({
  item,
  onDecide,
}: {
  item: PermissionItem;
  onDecide: (allow: boolean, message?: string) => boolean;
}) {
  const [reason, setReason] = useState("");
  const { sending, failed, send } = useSend();
  const focusBack = useFocusBack();
  const id = useId();
  const decide = (allow: boolean) => {
    send(() => onDecide(allow, allow ? undefined : reason.trim() || undefined));
  };
  const summary = toolSummary(item.toolName, item.toolInput);
  return (
    <section
      {...focusBack}
      className="prompt permission"
      aria-labelledby={`${id}-title`}
      data-testid="permission-card"
    >
      <h3 id={`${id}-title`}>
        <span className="prompt-kind">Permission:</span> {item.toolName}
        {summary && <span className="prompt-summary mono"> {summary}</span>}
      </h3>
      <details className="permission-input" open>
        <summary>Input</summary>
        <ToolInput name={item.toolName} input={item.toolInput} />
      </details>
      <label className="reason">
        <span>Reason if you deny (optional, Claude sees it)</span>
        <input
          type="text"
          value={reason}
          onChange={(e) => setReason(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter") {
              e.preventDefault();
              decide(false);
            }
          }}
        />
      </label>
      <PromptAlerts error={item.error} failed={failed} />
      <div className="prompt-actions">
        <button type="button" className="danger" disabled={sending} onClick={() => decide(false)}>
          Deny
        </button>
        <button type="button" className="primary" disabled={sending} onClick={() => decide(true)}>
          Allow
        </button>
      </div>
    </section>
  );
}

/** ExitPlanMode's permission request: Claude's plan, to approve or send back with a comment. */
export function PlanCard({
  item,
  onDecide,
}: {
  item: PermissionItem;
  onDecide: (allow: boolean, message?: string) => boolean;
}) {
  const [comment, setComment] = useState("");
  const { sending, failed, send } = useSend();
  const focusBack = useFocusBack();
  const id = useId();
  const input = item.toolInput as Record<string, unknown> | null;
  const plan = input && typeof input.plan === "string" ? input.plan : "";
  const decide = (allow: boolean) => {
    const message = allow ? undefined : comment.trim() || "Keep planning.";
    send(() => onDecide(allow, message));
  };
  return (
    <section
      {...focusBack}
      className="prompt permission plan"
      aria-labelledby={`${id}-title`}
      data-testid="plan-card"
    >
      <h3 id={`${id}-title`}>
        <span className="prompt-kind">Plan ready:</span> approve it to let Claude start
      </h3>
      <div className="plan-body">
        {plan ? (
          <Markdown text={plan} />
        ) : (
          <p className="muted">
            Claude has finished planning (the plan is above in the conversation).
          </p>
        )}
      </div>
      <label className="reason">
        <span>Comment to send the plan back (Claude sees it)</span>
        <textarea rows={2} value={comment} onChange={(e) => setComment(e.target.value)} />
      </label>
      <PromptAlerts error={item.error} failed={failed} />
      <div className="prompt-actions">
        <button type="button" disabled={sending} onClick={() => decide(false)}>
          Keep planning
        </button>
        <button type="button" className="primary" disabled={sending} onClick={() => decide(true)}>
          Approve plan
        </button>
      </div>
    </section>
  );
}
