import { describe, expect, test } from "vitest";
import {
  completion,
  filterCommands,
  groupCommands,
  MAX_SHOWN,
  paletteKey,
  paletteQuery,
  parseCommands,
  type SlashCommand,
  shownDescription,
} from "./commands";

const list: SlashCommand[] = [
  { name: "explain", description: "Explain a file (project)", argumentHint: "<path>" },
  { name: "compact", description: "Free up context by summarizing" },
  { name: "usage", description: "Show session cost", aliases: ["cost", "stats"] },
  { name: "context", description: "Show current context usage" },
  { name: "code-review", description: "Review the current diff", aliases: ["review"] },
];

describe("parseCommands", () => {
  test("keeps well-formed commands, once each, and says whether the session was ready", () => {
    const r = parseCommands({
      commands: [
        { name: "greet", description: "Hi", argumentHint: "<name>", aliases: ["hi", 3, "no way"] },
        { name: "greet", description: "again" },
        { name: "bad name", description: "x" },
        { name: 7 },
        "context",
        { name: "context" },
      ],
      ready: true,
    });
    expect(r).toEqual({
      commands: [
        { name: "greet", description: "Hi", argumentHint: "<name>", aliases: ["hi"] },
        { name: "context", description: "" },
      ],
      ready: true,
    });
    expect(parseCommands({ commands: [], ready: false, detail: "no CLI" })).toEqual({
      commands: [],
      ready: false,
      detail: "no CLI",
    });
    expect(parseCommands(null)).toEqual({ commands: [], ready: true });
  });
});

describe("paletteQuery", () => {
  test.each([
    ["/", ""],
    ["/com", "com"],
    ["/frontend:comp", "frontend:comp"],
    ["/compact ", null],
    ["/compact now", null],
    ["hello /x", null],
    ["", null],
    [" /x", null],
    ["/usr/lib", null],
    ["/a\nb", null],
  ])("%j -> %j", (text, query) => {
    expect(paletteQuery(text)).toBe(query);
  });
});

describe("filterCommands", () => {
  test("an empty query lists everything in the VM's order", () => {
    expect(filterCommands(list, "").map((c) => c.name)).toEqual(list.map((c) => c.name));
  });

  test("name prefixes first, then aliases, then names containing it, then descriptions", () => {
    expect(filterCommands(list, "co").map((c) => c.name)).toEqual([
      "compact",
      "context",
      "code-review",
      "usage", // alias "cost"
    ]);
    expect(filterCommands(list, "REV").map((c) => c.name)).toEqual(["code-review"]);
    expect(filterCommands(list, "view").map((c) => c.name)).toEqual(["code-review"]);
    expect(filterCommands(list, "summar").map((c) => c.name)).toEqual(["compact"]);
    expect(filterCommands(list, "zzz")).toEqual([]);
    // One letter is matched against names only.
    expect(filterCommands(list, "f").map((c) => c.name)).toEqual([]);
    expect(filterCommands(list, "fr").map((c) => c.name)).toEqual(["compact"]);
  });

  test("at most MAX_SHOWN", () => {
    const many = Array.from({ length: MAX_SHOWN + 10 }, (_, i) => ({
      name: `c${i}`,
      description: "",
    }));
    expect(filterCommands(many, "c")).toHaveLength(MAX_SHOWN);
  });
});

describe("paletteKey", () => {
  test("arrows move and wrap; Enter and Tab choose; Escape closes", () => {
    expect(paletteKey("ArrowDown", 0, 3)).toEqual({ kind: "move", active: 1 });
    expect(paletteKey("ArrowDown", 2, 3)).toEqual({ kind: "move", active: 0 });
    expect(paletteKey("ArrowUp", 0, 3)).toEqual({ kind: "move", active: 2 });
    expect(paletteKey("Enter", 1, 3)).toEqual({ kind: "choose", index: 1 });
    expect(paletteKey("Tab", 2, 3)).toEqual({ kind: "choose", index: 2 });
    expect(paletteKey("Escape", 0, 3)).toEqual({ kind: "close" });
  });

  test("an active index past the list is taken as its last", () => {
    expect(paletteKey("Enter", 9, 2)).toEqual({ kind: "choose", index: 1 });
  });

  test("other keys, modified keys and an empty list leave the key to the text box", () => {
    expect(paletteKey("a", 0, 3)).toEqual({ kind: "none" });
    expect(paletteKey("Home", 0, 3)).toEqual({ kind: "none" });
    expect(paletteKey("Enter", 0, 3, { shift: true })).toEqual({ kind: "none" });
    expect(paletteKey("Enter", 0, 3, { ctrl: true })).toEqual({ kind: "none" });
    expect(paletteKey("Tab", 0, 3, { shift: true })).toEqual({ kind: "none" });
    expect(paletteKey("Enter", 0, 0)).toEqual({ kind: "none" });
    expect(paletteKey("ArrowDown", 0, 0)).toEqual({ kind: "none" });
    expect(paletteKey("Escape", 0, 0)).toEqual({ kind: "close" });
  });
});

test("completion leaves the name and a space", () => {
  expect(completion(list[0] as SlashCommand)).toBe("/explain ");
});

describe("sources and groups", () => {
  test("source is kept when the VM says it; a '(project)' description without one is the repository's", () => {
    const { commands } = parseCommands({
      commands: [
        { name: "a", description: "x", source: "builtin" },
        { name: "b", description: "Mine (project)" },
        { name: "c", description: "y", source: "somewhere" },
        { name: "d", description: "z", source: "project" },
      ],
    });
    expect(commands.map((c) => c.source)).toEqual(["builtin", "project", undefined, "project"]);
  });

  test("groups: the repository's, then built-in, then other; empty ones left out", () => {
    const cmds = [
      { name: "a", description: "", source: "builtin" as const },
      { name: "b", description: "" },
      { name: "c", description: "Do c (project)", source: "project" as const },
      { name: "d", description: "", source: "builtin" as const },
    ];
    expect(groupCommands(cmds).map((g) => [g.label, g.commands.map((c) => c.name)])).toEqual([
      ["This repository", ["c"]],
      ["Built-in", ["a", "d"]],
      ["Other", ["b"]],
    ]);
    expect(groupCommands(cmds.slice(0, 1)).map((g) => g.key)).toEqual(["builtin"]);
    expect(groupCommands([])).toEqual([]);
    expect(shownDescription(cmds[2]!)).toBe("Do c");
    expect(shownDescription({ name: "e", description: "Odd (project)" })).toBe("Odd (project)");
  });
});
