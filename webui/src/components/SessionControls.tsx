/** Model and permission mode pickers under the composer; bypass asks first. */

import { useEffect, useId, useRef, useState } from "react";
import type { Requester } from "../lib/requests";
import {
  BYPASS,
  MODE_LABELS,
  type Offered,
  PERMISSION_MODES,
  type PermissionMode,
  parseOffered,
  type SessionSettings,
} from "../lib/sessionSettings";

type Change = { model: string } | { permissionMode: PermissionMode };

export function SessionControls({
  workspaceId,
  settings,
  requester,
}: {
  workspaceId: string;
  settings: SessionSettings;
  requester: Pick<Requester, "request">;
}) {
  const [offered, setOffered] = useState<Offered>({ models: [], bypassAllowed: true });
  const [busy, setBusy] = useState(false);
  const [failed, setFailed] = useState<string | null>(null);
  const [confirming, setConfirming] = useState(false);
  const id = useId();
  const modeSelect = useRef<HTMLSelectElement>(null);
  const cancelButton = useRef<HTMLButtonElement>(null);

  // The confirmation takes the focus (its safe choice); closed, it gives it back.
  useEffect(() => {
    if (confirming) cancelButton.current?.focus();
  }, [confirming]);
  const closeConfirm = () => {
    setConfirming(false);
    modeSelect.current?.focus();
  };

  // The list can grow once the engine has started (the CLI lists its models then).
  // biome-ignore lint/correctness/useExhaustiveDependencies: asked again when the model changes.
  useEffect(() => {
    let live = true;
    requester.request(workspaceId, "session_models").then(
      (r) => live && setOffered(parseOffered(r)),
      () => undefined, // the pickers still show what the log says
    );
    return () => {
      live = false;
    };
  }, [requester, workspaceId, settings.model]);

  const change = (c: Change) => {
    if (busy) return; // one change at a time; the select shows the setting in force
    setBusy(true);
    setFailed(null);
    requester.request(workspaceId, "session_settings", c).then(
      () => setBusy(false),
      (e: unknown) => {
        setBusy(false);
        setFailed(e instanceof Error ? e.message : "The change failed.");
      },
    );
  };

  const models = [...offered.models];
  if (settings.model && !models.some((m) => m.value === settings.model))
    models.unshift({ value: settings.model });
  const mode = (settings.permissionMode ?? "default") as PermissionMode;
  return (
    <div className="session-controls" data-testid="session-controls">
      <label>
        <span>Model</span>
        {/* Never disabled while a change is under way: that would take the focus away. */}
        <select
          aria-label="Model"
          value={settings.model ?? ""}
          aria-busy={busy}
          onChange={(e) => e.target.value && change({ model: e.target.value })}
        >
          {!settings.model && <option value="">Default</option>}
          {models.map((m) => (
            <option key={m.value} value={m.value} title={m.description}>
              {m.displayName ?? m.value}
            </option>
          ))}
        </select>
      </label>
      <label>
        <span>Mode</span>
        <select
          ref={modeSelect}
          aria-label="Permission mode"
          value={mode}
          aria-busy={busy}
          onChange={(e) => {
            const next = e.target.value as PermissionMode;
            if (busy || confirming) return;
            if (next === BYPASS) setConfirming(true);
            else change({ permissionMode: next });
          }}
        >
          {PERMISSION_MODES.map((m) => (
            <option key={m} value={m} disabled={m === BYPASS && !offered.bypassAllowed}>
              {MODE_LABELS[m]}
              {m === BYPASS && !offered.bypassAllowed ? " (disabled on this VM)" : ""}
            </option>
          ))}
        </select>
      </label>
      {confirming && (
        <div
          className="bypass-confirm"
          role="alertdialog"
          aria-labelledby={`${id}-bypass`}
          onKeyDown={(e) => {
            if (e.key === "Escape") {
              e.preventDefault();
              closeConfirm();
            }
          }}
        >
          <p id={`${id}-bypass`}>
            Bypass permissions: Claude runs every tool, commands included, without asking anyone.
          </p>
          <button type="button" ref={cancelButton} onClick={closeConfirm}>
            Cancel
          </button>
          <button
            type="button"
            className="danger"
            onClick={() => {
              closeConfirm();
              change({ permissionMode: BYPASS });
            }}
          >
            Bypass permissions
          </button>
        </div>
      )}
      {failed && (
        <p className="error-text" role="alert">
          {failed}
        </p>
      )}
    </div>
  );
}
