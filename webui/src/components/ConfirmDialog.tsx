/**
 * A modal confirmation of something that cannot be undone: Cancel takes the
 * focus (the safe choice), Escape cancels, and the confirm button waits for
 * the action; a failure is shown in the dialog, which stays open.
 */

import { type ReactNode, useEffect, useId, useRef, useState } from "react";

export function ConfirmDialog({
  title,
  children,
  confirmLabel,
  errorOf,
  onCancel,
  onConfirm,
}: {
  title: string;
  /** What confirming does, in a sentence or two. */
  children: ReactNode;
  confirmLabel: string;
  /** The words for a failed `onConfirm`. */
  errorOf: (error: unknown) => string;
  onCancel: () => void;
  onConfirm: () => Promise<void>;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const d = ref.current;
    // showModal is missing in jsdom; the dialog is then only rendered.
    if (d && !d.open) d.showModal?.();
  }, []);
  return (
    <dialog
      ref={ref}
      className="confirm"
      aria-labelledby={titleId}
      onCancel={(e) => {
        e.preventDefault();
        onCancel();
      }}
    >
      <h2 id={titleId}>{title}</h2>
      <p>{children}</p>
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      <div className="prompt-actions">
        {/* biome-ignore lint/a11y/noAutofocus: the dialog's safe choice takes the focus. */}
        <button type="button" autoFocus onClick={onCancel}>
          Cancel
        </button>
        <button
          type="button"
          className="danger"
          disabled={busy}
          onClick={async () => {
            setBusy(true);
            try {
              await onConfirm();
            } catch (e) {
              setError(errorOf(e));
              setBusy(false);
            }
          }}
        >
          {confirmLabel}
        </button>
      </div>
    </dialog>
  );
}
