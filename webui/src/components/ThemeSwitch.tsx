/** The theme switch: System (follows prefers-color-scheme), Light or Dark. */

import { useState } from "react";
import { loadTheme, setTheme, type ThemeChoice } from "../lib/theme";

export function ThemeSwitch() {
  const [choice, setChoice] = useState<ThemeChoice>(() =>
    loadTheme(typeof window === "undefined" ? undefined : window.localStorage),
  );
  return (
    <select
      className="theme-switch small"
      aria-label="Theme"
      title="Theme: the system's, light or dark"
      value={choice}
      onChange={(e) => {
        const next = e.target.value as ThemeChoice;
        setTheme(next);
        setChoice(next);
      }}
    >
      <option value="system">System</option>
      <option value="light">Light</option>
      <option value="dark">Dark</option>
    </select>
  );
}
