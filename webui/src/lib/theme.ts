/**
 * The colour theme: the system's (`prefers-color-scheme`) unless the user
 * chose light or dark, which is kept in localStorage. The choice is applied
 * as `data-theme` on the root element; the stylesheet's colours are
 * `light-dark()` pairs, so the attribute only sets `color-scheme`.
 */

export type ThemeChoice = "system" | "light" | "dark";

/** The localStorage key of the user's choice. */
export const THEME_KEY = "ffcloud.theme";

const CHOICES: readonly ThemeChoice[] = ["system", "light", "dark"];

/** The stored choice; anything unknown or unreadable is "system". */
export function loadTheme(storage: Pick<Storage, "getItem"> | undefined): ThemeChoice {
  try {
    const v = storage?.getItem(THEME_KEY);
    return CHOICES.includes(v as ThemeChoice) ? (v as ThemeChoice) : "system";
  } catch {
    return "system"; // storage disabled (private mode, policy)
  }
}

/** Keep the choice; "system" forgets it, so a later change of the system setting is followed. */
export function saveTheme(
  storage: Pick<Storage, "setItem" | "removeItem"> | undefined,
  choice: ThemeChoice,
): void {
  try {
    if (choice === "system") storage?.removeItem(THEME_KEY);
    else storage?.setItem(THEME_KEY, choice);
  } catch {
    // Not kept, still applied for this visit.
  }
}

/** Apply the choice to the document (`data-theme` absent for "system"). */
export function applyTheme(root: HTMLElement, choice: ThemeChoice): void {
  if (choice === "system") root.removeAttribute("data-theme");
  else root.setAttribute("data-theme", choice);
}

function safeStorage(): Storage | undefined {
  try {
    return window.localStorage;
  } catch {
    return undefined;
  }
}

/** Apply the stored choice before the first render, so no screen flashes the other theme. */
export function initTheme(): ThemeChoice {
  const choice = loadTheme(safeStorage());
  applyTheme(document.documentElement, choice);
  return choice;
}

/** Apply and keep a new choice. */
export function setTheme(choice: ThemeChoice): void {
  applyTheme(document.documentElement, choice);
  saveTheme(safeStorage(), choice);
}
