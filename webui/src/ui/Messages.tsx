/** The conversation: user messages, Claude's streaming replies, tool cards, result lines. */

import { memo, useState } from "react";
import { MessageAttachments } from "../components/Attachments";
import { type ShownAttachment, shownOf } from "../lib/attachments";
import {
  type AssistantItem,
  assistantBlocks,
  type Block,
  type Conversation,
  type Item,
  type OutboxEntry,
  type ToolResult,
  type ToolUseBlock,
} from "../lib/conversationModel";
import { formatCost, formatDuration, formatTokens } from "./format";
import { Markdown } from "./Markdown";
import { ToolInput, Truncated, toolSummary } from "./ToolViews";

export function who(userId: string | undefined, me: string): string {
  if (!userId) return "someone";
  return userId === me ? "you" : `user ${userId.slice(0, 8)}`;
}

function CopyButton({ text }: { text: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      className="link copy"
      aria-label="Copy message"
      onClick={() =>
        void navigator.clipboard?.writeText(text).then(() => {
          setDone(true);
          setTimeout(() => setDone(false), 1500);
        })
      }
    >
      {done ? "Copied" : "Copy"}
    </button>
  );
}

function UserBubble({
  text,
  meta,
  attachments,
  children,
}: {
  text: string;
  meta?: string;
  attachments?: ShownAttachment[];
  children?: React.ReactNode;
}) {
  return (
    <div className="msg user" data-testid="user-message">
      {attachments?.length ? <MessageAttachments items={attachments} /> : null}
      {text && <div className="user-text">{text}</div>}
      <div className="msg-meta">
        {meta && <span>{meta}</span>}
        {children}
        <CopyButton text={text} />
      </div>
    </div>
  );
}

function Thinking({ text, live }: { text: string; live: boolean }) {
  return (
    <details className="thinking">
      <summary>
        {live ? <span className="spinner" aria-hidden="true" /> : null}
        Thinking{live ? "…" : ""}
      </summary>
      <div className="thinking-text">{text}</div>
    </details>
  );
}

function ToolCard({
  block,
  result,
  turnOver,
}: {
  block: ToolUseBlock;
  result?: ToolResult;
  turnOver: boolean;
}) {
  const state = result ? (result.isError ? "error" : "success") : turnOver ? "stopped" : "running";
  const label = { running: "Running", success: "Success", error: "Error", stopped: "No result" }[
    state
  ];
  const input = block.input ?? null;
  const summary = input === null ? "" : toolSummary(block.name, input);
  return (
    <details className={`tool tool-${state}`} data-testid="tool-card">
      <summary>
        <span className={`tool-icon ${state}`} aria-hidden="true">
          {state === "running" ? (
            <span className="spinner" />
          ) : state === "success" ? (
            "✓"
          ) : state === "error" ? (
            "!"
          ) : (
            "–"
          )}
        </span>
        <span className="tool-name">{block.name}</span>
        <span className="tool-summary">{summary}</span>
        <span className={`badge badge-${state}`}>{label}</span>
      </summary>
      <div className="tool-body">
        <h4>Input</h4>
        {input === null ? (
          <pre className="output">{block.partialJson}</pre>
        ) : (
          <ToolInput name={block.name} input={input} />
        )}
        {result && (
          <>
            <h4>Result</h4>
            <Truncated
              text={result.content || "(empty)"}
              className={result.isError ? "error-text" : ""}
            />
          </>
        )}
      </div>
    </details>
  );
}

function AssistantMessage({
  item,
  toolResults,
  turnOver,
}: {
  item: AssistantItem;
  toolResults: Record<string, ToolResult>;
  turnOver: boolean;
}) {
  const blocks = assistantBlocks(item);
  const live = !item.complete && !turnOver;
  return (
    <div className="msg assistant" data-testid="assistant-message" aria-busy={live}>
      {blocks.map((b: Block, i) => {
        // A block's place in its message is what the API names it by (its content block
        // index): it never moves, so it is the key.
        switch (b.kind) {
          case "text":
            // biome-ignore lint/suspicious/noArrayIndexKey: the content block index (above).
            return b.text ? <Markdown key={i} text={b.text} /> : null;
          case "thinking":
            // biome-ignore lint/suspicious/noArrayIndexKey: the content block index (above).
            return <Thinking key={i} text={b.text} live={live && i === blocks.length - 1} />;
          case "tool_use":
            return (
              <ToolCard
                key={b.id || `block-${i}`}
                block={b}
                result={toolResults[b.id]}
                turnOver={!live && item.complete && turnOver}
              />
            );
          default:
            return null;
        }
      })}
    </div>
  );
}

