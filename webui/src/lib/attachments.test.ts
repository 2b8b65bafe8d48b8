import { describe, expect, it } from "vitest";
import {
  type AttachmentLimits,
  base64Bytes,
  DEFAULT_LIMITS,
  type Draft,
  type FileLike,
  fitSize,
  formatBytes,
  frameChars,
  type ImageCodec,
  imageType,
  isDraft,
  MAX_FRAME_CHARS,
  parseLimits,
  parseOutgoing,
  parseShown,
  pickSmallest,
  prepareImage,
  prepareText,
  type Refusal,
  sendProblem,
  shownOf,
} from "./attachments";
import { reduce } from "./conversation";
import { emptyConversation } from "./conversationModel";
import { loadHeld } from "./held";
import type { ImageMediaType, OutgoingAttachment } from "./protocol";

const limits: AttachmentLimits = {
  maxAttachments: 3,
  maxImageBytes: 1000,
  maxImageEdge: 8000,
  maxTextAttachmentChars: 10,
};

function file(name: string, type: string, bytes: number): FileLike {
  return Object.assign(new Blob([new Uint8Array(bytes)], { type }), { name });
}

/** A codec whose encodings weigh what `sizes` says per type and quality, at any size. */
function fakeCodec(
  width: number,
  height: number,
  sizes: (type: ImageMediaType, quality: number, w: number, h: number) => number | null,
) {
  const calls: string[] = [];
  const codec: ImageCodec = {
    measure: async () => ({ width, height }),
    encode: async (_f, w, h, type, quality) => {
      calls.push(`${type}@${quality} ${w}x${h}`);
      const n = sizes(type, quality, w, h);
      return n === null ? null : new Blob([new Uint8Array(n)], { type });
    },
    base64: async (blob) => `b64:${blob.type}:${blob.size}`,
    release: () => {
      calls.push("release");
    },
  };
  return { codec, calls };
}

async function prepared(r: Promise<Draft | Refusal>): Promise<Draft> {
  const x = await r;
  if (!isDraft(x)) throw new Error(`refused: ${x.reason}`);
  return x;
}

