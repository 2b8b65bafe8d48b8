/**
 * A session's model and permission mode, as the log says: Claude Code's
 * `system` `init` line (what it runs with, at each turn) and vmagent's
 * `vmagent_session_settings` line (what a user chose); the latest wins.
 */

export const PERMISSION_MODES = ["default", "acceptEdits", "plan", "bypassPermissions"] as const;
export type PermissionMode = (typeof PERMISSION_MODES)[number];
export const BYPASS: PermissionMode = "bypassPermissions";

export const MODE_LABELS: Record<PermissionMode, string> = {
  default: "Ask before tools",
  acceptEdits: "Accept edits",
  plan: "Plan first",
  bypassPermissions: "Bypass permissions",
};

export interface SessionSettings {
  model: string | null;
  permissionMode: string | null;
}

export const emptySettings: SessionSettings = { model: null, permissionMode: null };

const str = (v: unknown): string | null => (typeof v === "string" && v ? v : null);

/** The settings after one stream-json line (the same object when it changes nothing). */
export function applySettings(s: SessionSettings, data: Record<string, unknown>): SessionSettings {
  if (data.type !== "system") return s;
  if (data.subtype !== "init" && data.subtype !== "vmagent_session_settings") return s;
  const model = str(data.model) ?? s.model;
  const permissionMode = str(data.permissionMode) ?? s.permissionMode;
  return model === s.model && permissionMode === s.permissionMode ? s : { model, permissionMode };
}

export interface OfferedModel {
  value: string;
  displayName?: string;
  description?: string;
}

export interface Offered {
  models: OfferedModel[];
  bypassAllowed: boolean;
}

/** The `session_models` reply, checked. */
export function parseOffered(v: unknown): Offered {
  const o = typeof v === "object" && v !== null ? (v as Record<string, unknown>) : {};
  const models: OfferedModel[] = [];
  for (const m of Array.isArray(o.models) ? o.models : []) {
    if (typeof m !== "object" || m === null) continue;
    const r = m as Record<string, unknown>;
    const value = str(r.value);
    if (!value) continue;
    models.push({
      value,
      displayName: str(r.displayName) ?? undefined,
      description: str(r.description) ?? undefined,
    });
  }
  return { models, bypassAllowed: o.bypassAllowed !== false };
}
