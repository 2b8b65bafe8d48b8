/**
 * Files for the composer: images (shrunk before sending) and small text
 * files, checked against the VM's limits (docs/protocol.md, "Attachments")
 * so that a refusal comes at once, with a reason, before anything is sent.
 *
 * The decisions (sizes, which encoding to keep, what is refused and why,
 * whether a message fits one frame) are pure and tested here; the browser's
 * canvas and file reading come in through `ImageCodec` and `FileLike`.
 */

import {
  IMAGE_MEDIA_TYPES,
  type ImageMediaType,
  isObject,
  num,
  type OutgoingAttachment,
  str,
} from "./protocol";

/** The long edge Claude's guidance recommends: larger images are scaled down anyway. */
export const MAX_IMAGE_EDGE = 1568;
/** relayd's default `--max-client-frame`: one message, files and all, in characters. */
export const MAX_FRAME_CHARS = 1024 * 1024;
/** Room in a frame for everything but the files and the words (type, ids, field names). */
export const FRAME_OVERHEAD = 1024;
/** JPEG and WebP quality of a re-encoded image; lower ones are tried when it is too large. */
export const QUALITIES = [0.85, 0.7, 0.5] as const;

export interface AttachmentLimits {
  maxAttachments: number;
  maxImageBytes: number;
  /** Pixels on an image's longest side the VM takes (images are shrunk to the smaller of this and `MAX_IMAGE_EDGE`). */
  maxImageEdge: number;
  maxTextAttachmentChars: number;
}

/** vmagent's defaults, for a VM that has not said (docs/operations.md). */
export const DEFAULT_LIMITS: AttachmentLimits = {
  maxAttachments: 8,
  maxImageBytes: 768 * 1024,
  maxImageEdge: 8000,
  maxTextAttachmentChars: 200_000,
};

/** The limits in a `session_models` result, the defaults for what it leaves out. */
export function parseLimits(result: unknown): AttachmentLimits {
  const a = isObject(result) && isObject(result.attachments) ? result.attachments : {};
  const pick = (v: unknown, d: number) => {
    const n = num(v);
    return n !== undefined && n >= 1 ? Math.floor(n) : d;
  };
  return {
    maxAttachments: pick(a.maxAttachments, DEFAULT_LIMITS.maxAttachments),
    maxImageBytes: pick(a.maxImageBytes, DEFAULT_LIMITS.maxImageBytes),
    maxImageEdge: pick(a.maxImageEdge, DEFAULT_LIMITS.maxImageEdge),
    maxTextAttachmentChars: pick(a.maxTextAttachmentChars, DEFAULT_LIMITS.maxTextAttachmentChars),
  };
}

/** "812 bytes", "240 KB", "1.2 MB". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${Math.round(n / 1024)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}

/** The size that fits `maxEdge` on the long side, proportions kept (never larger). */
export function fitSize(
  width: number,
  height: number,
  maxEdge: number = MAX_IMAGE_EDGE,
): { width: number; height: number } {
  const scale = Math.min(1, maxEdge / Math.max(width, height, 1));
  return {
    width: Math.max(1, Math.round(width * scale)),
    height: Math.max(1, Math.round(height * scale)),
  };
}

/** The protocol's name of a file's image type (`image/jpg` is JPEG), or null. */
export function imageType(type: string): ImageMediaType | null {
  const t = type.toLowerCase() === "image/jpg" ? "image/jpeg" : type.toLowerCase();
  return (IMAGE_MEDIA_TYPES as readonly string[]).includes(t) ? (t as ImageMediaType) : null;
}

/** Decoded bytes of standard padded base64 text. */
export function base64Bytes(data: string): number {
  const padding = data.endsWith("==") ? 2 : data.endsWith("=") ? 1 : 0;
  return Math.floor(data.length / 4) * 3 - padding;
}

/** One encoding of an image: its type and its bytes as a blob. */
export interface Encoded {
  mediaType: ImageMediaType;
  blob: Blob;
}

/**
 * What to send of an image: the smallest candidate, the original winning ties
 * (it is what the user chose, and re-encoding loses a little each time).
 */
export function pickSmallest(original: Encoded | null, encoded: Encoded[]): Encoded | null {
  let best = original;
  for (const e of encoded) if (!best || e.blob.size < best.blob.size) best = e;
  return best;
}

