import { expect, test } from "vitest";
import { formatCost, formatDuration, formatTokens, statusLabel } from "./format";

test("durations, costs, tokens and status words read well", () => {
  expect(formatDuration(340)).toBe("340 ms");
  expect(formatDuration(2500)).toBe("2.5 s");
  expect(formatDuration(125_000)).toBe("2 min 5 s");
  expect(formatCost(0)).toBe("$0");
  expect(formatCost(0.0042)).toBe("$0.0042");
  expect(formatCost(1.234)).toBe("$1.23");
  expect(formatTokens(1234)).toBe("1,234");
  expect(formatTokens(12_345)).toBe("12.3k");
  expect(statusLabel("waiting_for_input")).toBe("Waiting for input");
  expect(statusLabel(undefined)).toBe("Unknown");
});
