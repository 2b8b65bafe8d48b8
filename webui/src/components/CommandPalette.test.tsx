// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { useRef, useState } from "react";
import { afterEach, describe, expect, test, vi } from "vitest";
import { NOT_READY_RETRY_MS, useCommandPalette } from "./CommandPalette";

afterEach(cleanup);

const offered = {
  commands: [
    { name: "roll", description: "Roll a die", argumentHint: "[sides]" },
    { name: "shout", description: "Say it in capitals", argumentHint: "<text>" },
    { name: "explain", description: "Explain a file (project)", argumentHint: "<path>" },
  ],
  ready: true,
};

/** A text box with the palette, as the composer has it; Enter "sends" what the palette leaves. */
function Harness({ load, onSend }: { load?: () => Promise<unknown>; onSend: (t: string) => void }) {
  const [text, setText] = useState("");
  const ref = useRef<HTMLTextAreaElement>(null);
  const palette = useCommandPalette({
    text,
    setText,
    load,
    focusInput: () => ref.current?.focus(),
  });
  return (
    <div>
      {palette.element}
      <textarea
        {...palette.inputProps}
        aria-label="Message to Claude"
        ref={ref}
        value={text}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={(e) => {
          if (palette.onKeyDown(e)) return;
          if (e.key === "Enter") {
            e.preventDefault();
            onSend(text);
          }
        }}
      />
    </div>
  );
}

async function setup(reply: unknown = offered) {
  const load = vi.fn(() =>
    reply instanceof Error ? Promise.reject(reply) : Promise.resolve(reply),
  );
  const onSend = vi.fn();
  render(<Harness load={load} onSend={onSend} />);
  const box = screen.getByLabelText("Message to Claude") as HTMLTextAreaElement;
  const type = async (value: string) => {
    fireEvent.change(box, { target: { value } });
    await act(async () => {});
  };
  const key = async (k: string, mods: Record<string, boolean> = {}) => {
    fireEvent.keyDown(box, { key: k, ...mods });
    await act(async () => {});
  };
  return { box, load, onSend, type, key };
}

const options = () => screen.queryAllByRole("option").map((o) => o.textContent);

