/** Model and permission mode pickers under the composer; bypass asks first. */

import { useEffect, useId, useState } from "react";
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
        <select
          aria-label="Model"
          value={settings.model ?? ""}
          disabled={busy}
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
          aria-label="Permission mode"
          value={mode}
          disabled={busy || confirming}
          onChange={(e) => {
            const next = e.target.value as PermissionMode;
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
        <div className="bypass-confirm" role="alertdialog" aria-labelledby={`${id}-bypass`}>
          <p id={`${id}-bypass`}>
            Bypass permissions: Claude runs every tool, commands included, without asking anyone.
          </p>
          <button type="button" onClick={() => setConfirming(false)}>
            Cancel
          </button>
          <button
            type="button"
            className="danger"
            onClick={() => {
              setConfirming(false);
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