/** A file as the composer holds it before sending. */
export interface Draft {
  id: string;
  attachment: OutgoingAttachment;
  /** Decoded bytes (image) or characters (text file). */
  size: number;
  /** Pixels of an image as sent, and as it was when larger. */
  width?: number;
  height?: number;
  shrunkFrom?: { width: number; height: number };
}

/** A file the composer would not take, and why. */
export interface Refusal {
  name: string;
  reason: string;
}

/** What the browser does for us: decode and re-encode images, read files. */
export interface ImageCodec {
  /** The image's size in pixels; throws when the browser cannot read it. */
  measure(file: Blob): Promise<{ width: number; height: number }>;
  /** The image drawn at this size and encoded; null when the browser cannot encode that type. */
  encode(
    file: Blob,
    width: number,
    height: number,
    type: ImageMediaType,
    quality: number,
  ): Promise<Blob | null>;
  /** Standard padded base64 of the bytes. */
  base64(blob: Blob): Promise<string>;
  /** Done with this file: free what decoding it took (a phone's photo is ~50 MB decoded). */
  release?(file: Blob): void;
}

/** The part of a `File` this module reads. */
export interface FileLike extends Blob {
  readonly name: string;
}

const IMAGE_NAMES = "PNG, JPEG, GIF or WebP";

/**
 * An image ready to send, shrunk to `MAX_IMAGE_EDGE` and re-encoded when that is
 * smaller, or the reason it cannot go. A GIF that needs no shrinking stays as it
 * is (re-encoding would stop its animation). Other image types the browser reads
 * (BMP, AVIF…) are converted.
 */
export async function prepareImage(
  file: FileLike,
  limits: AttachmentLimits,
  codec: ImageCodec,
  id: string,
): Promise<Draft | Refusal> {
  try {
    return await prepareDecoded(file, limits, codec, id);
  } finally {
    codec.release?.(file);
  }
}

async function prepareDecoded(
  file: FileLike,
  limits: AttachmentLimits,
  codec: ImageCodec,
  id: string,
): Promise<Draft | Refusal> {
  const name = file.name || "image";
  let size: { width: number; height: number };
  try {
    size = await codec.measure(file);
  } catch {
    return { name, reason: `the browser cannot read this image; send a ${IMAGE_NAMES} file` };
  }
  const native = imageType(file.type);
  const target = fitSize(size.width, size.height, Math.min(MAX_IMAGE_EDGE, limits.maxImageEdge));
  const resized = target.width !== size.width || target.height !== size.height;
  const original: Encoded | null = native && !resized ? { mediaType: native, blob: file } : null;
  let chosen: Encoded | null = null;
  if (original && native === "image/gif" && file.size <= limits.maxImageBytes) {
    chosen = original; // re-encoding would stop its animation
  } else {
    for (const quality of QUALITIES) {
      // A lossless source may be smallest lossless (screenshots): try PNG once too.
      const types: ImageMediaType[] =
        quality === QUALITIES[0] && native !== "image/jpeg"
          ? ["image/png", "image/jpeg", "image/webp"]
          : ["image/jpeg", "image/webp"];
      const encoded: Encoded[] = chosen ? [chosen] : [];
      for (const type of types) {
        const blob = await codec.encode(file, target.width, target.height, type, quality);
        if (blob && blob.size > 0) encoded.push({ mediaType: type, blob });
      }
      chosen = pickSmallest(original, encoded);
      if (chosen && chosen.blob.size <= limits.maxImageBytes) break;
    }
  }
  if (!chosen) return { name, reason: "the browser could not encode this image" };
  if (chosen.blob.size > limits.maxImageBytes) {
    return {
      name,
      reason: `${formatBytes(chosen.blob.size)} even when shrunk; at most ${formatBytes(limits.maxImageBytes)} per image`,
    };
  }
  const data = await codec.base64(chosen.blob);
  return {
    id,
    attachment: { type: "image", mediaType: chosen.mediaType, data, name },
    size: chosen.blob.size,
    width: target.width,
    height: target.height,
    shrunkFrom: resized ? size : undefined,
  };
}

