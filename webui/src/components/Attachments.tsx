/**
 * Files in the composer (pick, paste, drop; previews with a remove button;
 * refusals with their reason) and in the transcript (thumbnails that open
 * larger, text files that unfold).
 */

import { useCallback, useEffect, useId, useRef, useState } from "react";
import {
  type AttachmentLimits,
  DEFAULT_LIMITS,
  type Draft,
  formatBytes,
  type ImageCodec,
  isDraft,
  looksLikeImage,
  parseLimits,
  prepareImage,
  prepareText,
  type Refusal,
  type ShownAttachment,
  sendProblem,
} from "../lib/attachments";
import { browserCodec } from "../lib/imageCodec";
import type { OutgoingAttachment } from "../lib/protocol";
import type { Requester } from "../lib/requests";

/** What the file picker offers: images, and text files by type or name. */
export const ACCEPT =
  "image/*,text/*,.md,.markdown,.txt,.json,.jsonl,.csv,.tsv,.log,.yaml,.yml,.toml,.ini,.xml," +
  ".html,.css,.py,.ts,.tsx,.js,.jsx,.mjs,.go,.rs,.java,.kt,.c,.h,.cc,.cpp,.hpp,.rb,.php,.sh," +
  ".sql,.diff,.patch,.env.example";

/** The VM's attachment limits (its `session_models` answer), the defaults until it says. */
export function useAttachmentLimits(
  target: string | undefined,
  requester: Pick<Requester, "request"> | undefined,
): AttachmentLimits {
  const [limits, setLimits] = useState<AttachmentLimits>(DEFAULT_LIMITS);
  useEffect(() => {
    if (!target || !requester) return;
    let live = true;
    requester.request(target, "session_models").then(
      (r) => live && setLimits(parseLimits(r)),
      () => undefined, // an offline VM: the documented defaults stand
    );
    return () => {
      live = false;
    };
  }, [target, requester]);
  return limits;
}

export interface AttachmentsState {
  drafts: Draft[];
  refusals: Refusal[];
  /** Files still being read or shrunk. */
  busy: number;
  add: (files: File[]) => void;
  remove: (id: string) => void;
  dismiss: () => void;
  clear: () => void;
  outgoing: () => OutgoingAttachment[];
}

let counter = 0;
const draftId = () => {
  counter += 1;
  return `a${counter}`;
};
/** Drafts in the order their files were given, whichever was ready first. */
const inOrder = (a: Draft, b: Draft) => Number(a.id.slice(1)) - Number(b.id.slice(1));

/** The files of the message being written. */
export function useAttachments(
  limits: AttachmentLimits,
  codec: ImageCodec | null = null,
  /** Files already attached (a draft kept from before). */
  initial: readonly Draft[] = [],
): AttachmentsState {
  const [drafts, setDrafts] = useState<Draft[]>(() => [...initial]);
  const [refusals, setRefusals] = useState<Refusal[]>([]);
  const [busy, setBusy] = useState(0);
  // Files taken or being prepared: the count limit applies before they are ready.
  const taken = useRef(initial.length);
  const codecRef = useRef<ImageCodec | null>(codec);
  const queue = useRef<Promise<void>>(Promise.resolve());

  const add = useCallback(
    (files: File[]) => {
      if (files.length === 0) return;
      setRefusals([]);
      for (const file of files) {
        if (taken.current >= limits.maxAttachments) {
          setRefusals((r) => [
            ...r,
            {
              name: file.name || "file",
              reason: `at most ${limits.maxAttachments} files per message`,
            },
          ]);
          continue;
        }
        taken.current += 1;
        setBusy((n) => n + 1);
        const id = draftId();
        // One file at a time: decoding several large photos at once can exhaust a phone.
        queue.current = queue.current
          .then(() =>
            prepare(file, limits, id, () => {
              codecRef.current ??= browserCodec();
              return codecRef.current;
            }),
          )
          .then((r) => {
            setBusy((n) => n - 1);
            if (isDraft(r)) setDrafts((d) => [...d, r].sort(inOrder));
            else {
              taken.current -= 1;
              setRefusals((x) => [...x, r]);
            }
          });
      }
    },
    [limits],
  );
  const remove = useCallback((id: string) => {
    taken.current -= 1; // only ever called for a draft on show
    setDrafts((d) => d.filter((x) => x.id !== id));
  }, []);
  const clear = useCallback(() => {
    setDrafts([]);
    setRefusals([]);
    taken.current = 0;
  }, []);
  return {
    drafts,
    refusals,
    busy,
    add,
    remove,
    clear,
    dismiss: () => setRefusals([]),
    outgoing: () => drafts.map((d) => d.attachment),
  };
}

