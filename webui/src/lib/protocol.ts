/**
 * Types of the FF Cloud wire protocol, version 1, as the browser sees it
 * (docs/protocol.md). Everything received is untrusted JSON: the reducers
 * check fields before they use them, these types only describe the shapes.
 */

export const SUBPROTOCOL = "ffcloud.v1";
export const BEARER_PREFIX = "bearer.";
export const CLIENT_PATH = "/v1/client";
/** The first session of every workspace; a message without `sessionId` is about it. */
export const MAIN_SESSION = "main";

export type Status =
  | "starting"
  | "running"
  | "idle"
  | "waiting_for_input"
  | "error"
  | "stopped"
  | "offline"
  | "provisioning"
  | "deleted";

export type Resolution = "answered" | "allowed" | "denied" | "cancelled";

export interface QuestionOption {
  label: string;
  description?: string;
}

export interface Question {
  question: string;
  header?: string;
  options: QuestionOption[];
  multiSelect?: boolean;
}

/** A message as it comes off the socket: a JSON object with a `type`. */
export interface Incoming {
  type: string;
  workspaceId?: string;
  sessionId?: string;
  seq?: number;
  epoch?: string;
  [key: string]: unknown;
}

/** A file a `user_message` carries: an image (base64 `data`) or a small text file. */
export type OutgoingAttachment =
  | { type: "image"; mediaType: ImageMediaType; data: string; name?: string }
  | { type: "text"; name: string; text: string };

/** The image types Claude reads. */
export const IMAGE_MEDIA_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"] as const;
export type ImageMediaType = (typeof IMAGE_MEDIA_TYPES)[number];

/** Answers keyed by question text: one label, several labels, or free text. */
export type Answers = Record<string, string | string[]>;

export type Outgoing =
  | {
      type: "subscribe";
      workspaceId: string;
      sessionId?: string;
      lastSeq?: number;
      epoch?: string;
      statusOnly?: boolean;
    }
  | { type: "unsubscribe"; workspaceId: string; sessionId?: string }
  | {
      type: "user_message";
      workspaceId: string;
      sessionId?: string;
      clientMessageId: string;
      text: string;
      attachments?: OutgoingAttachment[];
    }
  | {
      type: "question_response";
      workspaceId: string;
      sessionId?: string;
      requestId: string;
      answers: Answers;
    }
  | {
      type: "permission_response";
      workspaceId: string;
      sessionId?: string;
      requestId: string;
      allow: boolean;
      message?: string;
    }
  | { type: "interrupt"; workspaceId: string; sessionId?: string }
  | {
      type: "request";
      workspaceId: string;
      sessionId?: string;
      requestId: string;
      op: string;
      args?: Record<string, unknown>;
    }
  | { type: "auth"; token: string }
  | { type: "terminal_input"; workspaceId: string; terminalId: string; data: string }
  | {
      type: "terminal_resize";
      workspaceId: string;
      terminalId: string;
      cols: number;
      rows: number;
    }
  | { type: "terminal_close"; workspaceId: string; terminalId: string };

/** Close codes of docs/protocol.md section 6 that the client acts on. */
export const CLOSE_TOKEN_EXPIRED = 4401;
export const CLOSE_CUT_OFF = 4403;
/** A followed workspace moved to another node: ask the API for its relayUrl. */
export const CLOSE_MOVED = 4307;

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

export function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}
