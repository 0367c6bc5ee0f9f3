// The listener lists every store shares (its event feed, its reset
// listeners): copy-on-write, so emitting needs no copy and (un)subscribing
// mid-emit is safe; a throwing listener never reaches the caller or the
// other listeners.

/** Listeners of one kind of notification, each called with a `T`. */
export class Listeners<T> {
  #list: Array<(value: T) => void> = [];
  readonly #report: (error: unknown, value: T) => void;

  /** @param report Receives a listener's throw (its own throws are swallowed). */
  constructor(report: (error: unknown, value: T) => void) {
    this.#report = report;
  }

  /** Add a listener; the same function added twice is two subscriptions. */
  add(listener: (value: T) => void): () => void {
    const slot = (value: T) => listener(value);
    this.#list = [...this.#list, slot];
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.#list = this.#list.filter((l) => l !== slot);
    };
  }

  /** Call every listener with `value`. */
  emit(value: T): void {
    const list = this.#list;
    for (let i = 0; i < list.length; i++) {
      try {
        list[i]!(value);
      } catch (error) {
        try {
          this.#report(error, value);
        } catch {
          // The error hook itself failed: nothing sensible left to do.
        }
      }
    }
  }

  /** Drop every listener. */
  clear(): void {
    this.#list = [];
  }
}
