// The event-feed listener list every store shares: copy-on-write, so emitting
// needs no copy and (un)subscribing mid-emit is safe; a throwing listener
// never reaches the mutation or the other listeners.

import type { PresenceEvent, StoreListener } from "./types.ts";

/** Listeners of a store's event feed. */
export class Listeners {
  #list: StoreListener[] = [];
  readonly #report: (error: unknown, event: PresenceEvent) => void;

  /** @param report Receives a listener's throw (its own throws are swallowed). */
  constructor(report: (error: unknown, event: PresenceEvent) => void) {
    this.#report = report;
  }

  /** Add a listener; the same function added twice is two subscriptions. */
  add(listener: StoreListener): () => void {
    const slot: StoreListener = (event) => listener(event);
    this.#list = [...this.#list, slot];
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.#list = this.#list.filter((l) => l !== slot);
    };
  }

  /** Deliver one event to every listener. */
  emit(event: PresenceEvent): void {
    const list = this.#list;
    for (let i = 0; i < list.length; i++) {
      try {
        list[i]!(event);
      } catch (error) {
        try {
          this.#report(error, event);
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