function ResultLine({ item }: { item: Extract<Item, { kind: "result" }> }) {
  const parts: string[] = [];
  if (item.durationMs !== undefined) parts.push(formatDuration(item.durationMs));
  if (item.inputTokens !== undefined || item.outputTokens !== undefined) {
    parts.push(
      `${formatTokens(item.inputTokens ?? 0)} in · ${formatTokens(item.outputTokens ?? 0)} out tokens`,
    );
  }
  if (item.costUsd !== undefined) parts.push(formatCost(item.costUsd));
  const head = item.isError
    ? item.subtype === "error_during_execution"
      ? "Stopped"
      : "Failed"
    : "Done";
  return (
    <div className={`result-line ${item.isError ? "is-error" : ""}`} data-testid="result-line">
      <span>{head}</span>
      {parts.map((p) => (
        <span key={p}>· {p}</span>
      ))}
      {item.text && <div className="error-text">{item.text}</div>}
    </div>
  );
}

const ItemView = memo(function ItemView({
  item,
  toolResults,
  me,
  turnOver,
}: {
  item: Item;
  toolResults: Record<string, ToolResult>;
  me: string;
  turnOver: boolean;
}) {
  switch (item.kind) {
    case "user":
      return (
        <UserBubble
          text={item.text}
          attachments={item.attachments}
          meta={item.userId && item.userId !== me ? `from ${who(item.userId, me)}` : undefined}
        />
      );
    case "assistant":
      return <AssistantMessage item={item} toolResults={toolResults} turnOver={turnOver} />;
    case "result":
      return <ResultLine item={item} />;
    case "system":
      return <div className="system-line">{item.text}</div>;
    case "error":
      return (
        <div className="msg error-box" role="alert">
          {item.text}
        </div>
      );
    case "question":
    case "permission": {
      if (item.resolution === undefined) return null; // open prompts sit above the composer
      const what = item.kind === "question" ? "Question" : `Permission for ${item.toolName}`;
      return (
        <div className="prompt-record" data-testid="prompt-record">
          {what}: {item.resolution} by {who(item.resolvedBy, me)}
        </div>
      );
    }
  }
});

function OutboxView({
  entry,
  onRetry,
  onDiscard,
}: {
  entry: OutboxEntry;
  onRetry: () => void;
  onDiscard?: () => void;
}) {
  const meta =
    entry.state === "failed"
      ? `Not sent: ${entry.error ?? "error"}`
      : entry.state === "sent"
        ? "Sending…"
        : "Waiting for the connection…";
  return (
    <UserBubble
      text={entry.text}
      meta={meta}
      attachments={entry.attachments && shownOf(entry.attachments)}
    >
      {entry.state === "failed" && (
        <button type="button" className="link" onClick={onRetry}>
          Retry
        </button>
      )}
      {entry.state === "failed" && onDiscard && (
        <button type="button" className="link" onClick={onDiscard}>
          Remove
        </button>
      )}
    </UserBubble>
  );
}

export function Messages({
  c,
  me,
  onRetry,
  onDiscard,
}: {
  c: Conversation;
  me: string;
  onRetry: (id: string) => void;
  /** Forget a message the VM refused. */
  onDiscard?: (id: string) => void;
}) {
  const turnOver = c.status !== "running" && c.status !== "waiting_for_input";
  return (
    <>
      {c.items.map((item) => (
        <ItemView
          key={item.key}
          item={item}
          toolResults={c.toolResults}
          me={me}
          turnOver={turnOver}
        />
      ))}
      {c.outbox.map((e) => (
        <OutboxView
          key={e.clientMessageId}
          entry={e}
          onRetry={() => onRetry(e.clientMessageId)}
          onDiscard={onDiscard && (() => onDiscard(e.clientMessageId))}
        />
      ))}
    </>
  );
}
