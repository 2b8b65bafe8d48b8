// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, test, vi } from "vitest";
import { RequestError } from "../lib/requests";
import { applySettings, emptySettings } from "../lib/sessionSettings";
import { SessionControls } from "./SessionControls";

afterEach(cleanup);

function fakeRequester(offered: Record<string, unknown>, fail?: string) {
  const calls: [string, Record<string, unknown> | undefined][] = [];
  const request = vi.fn((_ws: string, op: string, args?: Record<string, unknown>) => {
    calls.push([op, args]);
    if (op === "session_models") return Promise.resolve(offered);
    if (fail) return Promise.reject(new RequestError("forbidden", fail));
    return Promise.resolve({});
  });
  return { request, calls };
}

const offered = {
  models: [
    { value: "opus", displayName: "Opus" },
    { value: "sonnet", displayName: "Sonnet", description: "Efficient" },
  ],
  bypassAllowed: true,
};

async function renderControls(r: ReturnType<typeof fakeRequester>, model = "opus") {
  render(
    <SessionControls
      workspaceId="ws1"
      settings={{ model, permissionMode: "default" }}
      requester={r}
    />,
  );
  await act(async () => {});
}

describe("SessionControls", () => {
  test("lists the offered models and changes the model", async () => {
    const r = fakeRequester(offered);
    await renderControls(r);
    const select = screen.getByRole("combobox", { name: "Model" }) as HTMLSelectElement;
    expect([...select.options].map((o) => o.value)).toEqual(["opus", "sonnet"]);
    fireEvent.change(select, { target: { value: "sonnet" } });
    await act(async () => {});
    expect(r.calls).toContainEqual(["session_settings", { model: "sonnet" }]);
  });

  test("bypass waits for an explicit confirmation; cancel sends nothing", async () => {
    const r = fakeRequester(offered);
    await renderControls(r);
    const mode = screen.getByRole("combobox", { name: "Permission mode" });
    fireEvent.change(mode, { target: { value: "bypassPermissions" } });
    expect(screen.getByRole("alertdialog").textContent).toContain("without asking");
    expect(r.calls.filter(([op]) => op === "session_settings")).toEqual([]);
    fireEvent.click(screen.getByRole("button", { name: "Cancel" }));
    expect(screen.queryByRole("alertdialog")).toBeNull();
    expect(r.calls.filter(([op]) => op === "session_settings")).toEqual([]);

    fireEvent.change(mode, { target: { value: "bypassPermissions" } });
    fireEvent.click(screen.getByRole("button", { name: "Bypass permissions" }));
    await act(async () => {});
    expect(r.calls).toContainEqual(["session_settings", { permissionMode: "bypassPermissions" }]);
  });

  test("the confirmation takes the focus; Escape cancels and gives it back", async () => {
    const r = fakeRequester(offered);
    await renderControls(r);
    const mode = screen.getByRole("combobox", { name: "Permission mode" });
    mode.focus();
    fireEvent.change(mode, { target: { value: "bypassPermissions" } });
    expect(document.activeElement).toBe(screen.getByRole("button", { name: "Cancel" }));
    fireEvent.keyDown(screen.getByRole("alertdialog"), { key: "Escape" });
    expect(screen.queryByRole("alertdialog")).toBeNull();
    expect(document.activeElement).toBe(mode);
    expect(r.calls.filter(([op]) => op === "session_settings")).toEqual([]);
  });

  test("a change under way keeps the picker usable (and focused) but sends one at a time", async () => {
    const r = fakeRequester(offered);
    r.request.mockImplementation((_ws: string, op: string, args?: Record<string, unknown>) => {
      r.calls.push([op, args]);
      return op === "session_models" ? Promise.resolve(offered) : new Promise(() => {});
    });
    await renderControls(r);
    const mode = screen.getByRole("combobox", { name: "Permission mode" }) as HTMLSelectElement;
    mode.focus();
    fireEvent.change(mode, { target: { value: "plan" } });
    fireEvent.change(mode, { target: { value: "acceptEdits" } });
    await act(async () => {});
    expect(mode.disabled).toBe(false);
    expect(document.activeElement).toBe(mode);
    expect(mode.getAttribute("aria-busy")).toBe("true");
    expect(r.calls.filter(([op]) => op === "session_settings")).toEqual([
      ["session_settings", { permissionMode: "plan" }],
    ]);
  });

  test("other modes go at once; a refusal is shown", async () => {
    const r = fakeRequester(offered, "bypassPermissions is disabled on this VM by its operator");
    await renderControls(r);
    fireEvent.change(screen.getByRole("combobox", { name: "Permission mode" }), {
      target: { value: "plan" },
    });
    await act(async () => {});
    expect(r.calls).toContainEqual(["session_settings", { permissionMode: "plan" }]);
    expect(screen.getByRole("alert").textContent).toContain("disabled on this VM");
  });

  test("bypass is not offered where the VM forbids it; the model in use is always listed", async () => {
    const r = fakeRequester({ models: [], bypassAllowed: false });
    await renderControls(r, "claude-x");
    const bypass = screen.getByRole("option", { name: /Bypass permissions/ }) as HTMLOptionElement;
    expect(bypass.disabled).toBe(true);
    const select = screen.getByRole("combobox", { name: "Model" }) as HTMLSelectElement;
    expect([...select.options].map((o) => o.value)).toEqual(["claude-x"]);
  });
});

describe("applySettings", () => {
  test("init and vmagent's own line set them; the latest wins; other lines change nothing", () => {
    const a = applySettings(emptySettings, {
      type: "system",
      subtype: "init",
      model: "opus",
      permissionMode: "default",
    });
    expect(a).toEqual({ model: "opus", permissionMode: "default" });
    const b = applySettings(a, {
      type: "system",
      subtype: "vmagent_session_settings",
      permissionMode: "plan",
    });
    expect(b).toEqual({ model: "opus", permissionMode: "plan" });
    expect(applySettings(b, { type: "assistant", model: "x" })).toBe(b);
    expect(applySettings(b, { type: "system", subtype: "init", model: "opus" })).toBe(b);
  });
});
