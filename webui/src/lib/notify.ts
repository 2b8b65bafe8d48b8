/** The title badge and browser notifications for workspaces that need the user. */

/** The page title with a count of workspaces waiting for input. */
export function badgeTitle(base: string, statuses: Record<string, string>): string {
  const n = Object.values(statuses).filter((s) => s === "waiting_for_input").length;
  return n > 0 ? `(${n}) ${base}` : base;
}

/**
 * Whether a status change deserves a notification: it starts waiting while the tab is
 * hidden. A VM coming back (from `offline`) to a question already asked is not news.
 */
export function shouldNotify(status: string, prev: string | undefined, hidden: boolean): boolean {
  return (
    hidden && status === "waiting_for_input" && prev !== "waiting_for_input" && prev !== "offline"
  );
}
