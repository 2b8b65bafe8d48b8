import { describe, expect, test } from "vitest";
import { diffLines, withContext } from "./diff";

const show = (a: string, b: string) => diffLines(a, b).map((l) => l.op + l.text);

describe("diffLines", () => {
  test("a changed line in the middle", () => {
    expect(show("a\nb\nc", "a\nB\nc")).toEqual([" a", "-b", "+B", " c"]);
  });
  test("added and removed lines", () => {
    expect(show("a\nc", "a\nb\nc")).toEqual([" a", "+b", " c"]);
    expect(show("a\nb\nc", "a\nc")).toEqual([" a", "-b", " c"]);
  });
  test("from nothing and to nothing", () => {
    expect(show("", "x\ny")).toEqual(["+x", "+y"]);
    expect(show("x", "")).toEqual(["-x"]);
  });
  test("interleaved changes keep the common lines", () => {
    expect(show("1\n2\n3\n4", "1\nx\n3\ny")).toEqual([" 1", "-2", "+x", " 3", "-4", "+y"]);
  });
});

describe("withContext", () => {
  test("long unchanged runs fold into one marker", () => {
    const a = Array.from({ length: 20 }, (_, i) => `l${i}`).join("\n");
    const b = a.replace("l10", "L10");
    const folded = withContext(diffLines(a, b), 1);
    expect(folded.map((l) => (l ? l.op + l.text : "…"))).toEqual([
      "…",
      " l9",
      "-l10",
      "+L10",
      " l11",
      "…",
    ]);
  });
});
