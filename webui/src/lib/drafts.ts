/**
 * What the user has typed (and attached) in a session's composer but not
 * sent, kept per conversation key (workspace and session, `sessionKey`) so
 * that switching tabs or workspaces and coming back finds it again. Kept in
 * memory, and in sessionStorage for a reload (this tab's only) while it is
 * small enough; a draft is never sent anywhere. Cleared when sent.
 */

import { type Draft, parseOutgoing } from "./attachments";
import { tabStorage } from "./tabStorage";

/** Drafts kept in memory at once; past it the one written longest ago goes. */
export const MAX_DRAFTS = 50;
/**
 * A draft larger than this (JSON characters) is kept in sessionStorage
 * without its attachments (their previews then come back only in memory):
 * sessionStorage holds about 5 MB for the whole app.
 */
export const MAX_STORED_DRAFT_CHARS = 512 * 1024;

/** One composer's unsent text and attachments. */
export interface ComposerDraft {
  text: string;
  files: Draft[];
}

/** The storage key of a conversation's draft. */
export function draftKey(key: string): string {
  return `ffcloud.draft.${key}`;
}

/** True when there is nothing to keep. */
export function isEmptyDraft(d: ComposerDraft): boolean {
  return d.text === "" && d.files.length === 0;
}

const num = (v: unknown): number | undefined =>
  typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined;

/** A stored draft, checked: anything malformed is dropped (null: nothing usable). */
export function parseDraft(raw: unknown): ComposerDraft | null {
  if (typeof raw !== "object" || raw === null) return null;
  const o = raw as Record<string, unknown>;
  const text = typeof o.text === "string" ? o.text : "";
  const files: Draft[] = [];
  for (const f of Array.isArray(o.files) ? o.files : []) {
    if (typeof f !== "object" || f === null) continue;
    const r = f as Record<string, unknown>;
    const [attachment] = parseOutgoing([r.attachment]);
    if (!attachment || typeof r.id !== "string") continue;
    const d: Draft = { id: r.id, attachment, size: num(r.size) ?? 0 };
    const w = num(r.width);
    const h = num(r.height);
    if (w !== undefined && h !== undefined) {
      d.width = w;
      d.height = h;
    }
    files.push(d);
  }
  const d = { text, files };
  return isEmptyDraft(d) ? null : d;
}

type DraftStorage = Pick<Storage, "getItem" | "setItem" | "removeItem">;

/** The drafts of this tab: memory first, sessionStorage behind it. */
export class DraftBook {
  private readonly memory = new Map<string, ComposerDraft>();

  constructor(private readonly storage: DraftStorage | undefined) {}

  /** The draft of a conversation, or an empty one. */
  get(key: string): ComposerDraft {
    const kept = this.memory.get(key);
    if (kept) return kept;
    try {
      const raw = this.storage?.getItem(draftKey(key));
      const d = raw ? parseDraft(JSON.parse(raw)) : null;
      if (d) return d;
    } catch {
      // Unreadable: nothing kept.
    }
    return { text: "", files: [] };
  }

  /** Keep a conversation's draft (an empty one is forgotten). */
  set(key: string, d: ComposerDraft): void {
    if (isEmptyDraft(d)) {
      this.clear(key);
      return;
    }
    this.memory.delete(key); // re-inserted last: the newest
    this.memory.set(key, d);
    while (this.memory.size > MAX_DRAFTS) {
      const oldest = this.memory.keys().next().value;
      if (oldest === undefined) break;
      this.memory.delete(oldest);
    }
    try {
      let json = JSON.stringify(d);
      if (json.length > MAX_STORED_DRAFT_CHARS) json = JSON.stringify({ text: d.text, files: [] });
      if (json.length > MAX_STORED_DRAFT_CHARS) this.storage?.removeItem(draftKey(key));
      else this.storage?.setItem(draftKey(key), json);
    } catch {
      // Quota or policy: still kept in memory for this visit.
    }
  }

  /** Forget every draft kept in memory (sessionStorage: see lib/tabData). */
  forgetAll(): void {
    this.memory.clear();
  }

  /** Forget a conversation's draft (it was sent). */
  clear(key: string): void {
    this.memory.delete(key);
    try {
      this.storage?.removeItem(draftKey(key));
    } catch {
      // Nothing to do: it is gone from memory.
    }
  }
}

/** This tab's drafts (one book for the whole app). */
export const drafts = new DraftBook(tabStorage());
