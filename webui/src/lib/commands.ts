/**
 * Slash commands in the composer: what the VM's `session_commands` op lists
 * (docs/protocol.md, "Slash commands"), when the palette opens, what it
 * shows for what is typed, and how the keys move through it. Pure: the
 * palette component holds the state and calls these.
 */

/** Where a command comes from: the engine's own, or the repository's `.claude/commands`. */
export type CommandSource = "builtin" | "project";

export interface SlashCommand {
  name: string;
  description: string;
  argumentHint?: string;
  aliases?: string[];
  /** Absent when the VM does not know (the user's own commands, plugins'). */
  source?: CommandSource;
}

/** How a repository command's description ends (Claude Code's own marking). */
const PROJECT_SUFFIX = " (project)";

export interface OfferedCommands {
  commands: SlashCommand[];
  /** False while the session has no engine to ask yet (try again later). */
  ready: boolean;
  detail?: string;
}

/** Most commands the palette shows at once (the list scrolls; typing narrows it). */
export const MAX_SHOWN = 50;
/** Shortest query matched against descriptions too (one letter would match nearly all). */
export const MIN_DESCRIPTION_QUERY = 2;

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
// As the VM checks them: a name can be typed after "/" and never carries spaces.
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

/** The `session_commands` reply, checked: entries that are not commands are left off. */
export function parseCommands(v: unknown): OfferedCommands {
  const o = typeof v === "object" && v !== null ? (v as Record<string, unknown>) : {};
  const commands: SlashCommand[] = [];
  const seen = new Set<string>();
  for (const c of Array.isArray(o.commands) ? o.commands : []) {
    if (typeof c !== "object" || c === null) continue;
    const r = c as Record<string, unknown>;
    const name = str(r.name);
    if (!name || !NAME.test(name) || seen.has(name)) continue;
    seen.add(name);
    const entry: SlashCommand = { name, description: str(r.description) ?? "" };
    const hint = str(r.argumentHint);
    if (hint) entry.argumentHint = hint;
    const aliases = Array.isArray(r.aliases)
      ? r.aliases.filter((a): a is string => typeof a === "string" && NAME.test(a))
      : [];
    if (aliases.length) entry.aliases = aliases;
    // A VM from before `source`: the description's suffix still says "project".
    const source =
      r.source === "builtin" || r.source === "project"
        ? r.source
        : entry.description.endsWith(PROJECT_SUFFIX)
          ? "project"
          : undefined;
    if (source) entry.source = source;
    commands.push(entry);
  }
  const detail = str(o.detail);
  return { commands, ready: o.ready !== false, ...(detail ? { detail } : {}) };
}

/**
 * What is typed of a command name while the palette is to be open: the
 * composer's text is "/" and name characters only (no space yet: once the
 * arguments start, the palette has done its job). Null otherwise.
 */
export function paletteQuery(text: string): string | null {
  const m = /^\/([^\s/]*)$/.exec(text);
  return m ? (m[1] ?? "") : null;
}

/**
 * The commands for a query, best first: names that start with it, then
 * aliases that do, then names that contain it, then descriptions that do
 * (for a query of {@link MIN_DESCRIPTION_QUERY} characters or more); the
 * VM's order within each group. Case does not matter. At most
 * {@link MAX_SHOWN}.
 */
export function filterCommands(commands: SlashCommand[], query: string): SlashCommand[] {
  const q = query.toLowerCase();
  const rank = (c: SlashCommand): number => {
    const name = c.name.toLowerCase();
    if (name.startsWith(q)) return 0;
    if (c.aliases?.some((a) => a.toLowerCase().startsWith(q))) return 1;
    if (name.includes(q)) return 2;
    if (q.length >= MIN_DESCRIPTION_QUERY && c.description.toLowerCase().includes(q)) return 3;
    return -1;
  };
  const ranked = commands
    .map((c, i) => ({ c, i, r: rank(c) }))
    .filter((x) => x.r >= 0)
    .sort((a, b) => a.r - b.r || a.i - b.i);
  return ranked.slice(0, MAX_SHOWN).map((x) => x.c);
}

/** One heading of the palette and its commands. */
export interface CommandGroup {
  key: CommandSource | "other";
  label: string;
  commands: SlashCommand[];
}

const GROUPS: readonly { key: CommandGroup["key"]; label: string }[] = [
  { key: "project", label: "This repository" },
  { key: "builtin", label: "Built-in" },
  { key: "other", label: "Other" },
];

/**
 * The commands shown, under headings: the repository's own first (what a
 * team wrote for this code), then the built-in ones, then any the VM did
 * not place; each keeps its rank within. Empty groups are left out. The
 * options' order on screen (and for the arrow keys) is the groups' one
 * after the other.
 */
export function groupCommands(commands: readonly SlashCommand[]): CommandGroup[] {
  return GROUPS.map((g) => ({
    ...g,
    commands: commands.filter((c) => (c.source ?? "other") === g.key),
  })).filter((g) => g.commands.length > 0);
}

/** A description as the palette shows it: under its heading, " (project)" says nothing more. */
export function shownDescription(c: SlashCommand): string {
  return c.source === "project" && c.description.endsWith(PROJECT_SUFFIX)
    ? c.description.slice(0, -PROJECT_SUFFIX.length)
    : c.description;
}

/** What choosing a command puts in the composer: its name and a space, ready for arguments. */
export function completion(c: SlashCommand): string {
  return `/${c.name} `;
}

/** What a key does in the open palette. */
export type PaletteAction =
  | { kind: "move"; active: number }
  | { kind: "choose"; index: number }
  | { kind: "close" }
  | { kind: "none" };

/**
 * The palette's answer to a key: arrows move (wrapping round), Enter and Tab
 * choose the active command, Escape closes; every other key (Home and End
 * too) stays the text box's. With nothing listed, only Escape does anything
 * (Enter then sends the text as typed).
 */
export function paletteKey(
  key: string,
  active: number,
  count: number,
  mods: { shift?: boolean; ctrl?: boolean; alt?: boolean; meta?: boolean } = {},
): PaletteAction {
  if (key === "Escape") return { kind: "close" };
  if (count === 0 || mods.alt || mods.meta || mods.ctrl) return { kind: "none" };
  const at = Math.min(Math.max(active, 0), count - 1);
  switch (key) {
    case "ArrowDown":
      return { kind: "move", active: (at + 1) % count };
    case "ArrowUp":
      return { kind: "move", active: (at - 1 + count) % count };
    case "Enter":
      return mods.shift ? { kind: "none" } : { kind: "choose", index: at };
    case "Tab":
      return mods.shift ? { kind: "none" } : { kind: "choose", index: at };
    default:
      return { kind: "none" };
  }
}