describe("shrinking images", () => {
  it("fits the long edge to 1568 pixels, proportions kept, never enlarging", () => {
    expect(fitSize(4032, 3024)).toEqual({ width: 1568, height: 1176 });
    expect(fitSize(1000, 3000)).toEqual({ width: 523, height: 1568 });
    expect(fitSize(800, 600)).toEqual({ width: 800, height: 600 });
    expect(fitSize(10000, 1)).toEqual({ width: 1568, height: 1 });
  });

  it("keeps the smallest encoding, the original on a tie", () => {
    const orig = { mediaType: "image/png" as const, blob: new Blob([new Uint8Array(10)]) };
    const jpeg = { mediaType: "image/jpeg" as const, blob: new Blob([new Uint8Array(8)]) };
    const same = { mediaType: "image/webp" as const, blob: new Blob([new Uint8Array(10)]) };
    expect(pickSmallest(orig, [same])).toBe(orig);
    expect(pickSmallest(orig, [same, jpeg])).toBe(jpeg);
    expect(pickSmallest(null, [])).toBeNull();
  });

  it("shrinks a large photo and sends the smallest of PNG, JPEG and WebP", async () => {
    const { codec, calls } = fakeCodec(4032, 3024, (t) =>
      t === "image/png" ? 5000 : t === "image/jpeg" ? 700 : 650,
    );
    const d = await prepared(prepareImage(file("cat.png", "image/png", 9000), limits, codec, "1"));
    expect(calls).toEqual([
      "image/png@0.85 1568x1176",
      "image/jpeg@0.85 1568x1176",
      "image/webp@0.85 1568x1176",
      "release",
    ]);
    expect(d.attachment).toEqual({
      type: "image",
      mediaType: "image/webp",
      data: "b64:image/webp:650",
      name: "cat.png",
    });
    expect(d.size).toBe(650);
    expect(d.shrunkFrom).toEqual({ width: 4032, height: 3024 });
    expect([d.width, d.height]).toEqual([1568, 1176]);
  });

  it("shrinks further when the VM takes fewer pixels than Claude's guidance", async () => {
    const { codec, calls } = fakeCodec(2000, 1000, () => 500);
    const small = { ...limits, maxImageEdge: 1000 };
    const d = await prepared(prepareImage(file("w.png", "image/png", 9000), small, codec, "1"));
    expect([d.width, d.height]).toEqual([1000, 500]);
    expect(calls[0]).toBe("image/png@0.85 1000x500");
  });

  it("keeps a small original when re-encoding does not make it smaller", async () => {
    const { codec } = fakeCodec(300, 200, () => 900);
    const d = await prepared(prepareImage(file("s.jpg", "image/jpg", 500), limits, codec, "1"));
    expect(d.attachment).toMatchObject({ mediaType: "image/jpeg", data: "b64:image/jpg:500" });
    expect(d.shrunkFrom).toBeUndefined();
  });

  it("re-encodes an original that fits when JPEG or WebP is smaller", async () => {
    const { codec } = fakeCodec(300, 200, (t) => (t === "image/jpeg" ? 300 : 800));
    const d = await prepared(prepareImage(file("s.png", "image/png", 900), limits, codec, "1"));
    expect(d.attachment).toMatchObject({ mediaType: "image/jpeg" });
  });

  it("tries lower qualities until it fits, and refuses what never does", async () => {
    const { codec, calls } = fakeCodec(2000, 1000, (_t, q) => (q >= 0.7 ? 1500 : 990));
    const d = await prepared(
      prepareImage(file("big.webp", "image/webp", 8000), limits, codec, "1"),
    );
    expect(d.size).toBe(990);
    expect(calls.filter((c) => c.includes("@0.5"))).toHaveLength(2);
    expect(calls.at(-1)).toBe("release");

    const never = fakeCodec(2000, 1000, () => 4096).codec;
    const r = await prepareImage(file("huge.png", "image/png", 9000), limits, never, "2");
    expect(r).toEqual({
      name: "huge.png",
      reason: "4 KB even when shrunk; at most 1000 bytes per image",
    });
  });

  it("leaves a GIF that fits alone (its animation), shrinks one that does not", async () => {
    const { codec, calls } = fakeCodec(400, 300, () => 100);
    const d = await prepared(prepareImage(file("a.gif", "image/gif", 900), limits, codec, "1"));
    expect(d.attachment).toMatchObject({ mediaType: "image/gif", data: "b64:image/gif:900" });
    expect(calls).toEqual(["release"]);
    const big = await prepared(prepareImage(file("b.gif", "image/gif", 5000), limits, codec, "2"));
    expect(big.attachment).toMatchObject({ mediaType: "image/png" });
  });

  it("converts other image types the browser reads, refuses what it cannot read", async () => {
    const { codec } = fakeCodec(100, 100, (t) => (t === "image/png" ? 300 : 400));
    const d = await prepared(prepareImage(file("x.bmp", "image/bmp", 30000), limits, codec, "1"));
    expect(d.attachment).toMatchObject({ mediaType: "image/png", name: "x.bmp" });
    const broken: ImageCodec = { ...codec, measure: async () => Promise.reject(new Error("no")) };
    const r = await prepareImage(file("p.heic", "image/heic", 10), limits, broken, "2");
    expect(r).toEqual({
      name: "p.heic",
      reason: "the browser cannot read this image; send a PNG, JPEG, GIF or WebP file",
    });
  });

  it("never passes off an encoding the browser could not make", async () => {
    const { codec } = fakeCodec(3000, 3000, (t) => (t === "image/webp" ? null : 800));
    const d = await prepared(prepareImage(file("a.png", "image/png", 9000), limits, codec, "1"));
    expect(d.attachment).toMatchObject({ mediaType: "image/png" });
  });
});

describe("text files", () => {
  const bytes = (s: string) => new TextEncoder().encode(s);

  it("takes UTF-8 text up to the limit", () => {
    expect(prepareText("n.md", bytes("héllo"), limits, "1")).toEqual({
      id: "1",
      attachment: { type: "text", name: "n.md", text: "héllo" },
      size: 5,
    });
  });

  it("says why it refuses one", () => {
    expect(prepareText("long.txt", bytes("x".repeat(11)), limits, "1")).toEqual({
      name: "long.txt",
      reason: "11 characters; at most 10 per text file",
    });
    expect(prepareText("a.pdf", new Uint8Array([0x25, 0xff, 0xfe]), limits, "1")).toEqual({
      name: "a.pdf",
      reason: "not an image (PNG, JPEG, GIF or WebP) nor a UTF-8 text file",
    });
    expect(prepareText("a.bin", bytes("a\u0000b"), limits, "1")).toMatchObject({
      reason: "not an image (PNG, JPEG, GIF or WebP) nor a text file",
    });
  });
});