async function prepare(
  file: File,
  limits: AttachmentLimits,
  id: string,
  codec: () => ImageCodec,
): Promise<Draft | Refusal> {
  const name = file.name || "file";
  try {
    if (looksLikeImage(file)) return await prepareImage(file, limits, codec(), id);
    // UTF-8 takes at most 4 bytes a character: anything larger is too long unread.
    if (file.size > limits.maxTextAttachmentChars * 4) {
      return {
        name,
        reason: `${formatBytes(file.size)}; a text file may have at most ${limits.maxTextAttachmentChars.toLocaleString("en")} characters`,
      };
    }
    return prepareText(name, new Uint8Array(await file.arrayBuffer()), limits, id);
  } catch {
    return { name, reason: "the browser could not read this file" };
  }
}

/** Files from a paste (a screenshot, copied files). */
export function pastedFiles(data: DataTransfer | null): File[] {
  return data ? Array.from(data.files) : [];
}

/** The paperclip: a button that opens the file picker (keyboard: Enter or Space). */
export function AttachButton({ files, disabled }: { files: AttachmentsState; disabled: boolean }) {
  const input = useRef<HTMLInputElement>(null);
  const id = useId();
  return (
    <>
      <input
        ref={input}
        id={id}
        type="file"
        multiple
        accept={ACCEPT}
        className="sr-only"
        tabIndex={-1}
        aria-hidden="true"
        data-testid="attach-input"
        onChange={(e) => {
          files.add(Array.from(e.target.files ?? []));
          e.target.value = ""; // the same file may be picked again
        }}
      />
      <button
        type="button"
        className="attach"
        disabled={disabled}
        aria-label="Attach images or text files"
        title="Attach images or text files (or paste, or drop them here)"
        onClick={() => input.current?.click()}
      >
        <svg
          aria-hidden="true"
          width="18"
          height="18"
          viewBox="0 0 24 24"
          fill="none"
          stroke="currentColor"
          strokeWidth="2"
          strokeLinecap="round"
          strokeLinejoin="round"
        >
          <path d="M21 11.5l-8.6 8.6a5.5 5.5 0 0 1-7.8-7.8l8.6-8.6a3.7 3.7 0 0 1 5.2 5.2l-8.6 8.6a1.8 1.8 0 0 1-2.6-2.6l7.9-7.9" />
        </svg>
      </button>
    </>
  );
}

function dataUrl(mediaType: string, data: string): string {
  return `data:${mediaType};base64,${data}`;
}

function draftLabel(d: Draft): string {
  const a = d.attachment;
  if (a.type === "text") return `${d.size.toLocaleString("en")} characters`;
  const px = d.width && d.height ? ` · ${d.width}×${d.height}` : "";
  const from = d.shrunkFrom ? ` (from ${d.shrunkFrom.width}×${d.shrunkFrom.height})` : "";
  return `${formatBytes(d.size)}${px}${from}`;
}

/** The files about to be sent, and the ones refused (with why). */
export function AttachmentTray({ files }: { files: AttachmentsState }) {
  if (files.drafts.length === 0 && files.refusals.length === 0 && files.busy === 0) return null;
  return (
    <div className="attach-tray">
      {files.drafts.length > 0 && (
        <ul aria-label="Files to send" data-testid="attach-previews">
          {files.drafts.map((d) => {
            const a = d.attachment;
            const name = a.name ?? "image";
            return (
              <li key={d.id} className="attach-item" data-testid="attach-preview">
                {a.type === "image" ? (
                  <img className="attach-thumb" src={dataUrl(a.mediaType, a.data)} alt="" />
                ) : (
                  <span className="attach-thumb attach-file" aria-hidden="true">
                    TXT
                  </span>
                )}
                <span className="attach-text">
                  <span className="attach-name" title={name}>
                    {name}
                  </span>
                  <span className="muted small">{draftLabel(d)}</span>
                </span>
                <button
                  type="button"
                  className="attach-remove"
                  aria-label={`Remove ${name}`}
                  title={`Remove ${name}`}
                  onClick={() => files.remove(d.id)}
                >
                  ×
                </button>
              </li>
            );
          })}
        </ul>
      )}
      {files.busy > 0 && (
        <p className="muted small" role="status">
          Preparing {files.busy === 1 ? "a file" : `${files.busy} files`}…
        </p>
      )}
      {files.refusals.length > 0 && (
        <div className="attach-refused" role="alert" data-testid="attach-refused">
          <ul>
            {files.refusals.map((r, i) => (
              // biome-ignore lint/suspicious/noArrayIndexKey: the same name may be refused twice.
              <li key={i}>
                Not attached: <strong>{r.name}</strong>: {r.reason}
              </li>
            ))}
          </ul>
          <button type="button" className="link" onClick={files.dismiss}>
            Dismiss
          </button>
        </div>
      )}
    </div>
  );
}

