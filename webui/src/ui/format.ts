/** Small formatting helpers for the session view. */

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export function formatCost(usd: number): string {
  if (usd === 0) return "$0";
  if (usd < 0.01) return `$${usd.toFixed(4)}`;
  return `$${usd.toFixed(2)}`;
}

export function formatTokens(n: number): string {
  return n >= 10_000 ? `${(n / 1000).toFixed(1)}k` : n.toLocaleString("en-US");
}

export const STATUS_LABEL: Record<string, string> = {
  running: "Running",
  idle: "Idle",
  waiting_for_input: "Waiting for input",
  error: "Error",
  offline: "Offline",
  provisioning: "Provisioning",
  starting: "Starting",
  stopped: "Stopped",
  deleted: "Deleted",
};

export function statusLabel(s: string | null | undefined): string {
  return s ? (STATUS_LABEL[s] ?? s) : "Unknown";
}
