/**
 * The session's usage as Claude Code reports it, for the meter by the
 * composer: tokens and cost summed over the turns in the log, and how full
 * the context window is after the latest model call. Pure; fed the same
 * stream-json lines as the conversation, after deduplication by `seq`.
 *
 * What the CLI prints (2.1.x, `-p --output-format stream-json`):
 * - `system`/`init`: `model`, the model in use.
 * - `assistant` (one line per content block): `message.usage` of that model
 *   call; its input plus cache tokens are the prompt, so the context in use.
 * - `result` (one per turn): `usage` of the turn alone; `total_cost_usd` and
 *   `modelUsage` summed over the CLI process's life (they start again at 0
 *   when the CLI restarts), with `model_usage_since_last_result` the turn's
 *   own share and `result_index` the turn's number in the process; each
 *   `modelUsage` entry has the model's `contextWindow`.
 */

import { isObject, num, str } from "./protocol";

export interface Usage {
  /** The model of the latest `init` line. */
  model?: string;
  /** Turns ended (`result` lines). */
  turns: number;
  /** Input tokens of every turn, cache reads and writes included. */
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
  /** Prompt plus output of the latest top-level model call. */
  contextTokens?: number;
  /** The context window of the model in use, when the CLI said. */
  contextWindow?: number;
  /** The CLI's running `total_cost_usd`, to take each turn's share of it. */
  cliTotalCost?: number;
}

export const emptyUsage: Usage = { turns: 0, inputTokens: 0, outputTokens: 0, costUsd: 0 };

function promptTokens(u: Record<string, unknown>): number {
  return (
    (num(u.input_tokens) ?? 0) +
    (num(u.cache_read_input_tokens) ?? 0) +
    (num(u.cache_creation_input_tokens) ?? 0)
  );
}

/**
 * A `result` line's own cost: its share when the CLI gives it, else the growth
 * of the CLI's running total since `prevTotal` (`Usage.cliTotalCost`).
 */
export function turnCost(data: Record<string, unknown>, prevTotal: number | undefined): number {
  const since = data.model_usage_since_last_result;
  if (isObject(since)) {
    let sum = 0;
    for (const m of Object.values(since)) if (isObject(m)) sum += num(m.costUSD) ?? 0;
    return sum;
  }
  const total = num(data.total_cost_usd);
  if (total === undefined) return 0;
  // A new CLI process (its first result, or a total that went back) starts from 0.
  const fresh = num(data.result_index) === 0 || prevTotal === undefined || total < prevTotal;
  return fresh ? total : total - prevTotal;
}

function contextWindowOf(
  data: Record<string, unknown>,
  model: string | undefined,
): number | undefined {
  const mu = data.modelUsage;
  if (!isObject(mu)) return undefined;
  const own = model !== undefined ? mu[model] : undefined;
  if (isObject(own) && num(own.contextWindow)) return num(own.contextWindow);
  let best: number | undefined;
  for (const m of Object.values(mu)) {
    const w = isObject(m) ? num(m.contextWindow) : undefined;
    if (w && (best === undefined || w > best)) best = w;
  }
  return best;
}

/** Apply one stream-json line (a `claude_message`'s `data`). Unknown shapes change nothing. */
export function applyUsage(u: Usage, data: Record<string, unknown>): Usage {
  switch (data.type) {
    case "system": {
      const model = data.subtype === "init" ? str(data.model) : undefined;
      return model && model !== u.model ? { ...u, model } : u;
    }
    case "assistant": {
      // A subagent's calls (parent_tool_use_id set) fill their own context, not the session's.
      if (str(data.parent_tool_use_id)) return u;
      const message = isObject(data.message) ? data.message : undefined;
      const usage = message && isObject(message.usage) ? message.usage : undefined;
      if (!usage) return u;
      // The demo engine reports no prompt: no word on the context then.
      if (promptTokens(usage) === 0) return u;
      const tokens = promptTokens(usage) + (num(usage.output_tokens) ?? 0);
      return tokens === u.contextTokens ? u : { ...u, contextTokens: tokens };
    }
    case "result": {
      const usage = isObject(data.usage) ? data.usage : {};
      const total = num(data.total_cost_usd);
      return {
        ...u,
        turns: u.turns + 1,
        inputTokens: u.inputTokens + promptTokens(usage),
        outputTokens: u.outputTokens + (num(usage.output_tokens) ?? 0),
        costUsd: u.costUsd + Math.max(0, turnCost(data, u.cliTotalCost)),
        contextWindow: contextWindowOf(data, u.model) ?? u.contextWindow,
        cliTotalCost: total ?? u.cliTotalCost,
      };
    }
    default:
      return u;
  }
}

/** How full the context window is, 0..1, or undefined when either side is unknown. */
export function contextFill(u: Usage): number | undefined {
  if (u.contextTokens === undefined || !u.contextWindow) return undefined;
  return Math.min(1, u.contextTokens / u.contextWindow);
}
