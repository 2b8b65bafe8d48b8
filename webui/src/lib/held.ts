/**
 * Messages the user wrote while Claude was busy, held in this tab until the
 * turn ends, then sent one at a time, each when the turn before it is over.
 * Held here rather than on the VM so that they can be edited and removed:
 * what reaches the VM is in the conversation's log for good. Kept in
 * sessionStorage (one tab's, survives a reload; two tabs never send the
 * same held message). Pure, except the storage helpers.
 */

import { parseOutgoing } from "./attachments";
import type { Conversation } from "./conversationModel";
import type { OutgoingAttachment, Status } from "./protocol";

/** At most this many held messages per workspace; the composer says so when full. */
export const MAX_HELD_MESSAGES = 20;

export interface Held {
  id: string;
  text: string;
  /** Its images and text files, sent with it (kept while it waits). */
  attachments?: OutgoingAttachment[];
}

/** The storage key of a workspace's held messages. */
export function heldKey(workspaceId: string): string {
  return `ffcloud.held.${workspaceId}`;
}

/** A turn is going on: Claude works, or waits for an answer. */
export function isBusy(status: Status | string | null | undefined): boolean {
  return status === "running" || status === "waiting_for_input";
}

/**
 * Whether the next held message may go out now: the session takes messages
 * and is idle (or in error, which the next message restarts from), nothing
 * sent is unechoed, and the turn of the last one this tab released
 * (`awaiting`) has ended with its `result`.
 */
export function canRelease(c: Conversation | undefined, awaiting: string | null): boolean {
  if (!c?.loaded || !c.online) return false;
  if (c.status !== "idle" && c.status !== "error") return false;
  if (c.outbox.length > 0) return false;
  if (awaiting === null) return true;
  const at = c.items.findIndex((i) => i.kind === "user" && i.clientMessageId === awaiting);
  if (at < 0) return true; // neither unsent nor echoed: not ours to wait for
  return c.status === "error" || c.items.slice(at + 1).some((i) => i.kind === "result");
}

/** The held messages kept for a workspace; anything malformed is dropped. */
export function loadHeld(storage: Pick<Storage, "getItem"> | undefined, ws: string): Held[] {
  try {
    const raw: unknown = JSON.parse(storage?.getItem(heldKey(ws)) ?? "[]");
    if (!Array.isArray(raw)) return [];
    const held: Held[] = [];
    for (const h of raw) {
      if (typeof h !== "object" || h === null) continue;
      const { id, text } = h as Held;
      if (typeof id !== "string" || typeof text !== "string") continue;
      const attachments = parseOutgoing((h as Held).attachments);
      if (text.trim() === "" && attachments.length === 0) continue;
      held.push(attachments.length ? { id, text, attachments } : { id, text });
    }
    return held.slice(0, MAX_HELD_MESSAGES);
  } catch {
    return [];
  }
}

/** Keep a workspace's held messages (none: the key is removed). */
export function saveHeld(
  storage: Pick<Storage, "setItem" | "removeItem"> | undefined,
  ws: string,
  held: Held[],
): void {
  try {
    if (held.length === 0) storage?.removeItem(heldKey(ws));
    else storage?.setItem(heldKey(ws), JSON.stringify(held));
  } catch {
    // Quota or policy: still held in memory for this visit.
  }
}
