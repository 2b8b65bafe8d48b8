import { statusLabel } from "./format";

/** A status word with a colour and a shape, so colour is never the only cue. */
export function StatusBadge({ status }: { status: string | undefined }) {
  const s = status ?? "unknown";
  return (
    <span className={`status status-${s}`} data-testid="status-badge" data-status={s}>
      <span className="status-dot" aria-hidden="true" />
      {statusLabel(status)}
    </span>
  );
}
