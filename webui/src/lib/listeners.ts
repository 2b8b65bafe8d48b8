/** Callbacks of one kind, for the relay connections' on…() methods. */
export class Listeners<A extends unknown[] = []> {
  private readonly callbacks = new Set<(...args: A) => void>();

  /** Add a callback; the function returned removes it again. */
  add(f: (...args: A) => void): () => void {
    this.callbacks.add(f);
    return () => {
      this.callbacks.delete(f);
    };
  }

  /** Call every callback, in the order they were added. */
  emit(...args: A): void {
    for (const f of this.callbacks) f(...args);
  }
}
