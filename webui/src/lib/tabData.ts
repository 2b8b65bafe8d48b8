/**
 * What this tab keeps of a user's unsent words in sessionStorage (drafts,
 * held messages) belongs to that user: signing out forgets it, and a login
 * as someone else in the same tab forgets the previous user's first, so
 * nobody sees, or sends as themselves, what another person wrote.
 */

import { drafts } from "./drafts";

export { tabStorage } from "./tabStorage";

/** The key naming whose data the tab holds. */
export const OWNER_KEY = "ffcloud.owner";
/** The prefixes of the keys that hold a user's unsent words. */
export const USER_DATA_PREFIXES = ["ffcloud.held.", "ffcloud.draft."] as const;

type TabStorage = Pick<Storage, "getItem" | "setItem" | "removeItem" | "key" | "length">;

/** Remove every key of a user's data, and the owner mark, from ``storage``. */
export function forgetUserData(storage: TabStorage | undefined): void {
  drafts.forgetAll();
  if (!storage) return;
  try {
    const doomed: string[] = [];
    for (let i = 0; i < storage.length; i++) {
      const key = storage.key(i);
      if (key && USER_DATA_PREFIXES.some((p) => key.startsWith(p))) doomed.push(key);
    }
    for (const key of doomed) storage.removeItem(key);
    storage.removeItem(OWNER_KEY);
  } catch {
    // Storage refused: there is nothing we could read back either.
  }
}

/** The tab's data is now ``userId``'s: anyone else's is forgotten first. */
export function claimUserData(storage: TabStorage | undefined, userId: string): void {
  let owner: string | null = null;
  try {
    owner = storage?.getItem(OWNER_KEY) ?? null;
  } catch {
    owner = null;
  }
  if (owner === userId) return;
  forgetUserData(storage);
  try {
    storage?.setItem(OWNER_KEY, userId);
  } catch {
    // Without storage nothing outlives the page anyway.
  }
}
