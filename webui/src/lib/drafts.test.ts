import { describe, expect, test } from "vitest";
import type { Draft } from "./attachments";
import { DraftBook, draftKey, MAX_DRAFTS, MAX_STORED_DRAFT_CHARS, parseDraft } from "./drafts";

class MemStorage {
  items = new Map<string, string>();
  full = false;
  getItem(k: string): string | null {
    return this.items.get(k) ?? null;
  }
  setItem(k: string, v: string): void {
    if (this.full) throw new DOMException("full", "QuotaExceededError");
    this.items.set(k, v);
  }
  removeItem(k: string): void {
    this.items.delete(k);
  }
}

const file = (id: string, text = "hi"): Draft => ({
  id,
  attachment: { type: "text", name: `${id}.txt`, text },
  size: text.length,
});

describe("drafts", () => {
  test("kept per key, read back after a reload, forgotten when cleared", () => {
    const storage = new MemStorage();
    const book = new DraftBook(storage);
    book.set("w", { text: "half a thought", files: [file("f1")] });
    book.set("w\u001fs_2", { text: "other session", files: [] });
    expect(book.get("w").text).toBe("half a thought");
    expect(book.get("w\u001fs_2").text).toBe("other session");
    expect(book.get("v")).toEqual({ text: "", files: [] });
    const again = new DraftBook(storage); // a reload: memory gone
    expect(again.get("w")).toEqual({ text: "half a thought", files: [file("f1")] });
    again.clear("w");
    expect(storage.getItem(draftKey("w"))).toBeNull();
    expect(new DraftBook(storage).get("w").text).toBe("");
    // An empty draft is no draft.
    again.set("w\u001fs_2", { text: "", files: [] });
    expect(storage.items.size).toBe(0);
  });

  test("a large draft is stored without its files; a full storage still keeps it in memory", () => {
    const storage = new MemStorage();
    const book = new DraftBook(storage);
    const big = file("big", "A".repeat(MAX_STORED_DRAFT_CHARS));
    book.set("w", { text: "with a photo", files: [big] });
    expect(book.get("w").files).toEqual([big]);
    expect(new DraftBook(storage).get("w")).toEqual({ text: "with a photo", files: [] });
    storage.full = true;
    book.set("v", { text: "kept anyway", files: [] });
    expect(book.get("v").text).toBe("kept anyway");
    expect(new DraftBook(storage).get("v").text).toBe("");
  });

  test("at most MAX_DRAFTS in memory, the oldest written going first", () => {
    const book = new DraftBook(undefined);
    for (let i = 0; i <= MAX_DRAFTS; i++) book.set(`w${i}`, { text: `t${i}`, files: [] });
    expect(book.get("w0").text).toBe("");
    expect(book.get("w1").text).toBe("t1");
    expect(book.get(`w${MAX_DRAFTS}`).text).toBe(`t${MAX_DRAFTS}`);
  });

  test("a stored draft that is not one is dropped", () => {
    expect(parseDraft(null)).toBeNull();
    expect(parseDraft({ text: "" })).toBeNull();
    expect(parseDraft({ text: 3, files: [{ id: "x", attachment: { type: "nope" } }] })).toBeNull();
    expect(parseDraft({ text: "ok", files: "no" })).toEqual({ text: "ok", files: [] });
    const storage = new MemStorage();
    storage.setItem(draftKey("w"), "{not json");
    expect(new DraftBook(storage).get("w")).toEqual({ text: "", files: [] });
  });
});
