/** This tab's sessionStorage, or undefined where there is none (no window, or storage refused). */
export function tabStorage(): Storage | undefined {
  try {
    return typeof window === "undefined" ? undefined : window.sessionStorage;
  } catch {
    return undefined;
  }
}