/** What a message in the transcript carried. */
export function MessageAttachments({ items }: { items: ShownAttachment[] }) {
  const [open, setOpen] = useState<number | null>(null);
  if (items.length === 0) return null;
  return (
    <ul className="msg-attachments" aria-label="Attached files">
      {items.map((a, i) => {
        const name = a.name ?? (a.type === "image" ? `image ${i + 1}` : "file");
        const size = a.size !== undefined ? formatBytes(a.size) : "";
        if (a.type === "text") {
          return (
            // biome-ignore lint/suspicious/noArrayIndexKey: attachments never move.
            <li key={i} className="msg-attachment">
              {a.omitted || a.text === undefined ? (
                <span className="muted small">
                  {name} · {a.size?.toLocaleString("en")} characters (not kept in this view)
                </span>
              ) : (
                <details>
                  <summary>
                    {name} · {a.text.length.toLocaleString("en")} characters
                  </summary>
                  <pre className="attachment-text">{a.text}</pre>
                </details>
              )}
            </li>
          );
        }
        if (a.omitted || !a.data || !a.mediaType) {
          return (
            // biome-ignore lint/suspicious/noArrayIndexKey: attachments never move.
            <li key={i} className="msg-attachment">
              <span className="attach-thumb attach-file muted small">
                {name} · {size} (not kept in this view)
              </span>
            </li>
          );
        }
        const big = open === i;
        return (
          // biome-ignore lint/suspicious/noArrayIndexKey: attachments never move.
          <li key={i} className={`msg-attachment${big ? " open" : ""}`}>
            <button
              type="button"
              className="msg-image"
              aria-expanded={big}
              aria-label={`${big ? "Shrink" : "Enlarge"} ${name} (${size})`}
              title={`${name} · ${size}`}
              onClick={() => setOpen(big ? null : i)}
            >
              <img src={dataUrl(a.mediaType, a.data)} alt={name} data-testid="message-image" />
            </button>
          </li>
        );
      })}
    </ul>
  );
}

export interface ComposerFiles {
  files: AttachmentsState;
  /** Why the message cannot go as it is (too many files, too large together). */
  problem: string | null;
  /** Files are being dragged over the composer. */
  dragging: boolean;
  /** The files to send with `text`, or null when they cannot go (`problem` says why). */
  take: (text: string) => OutgoingAttachment[] | null;
  clear: () => void;
  onPaste: (e: React.ClipboardEvent) => void;
  dropProps: {
    onDragOver: (e: React.DragEvent) => void;
    onDragLeave: (e: React.DragEvent) => void;
    onDrop: (e: React.DragEvent) => void;
  };
}

const carriesFiles = (e: React.DragEvent) => Array.from(e.dataTransfer.types).includes("Files");

/** The composer's files: picked, pasted or dropped, checked before sending. */
export function useComposerFiles(
  limits: AttachmentLimits,
  initial: readonly Draft[] = [],
): ComposerFiles {
  const files = useAttachments(limits, null, initial);
  const [problem, setProblem] = useState<string | null>(null);
  const [dragging, setDragging] = useState(false);
  return {
    files,
    problem,
    dragging,
    take: (text) => {
      const attachments = files.outgoing();
      const p = sendProblem(text, attachments, limits);
      setProblem(p);
      return p ? null : attachments;
    },
    clear: () => {
      files.clear();
      setProblem(null);
    },
    onPaste: (e) => {
      const pasted = pastedFiles(e.clipboardData);
      if (pasted.length === 0) return;
      // A screenshot has no text: nothing else to paste. Copied text with a picture keeps both.
      if (!e.clipboardData.types.includes("text/plain")) e.preventDefault();
      setProblem(null);
      files.add(pasted);
    },
    dropProps: {
      onDragOver: (e) => {
        if (!carriesFiles(e)) return;
        e.preventDefault();
        e.dataTransfer.dropEffect = "copy";
        setDragging(true);
      },
      onDragLeave: () => setDragging(false),
      onDrop: (e) => {
        setDragging(false);
        if (!carriesFiles(e)) return;
        e.preventDefault();
        setProblem(null);
        files.add(Array.from(e.dataTransfer.files));
      },
    },
  };
}

/** The previews, refusals and problems above the composer's text box. */
export function ComposerFilesView({ cf }: { cf: ComposerFiles }) {
  return (
    <>
      <AttachmentTray files={cf.files} />
      {cf.problem && (
        <p className="attach-problem" role="alert">
          {cf.problem}
        </p>
      )}
    </>
  );
}