describe("before sending", () => {
  const image = (n: number): OutgoingAttachment => ({
    type: "image",
    mediaType: "image/jpeg",
    data: "A".repeat(n),
  });

  it("refuses too many files and files too large together, saying what to do", () => {
    expect(sendProblem("hi", [], limits)).toBeNull();
    expect(sendProblem("hi", [image(4), image(4), image(4)], limits)).toBeNull();
    expect(sendProblem("hi", [image(4), image(4), image(4), image(4)], limits)).toBe(
      "4 files; at most 3 per message. Remove some, or send them in another message.",
    );
    const half = Math.floor(MAX_FRAME_CHARS / 2);
    expect(sendProblem("hi", [image(half), image(half)], DEFAULT_LIMITS)).toBe(
      "Together these files are 1.0 MB to send; one message carries at most 1.0 MB. Remove some, or send them in another message.",
    );
    expect(frameChars("", [image(100)])).toBeGreaterThan(100);
  });

  it("learns the VM's limits, the defaults for what it leaves out or gets wrong", () => {
    expect(
      parseLimits({ attachments: { maxAttachments: 2, maxImageBytes: 5, maxImageEdge: 1000 } }),
    ).toEqual({
      maxAttachments: 2,
      maxImageBytes: 5,
      maxImageEdge: 1000,
      maxTextAttachmentChars: DEFAULT_LIMITS.maxTextAttachmentChars,
    });
    expect(parseLimits({ attachments: { maxAttachments: "9", maxImageBytes: -1 } })).toEqual(
      DEFAULT_LIMITS,
    );
    expect(parseLimits(null)).toEqual(DEFAULT_LIMITS);
  });

  it("formats sizes and counts base64's bytes", () => {
    expect(formatBytes(812)).toBe("812 bytes");
    expect(formatBytes(240 * 1024)).toBe("240 KB");
    expect(formatBytes(1.25 * 1024 * 1024)).toBe("1.3 MB");
    expect(base64Bytes("AAAA")).toBe(3);
    expect(base64Bytes("AAA=")).toBe(2);
    expect(base64Bytes("AA==")).toBe(1);
    expect(imageType("IMAGE/JPG")).toBe("image/jpeg");
    expect(imageType("image/bmp")).toBeNull();
  });
});

describe("in the transcript and the queue", () => {
  const echoed = [
    { type: "image", mediaType: "image/png", name: "a.png", size: 3, data: "AAAA" },
    { type: "image", mediaType: "image/png", size: 9, omitted: true },
    { type: "text", name: "n.txt", size: 2, text: "hi" },
    { type: "image", mediaType: "image/bmp", data: "AAAA" },
    "junk",
  ];

  it("shows what the echo carried, and what a snapshot left out", () => {
    expect(parseShown(echoed)).toEqual([
      {
        type: "image",
        mediaType: "image/png",
        name: "a.png",
        size: 3,
        data: "AAAA",
        omitted: false,
      },
      { type: "image", mediaType: "image/png", size: 9, omitted: true },
      { type: "text", name: "n.txt", size: 2, text: "hi", omitted: false },
    ]);
    expect(parseShown("nope")).toEqual([]);
  });

  it("puts the echoed files on the user's message and keeps them on the outbox", () => {
    const files: OutgoingAttachment[] = [{ type: "text", name: "n.txt", text: "hi" }];
    let c = reduce(emptyConversation("w"), {
      type: "receive",
      message: {
        type: "messages_snapshot",
        workspaceId: "w",
        seq: 0,
        epoch: "e",
        status: "idle",
        messages: [],
        pending: [],
      },
    });
    c = reduce(c, {
      type: "queue",
      clientMessageId: "c1",
      text: "",
      attachments: files,
    });
    expect(c.outbox[0]?.attachments).toEqual(files);
    expect(shownOf(files)).toEqual([
      { type: "text", name: "n.txt", size: 2, text: "hi", omitted: false },
    ]);
    c = reduce(c, {
      type: "receive",
      message: {
        type: "user_message",
        workspaceId: "w",
        seq: 1,
        epoch: "e",
        clientMessageId: "c1",
        text: "",
        attachments: echoed,
      },
    });
    expect(c.outbox).toEqual([]);
    const [user] = c.items;
    expect(user?.kind === "user" && user.attachments?.length).toBe(3);
    c = reduce(c, { type: "queue", clientMessageId: "c2", text: "x" });
    c = reduce(c, { type: "discard", clientMessageId: "c2" });
    expect(c.outbox).toEqual([]);
  });

  it("keeps a held message's files in storage, and one of files alone", () => {
    const stored = JSON.stringify([
      { id: "h1", text: "", attachments: [{ type: "text", name: "n", text: "x" }] },
      { id: "h2", text: "", attachments: [{ type: "image", mediaType: "image/tiff", data: "A" }] },
      {
        id: "h3",
        text: "look",
        attachments: [{ type: "image", mediaType: "image/png", data: "AAAA", name: "a.png" }],
      },
    ]);
    expect(loadHeld({ getItem: () => stored }, "w")).toEqual([
      { id: "h1", text: "", attachments: [{ type: "text", name: "n", text: "x" }] },
      {
        id: "h3",
        text: "look",
        attachments: [{ type: "image", mediaType: "image/png", data: "AAAA", name: "a.png" }],
      },
    ]);
    expect(parseOutgoing([{ type: "text", text: "no name" }])).toEqual([]);
  });
});