describe("the command palette", () => {
  test("'/' opens it as a combobox with the session's commands; typing narrows", async () => {
    const { box, load, type } = await setup();
    expect(box.getAttribute("role")).toBeNull();
    expect(screen.queryByRole("listbox")).toBeNull();
    await type("/");
    expect(load).toHaveBeenCalledTimes(1);
    expect(box.getAttribute("role")).toBe("combobox");
    expect(box.getAttribute("aria-expanded")).toBe("true");
    const listbox = screen.getByRole("listbox", { name: "Slash commands" });
    expect(box.getAttribute("aria-controls")).toBe(listbox.id);
    // The repository's command (its "(project)" description) comes first, under its heading.
    expect(options()).toEqual([
      "/explain<path>Explain a file",
      "/roll[sides]Roll a die",
      "/shout<text>Say it in capitals",
    ]);
    const [first] = screen.getAllByRole("option");
    expect(box.getAttribute("aria-activedescendant")).toBe(first?.id);
    expect(first?.getAttribute("aria-selected")).toBe("true");
    await type("/sh");
    expect(options()).toEqual(["/shout<text>Say it in capitals"]);
    await type("/file");
    expect(options()).toEqual(["/explain<path>Explain a file"]);
  });

  test("arrows move the active option, Enter fills the composer and does not send", async () => {
    const { box, onSend, type, key } = await setup();
    await type("/");
    await key("ArrowDown");
    const second = screen.getAllByRole("option")[1];
    expect(box.getAttribute("aria-activedescendant")).toBe(second?.id);
    expect(second?.getAttribute("aria-selected")).toBe("true");
    await key("ArrowUp");
    await key("ArrowUp"); // wraps to the last
    expect(screen.getAllByRole("option")[2]?.getAttribute("aria-selected")).toBe("true");
    await key("Enter");
    expect(box.value).toBe("/shout ");
    expect(onSend).not.toHaveBeenCalled();
    // The arguments follow; the palette has closed, Enter sends again.
    expect(screen.queryByRole("listbox")).toBeNull();
    expect(box.getAttribute("role")).toBeNull();
    await type("/explain src/app.py");
    await key("Enter");
    expect(onSend).toHaveBeenCalledWith("/explain src/app.py");
  });

  test("the repository's commands and the built-in ones are separate groups, in that order", async () => {
    const { box, type, key } = await setup({
      commands: [
        { name: "clear", description: "Clear the conversation", source: "builtin" },
        { name: "review", description: "Review a pull request", source: "builtin" },
        { name: "release", description: "Cut a release (project)", source: "project" },
        { name: "mine", description: "A command of the user's" },
      ],
      ready: true,
    });
    await type("/");
    const listbox = screen.getByRole("listbox", { name: "Slash commands" });
    const groups = screen.getAllByRole("group");
    expect(groups.map((g) => g.parentElement)).toEqual([listbox, listbox, listbox]);
    const named = (name: string) => screen.getByRole("group", { name });
    const within = (g: HTMLElement) =>
      Array.from(g.querySelectorAll('[role="option"]')).map((o) => o.textContent);
    expect(within(named("This repository"))).toEqual(["/releaseCut a release"]);
    expect(within(named("Built-in"))).toEqual([
      "/clearClear the conversation",
      "/reviewReview a pull request",
    ]);
    expect(within(named("Other"))).toEqual(["/mineA command of the user's"]);
    // The arrows follow the screen's order: the repository's first.
    await key("ArrowDown");
    expect(box.getAttribute("aria-activedescendant")).toBe(
      screen.getByRole("option", { name: /\/clear/ }).id,
    );
    // Narrowed: best first within each group, the groups kept.
    await type("/re");
    expect(options()).toEqual(["/releaseCut a release", "/reviewReview a pull request"]);
    expect(screen.getAllByRole("group").map((g) => g.getAttribute("aria-labelledby"))).toHaveLength(
      2,
    );
    await key("Enter");
    expect(box.value).toBe("/release ");
  });

  test("Tab chooses too; Escape closes until the text starts over", async () => {
    const { box, type, key } = await setup();
    await type("/r");
    await key("Tab");
    expect(box.value).toBe("/roll ");
    await type("/s");
    await key("Escape");
    expect(screen.queryByRole("listbox")).toBeNull();
    await type("/sh");
    expect(screen.queryByRole("listbox")).toBeNull(); // still dismissed
    await type("");
    await type("/");
    expect(screen.getByRole("listbox")).toBeTruthy();
  });

  test("a click (or a tap) chooses and keeps the focus in the text box", async () => {
    const { box, type } = await setup();
    box.focus();
    await type("/");
    const shout = screen.getByRole("option", { name: /shout/ });
    const down = fireEvent.mouseDown(shout);
    expect(down).toBe(false); // default prevented: no blur
    fireEvent.mouseMove(shout);
    expect(shout.getAttribute("aria-selected")).toBe("true");
    fireEvent.click(shout);
    await act(async () => {});
    expect(box.value).toBe("/shout ");
    expect(document.activeElement).toBe(box);
  });

  test("no match: says so, and Enter sends the text as typed", async () => {
    const { onSend, type, key } = await setup();
    await type("/nosuch");
    expect(screen.getByRole("status").textContent).toContain("No command matches /nosuch");
    await key("Enter");
    expect(onSend).toHaveBeenCalledWith("/nosuch");
  });

  test("a session not started yet, and a failed request, are said plainly", async () => {
    const early = await setup({ commands: [], ready: false });
    await early.type("/");
    expect(screen.getByRole("status").textContent).toContain("once the session has started");
    cleanup();
    const failed = await setup(new Error("The VM is offline."));
    await failed.type("/");
    expect(screen.getByRole("status").textContent).toContain("The VM is offline.");
  });

  test("a session not ready is asked again while the palette stays open", async () => {
    vi.useFakeTimers();
    try {
      const replies = [{ commands: [], ready: false }, offered];
      const load = vi.fn(() => Promise.resolve(replies.shift() ?? offered));
      render(<Harness load={load} onSend={() => undefined} />);
      const box = screen.getByLabelText("Message to Claude");
      fireEvent.change(box, { target: { value: "/" } });
      await act(async () => {});
      expect(screen.getByRole("status").textContent).toContain("once the session has started");
      await act(async () => {
        vi.advanceTimersByTime(NOT_READY_RETRY_MS);
      });
      expect(load).toHaveBeenCalledTimes(2);
      expect(options()).toHaveLength(3);
      await act(async () => {
        vi.advanceTimersByTime(NOT_READY_RETRY_MS * 3);
      });
      expect(load).toHaveBeenCalledTimes(2); // ready: no more asking
    } finally {
      vi.useRealTimers();
    }
  });

  test("asked again each time it opens", async () => {
    const { load, type } = await setup();
    await type("/");
    await type("/roll ");
    await type("/");
    expect(load).toHaveBeenCalledTimes(2);
  });

  test("another session's palette does not show the last one's commands", async () => {
    const first = vi.fn(() => Promise.resolve(offered));
    let answer: (v: unknown) => void = () => undefined;
    const second = vi.fn(() => new Promise((resolve) => (answer = resolve)));
    const { rerender } = render(<Harness load={first} onSend={() => undefined} />);
    const box = screen.getByLabelText("Message to Claude");
    fireEvent.change(box, { target: { value: "/" } });
    await act(async () => {});
    expect(options()).toHaveLength(3);
    rerender(<Harness load={second} onSend={() => undefined} />);
    await act(async () => {});
    expect(second).toHaveBeenCalledTimes(1);
    expect(options()).toEqual([]);
    expect(screen.getByRole("status").textContent).toContain("Loading commands");
    await act(async () => answer({ commands: [{ name: "only", description: "" }] }));
    expect(options()).toEqual(["/only"]);
  });

  test("without a way to ask the VM there is no palette", async () => {
    render(<Harness onSend={() => undefined} />);
    const box = screen.getByLabelText("Message to Claude");
    fireEvent.change(box, { target: { value: "/" } });
    await act(async () => {});
    expect(screen.queryByRole("listbox")).toBeNull();
  });
});
