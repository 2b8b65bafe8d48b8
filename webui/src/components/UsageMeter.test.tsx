// @vitest-environment jsdom
import { cleanup, render, screen } from "@testing-library/react";
import { afterEach, expect, test } from "vitest";
import { emptyUsage } from "../lib/usage";
import { UsageMeter } from "./UsageMeter";

afterEach(cleanup);

test("shows tokens, cost and the context fill", () => {
  render(
    <UsageMeter
      usage={{
        ...emptyUsage,
        turns: 2,
        inputTokens: 30_000,
        outputTokens: 1_500,
        costUsd: 0.4213,
        contextTokens: 50_000,
        contextWindow: 200_000,
      }}
    />,
  );
  const meter = screen.getByRole("region", { name: "Session usage" });
  expect(meter.textContent).toContain("31.5k tokens");
  expect(meter.textContent).toContain("$0.42");
  expect(screen.getByTestId("usage-context").textContent).toBe("context 25% (50.0k of 200.0k)");
  const bar = screen.getByRole("meter", { name: "Context window used" }) as HTMLMeterElement;
  expect(bar.getAttribute("value")).toBe("0.25");
});

test("says nothing before the first turn, and no fill while the window is unknown", () => {
  const { container } = render(<UsageMeter usage={emptyUsage} />);
  expect(container.textContent).toBe("");
  render(<UsageMeter usage={{ ...emptyUsage, turns: 1, inputTokens: 12, outputTokens: 3 }} />);
  expect(screen.getByTestId("usage-tokens").textContent).toBe("15");
  expect(screen.queryByRole("meter")).toBeNull();
});
