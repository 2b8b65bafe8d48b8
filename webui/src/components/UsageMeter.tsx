/** The session's usage by the composer: tokens, cost and how full the context window is. */

import { contextFill, type Usage } from "../lib/usage";
import { formatCost, formatTokens } from "../ui/format";

export function UsageMeter({ usage }: { usage: Usage }) {
  if (usage.turns === 0 && usage.contextTokens === undefined) return null;
  const fill = contextFill(usage);
  const tokens = usage.inputTokens + usage.outputTokens;
  const title =
    `${formatTokens(usage.inputTokens)} in · ${formatTokens(usage.outputTokens)} out tokens ` +
    `over ${usage.turns} turn${usage.turns === 1 ? "" : "s"}` +
    (usage.model ? ` · ${usage.model}` : "");
  return (
    <section className="usage-meter small" aria-label="Session usage" data-testid="usage-meter">
      <span title={title}>
        <span data-testid="usage-tokens">{formatTokens(tokens)}</span> tokens
      </span>
      <span data-testid="usage-cost">{formatCost(usage.costUsd)}</span>
      {fill !== undefined &&
      usage.contextWindow !== undefined &&
      usage.contextTokens !== undefined ? (
        <span className="usage-context">
          <meter
            aria-label="Context window used"
            min={0}
            max={1}
            low={0.6}
            high={0.85}
            optimum={0}
            value={fill}
          />
          <span data-testid="usage-context">
            context {Math.round(fill * 100)}% ({formatTokens(usage.contextTokens)} of{" "}
            {formatTokens(usage.contextWindow)})
          </span>
        </span>
      ) : null}
    </section>
  );
}
