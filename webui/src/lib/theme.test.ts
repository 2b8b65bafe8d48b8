// @vitest-environment jsdom
import { describe, expect, it } from "vitest";
import { applyTheme, loadTheme, saveTheme, THEME_KEY } from "./theme";

function memory(): Storage {
  const m = new Map<string, string>();
  return {
    getItem: (k) => m.get(k) ?? null,
    setItem: (k, v) => void m.set(k, v),
    removeItem: (k) => void m.delete(k),
    clear: () => m.clear(),
    key: () => null,
    get length() {
      return m.size;
    },
  };
}

describe("theme", () => {
  it("keeps light and dark, and forgets the choice on system", () => {
    const s = memory();
    expect(loadTheme(s)).toBe("system");
    saveTheme(s, "dark");
    expect(s.getItem(THEME_KEY)).toBe("dark");
    expect(loadTheme(s)).toBe("dark");
    saveTheme(s, "light");
    expect(loadTheme(s)).toBe("light");
    saveTheme(s, "system");
    expect(s.getItem(THEME_KEY)).toBeNull();
    expect(loadTheme(s)).toBe("system");
  });

  it("reads an unknown value or a throwing storage as system", () => {
    const s = memory();
    s.setItem(THEME_KEY, "purple");
    expect(loadTheme(s)).toBe("system");
    const broken = {
      getItem: () => {
        throw new Error("denied");
      },
    };
    expect(loadTheme(broken)).toBe("system");
    expect(loadTheme(undefined)).toBe("system");
  });

  it("sets data-theme on the root, and removes it for system", () => {
    const root = document.createElement("html");
    applyTheme(root, "dark");
    expect(root.getAttribute("data-theme")).toBe("dark");
    applyTheme(root, "system");
    expect(root.hasAttribute("data-theme")).toBe(false);
  });
});
