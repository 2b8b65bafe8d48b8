/** A request's state for a panel: loading, its result, or a readable error. */

import { useEffect, useRef, useState } from "react";
import { RequestError } from "../../lib/requests";

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