/** A text file as it is (UTF-8, no NUL), or the reason it cannot go. */
export function prepareText(
  name: string,
  bytes: Uint8Array,
  limits: AttachmentLimits,
  id: string,
): Draft | Refusal {
  const label = name || "file";
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { name: label, reason: `not an image (${IMAGE_NAMES}) nor a UTF-8 text file` };
  }
  if (text.includes("\u0000")) {
    return { name: label, reason: `not an image (${IMAGE_NAMES}) nor a text file` };
  }
  if (text.length > limits.maxTextAttachmentChars) {
    return {
      name: label,
      reason: `${text.length.toLocaleString("en")} characters; at most ${limits.maxTextAttachmentChars.toLocaleString("en")} per text file`,
    };
  }
  return {
    id,
    attachment: { type: "text", name: label, text },
    size: text.length,
  };
}

/** Whether a prepared file is a draft (not a refusal). */
export function isDraft(x: Draft | Refusal): x is Draft {
  return "attachment" in x;
}

/** Whether a file should be read as an image (by its type). */
export function looksLikeImage(file: Pick<Blob, "type">): boolean {
  return file.type.toLowerCase().startsWith("image/") && file.type !== "image/svg+xml";
}

/** Characters of the `user_message` frame these words and files make (an upper bound). */
export function frameChars(text: string, attachments: OutgoingAttachment[]): number {
  return JSON.stringify({ text, attachments }).length + FRAME_OVERHEAD;
}

/** Why these words and files cannot go as one message, or null when they can. */
export function sendProblem(
  text: string,
  attachments: OutgoingAttachment[],
  limits: AttachmentLimits,
): string | null {
  if (attachments.length > limits.maxAttachments) {
    return `${attachments.length} files; at most ${limits.maxAttachments} per message. Remove some, or send them in another message.`;
  }
  const chars = frameChars(text, attachments);
  if (attachments.length > 0 && chars > MAX_FRAME_CHARS) {
    return `Together these files are ${formatBytes(chars)} to send; one message carries at most ${formatBytes(MAX_FRAME_CHARS)}. Remove some, or send them in another message.`;
  }
  return null;
}

/** An attachment as the transcript shows it (from the VM's echo, or from this tab). */
export interface ShownAttachment {
  type: "image" | "text";
  name?: string;
  mediaType?: ImageMediaType;
  size?: number;
  /** The image's base64, or the file's text; absent when a snapshot left it out. */
  data?: string;
  text?: string;
  omitted: boolean;
}

/** The attachments of an echoed `user_message`, checked (anything malformed is left out). */
export function parseShown(v: unknown): ShownAttachment[] {
  if (!Array.isArray(v)) return [];
  const out: ShownAttachment[] = [];
  for (const a of v) {
    if (!isObject(a)) continue;
    const size = num(a.size);
    if (a.type === "image") {
      const mediaType = imageType(str(a.mediaType) ?? "");
      if (!mediaType) continue;
      out.push({
        type: "image",
        mediaType,
        name: str(a.name),
        size,
        data: str(a.data),
        omitted: a.omitted === true || str(a.data) === undefined,
      });
    } else if (a.type === "text") {
      out.push({
        type: "text",
        name: str(a.name),
        size,
        text: str(a.text),
        omitted: a.omitted === true || str(a.text) === undefined,
      });
    }
  }
  return out;
}

/** What this tab sends, as the transcript shows it before the echo comes. */
export function shownOf(attachments: OutgoingAttachment[]): ShownAttachment[] {
  return attachments.map((a) =>
    a.type === "image"
      ? {
          type: "image",
          mediaType: a.mediaType,
          name: a.name,
          size: base64Bytes(a.data),
          data: a.data,
          omitted: false,
        }
      : { type: "text", name: a.name, size: a.text.length, text: a.text, omitted: false },
  );
}

/** Outgoing attachments read back from storage; anything malformed is dropped. */
export function parseOutgoing(v: unknown): OutgoingAttachment[] {
  if (!Array.isArray(v)) return [];
  const out: OutgoingAttachment[] = [];
  for (const a of v) {
    if (!isObject(a)) continue;
    const name = str(a.name);
    if (a.type === "image") {
      const mediaType = imageType(str(a.mediaType) ?? "");
      const data = str(a.data);
      if (mediaType && data)
        out.push({ type: "image", mediaType, data, ...(name ? { name } : {}) });
    } else if (a.type === "text" && name) {
      const text = str(a.text);
      if (text !== undefined) out.push({ type: "text", name, text });
    }
  }
  return out;
}
