import { expect, test } from "vitest";
import { badgeTitle, shouldNotify } from "./notify";

test("the title counts waiting workspaces", () => {
  expect(badgeTitle("FF Cloud", {})).toBe("FF Cloud");
  expect(
    badgeTitle("FF Cloud", { a: "waiting_for_input", b: "running", c: "waiting_for_input" }),
  ).toBe("(2) FF Cloud");
});

test("notify only when a hidden tab's workspace starts waiting", () => {
  expect(shouldNotify("waiting_for_input", "running", true)).toBe(true);
  expect(shouldNotify("waiting_for_input", "running", false)).toBe(false);
  expect(shouldNotify("waiting_for_input", "waiting_for_input", true)).toBe(false);
  expect(shouldNotify("idle", "running", true)).toBe(false);
  expect(shouldNotify("waiting_for_input", "offline", true)).toBe(false);
});
