import { describe, expect, it } from "vitest";
import { drafts } from "./drafts";
import { claimUserData, forgetUserData, OWNER_KEY } from "./tabData";

function memoryStorage(): Storage {
  const items = new Map<string, string>();
  return {
    get length() {
      return items.size;
    },
    key: (i: number) => [...items.keys()][i] ?? null,
    getItem: (k: string) => items.get(k) ?? null,
    setItem: (k: string, v: string) => {
      items.set(k, v);
    },
    removeItem: (k: string) => {
      items.delete(k);
    },
    clear: () => items.clear(),
  };
}

describe("a tab's unsent words belong to one user", () => {
  it("signing out forgets drafts and held messages, and nothing else", () => {
    const s = memoryStorage();
    claimUserData(s, "alice");
    s.setItem("ffcloud.held.ws1", "[]");
    s.setItem("ffcloud.draft.ws1", '{"text":"secret","files":[]}');
    s.setItem("ffcloud.other", "kept");
    drafts.set("ws1", { text: "in memory", files: [] });
    forgetUserData(s);
    expect(s.getItem("ffcloud.held.ws1")).toBeNull();
    expect(s.getItem("ffcloud.draft.ws1")).toBeNull();
    expect(s.getItem(OWNER_KEY)).toBeNull();
    expect(s.getItem("ffcloud.other")).toBe("kept");
    expect(drafts.get("ws1").text).toBe("");
  });

  it("a login as someone else forgets the previous user's words first", () => {
    const s = memoryStorage();
    claimUserData(s, "alice");
    s.setItem("ffcloud.held.ws1", '[{"text":"as alice"}]');
    drafts.set("ws1", { text: "alice's draft", files: [] });
    claimUserData(s, "bob");
    expect(s.getItem("ffcloud.held.ws1")).toBeNull();
    expect(drafts.get("ws1").text).toBe("");
    expect(s.getItem(OWNER_KEY)).toBe("bob");
  });

  it("the same user logging in again (a reload, a renewed session) keeps them", () => {
    const s = memoryStorage();
    claimUserData(s, "alice");
    s.setItem("ffcloud.draft.ws1", '{"text":"keep","files":[]}');
    claimUserData(s, "alice");
    expect(s.getItem("ffcloud.draft.ws1")).toBe('{"text":"keep","files":[]}');
  });

  it("a tab with data but no owner mark (from before the mark) is treated as someone else's", () => {
    const s = memoryStorage();
    s.setItem("ffcloud.held.ws1", "[]");
    claimUserData(s, "alice");
    expect(s.getItem("ffcloud.held.ws1")).toBeNull();
  });
});
