/** A request's state for a panel: loading, its result, or a readable error. */

import { useEffect, useRef, useState } from "react";
import type { Status } from "../../lib/protocol";
import { RequestError } from "../../lib/requests";

/** How long after the panel opens (or the workspace leaves `starting`) a `not_found`
 *  still means "not there yet": the VM may not have the workspace in the first seconds. */
export const PREPARING_GRACE_MS = 10_000;
/** How soon a `not_found` within that grace is asked again. */
export const PREPARING_RETRY_MS = 1_000;

export type Reply<T> =
  | { state: "idle" }
  | { state: "loading"; last?: T }
  | { state: "done"; value: T }
  | { state: "error"; message: string; code?: string; last?: T };

function lastOf<T>(r: Reply<T>): T | undefined {
  return r.state === "done" ? r.value : r.state === "idle" ? undefined : r.last;
}

/** Run `load` whenever `key` changes (null: nothing to load); the newest answer wins. */
export function useReply<T>(key: string | null, load: () => Promise<T>): Reply<T> {
  const [reply, setReply] = useState<Reply<T>>({ state: "idle" });
  const generation = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    const mine = ++generation.current;
    if (key === null) {
      setReply({ state: "idle" });
      return;
    }
    setReply((r) => ({ state: "loading", last: lastOf(r) }));
    loadRef.current().then(
      (value) => {
        if (generation.current === mine) setReply({ state: "done", value });
      },
      (e: unknown) => {
        if (generation.current !== mine) return;
        const message = e instanceof RequestError || e instanceof Error ? e.message : String(e);
        const code = e instanceof RequestError ? e.code : undefined;
        setReply((r) => ({ state: "error", message, code, last: lastOf(r) }));
      },
    );
  }, [key]);
  return reply;
}

export function latest<T>(r: Reply<T>): T | undefined {
  return lastOf(r);
}

/**
 * `useReply` for a question about a workspace's working tree, which is not
 * there while the workspace is `starting` (nothing is asked) nor, for a
 * moment, just after (a `not_found` within PREPARING_GRACE_MS is asked again
 * every PREPARING_RETRY_MS). `preparing` says to show "preparing", not the
 * reply.
 */
export function useTreeReply<T>(
  status: Status | undefined,
  key: string,
  load: () => Promise<T>,
): { reply: Reply<T>; preparing: boolean } {
  const starting = status === "starting";
  const since = useRef(Date.now());
  const [retry, setRetry] = useState(0);
  useEffect(() => {
    if (!starting) since.current = Date.now();
  }, [starting]);
  const reply = useReply(starting ? null : `${key}:${retry}`, load);
  const early =
    reply.state === "error" &&
    reply.code === "not_found" &&
    Date.now() - since.current < PREPARING_GRACE_MS;
  useEffect(() => {
    if (!early) return;
    const timer = setTimeout(() => setRetry((n) => n + 1), PREPARING_RETRY_MS);
    return () => clearTimeout(timer);
  }, [early]);
  return { reply, preparing: starting || early };
}
