// The injected clock: every timer in the server goes through one of these.

/** Opaque timer handle returned by a `Clock`. */
export type TimerHandle = unknown;

/** Time source and timers, injectable so tests drive time by hand. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Run `fn` after `ms` milliseconds. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancel a timer from `setTimeout`. */
  clearTimeout(handle: TimerHandle): void;
}

/** The real clock: `Date.now` and the global timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as number),
};

/**
 * A clock that only moves when told to, for tests.
 *
 * @example
 * ```ts
 * import { ManualClock } from "@presently/presently";
 * const clock = new ManualClock();
 * let fired = false;
 * clock.setTimeout(() => (fired = true), 100);
 * clock.advance(100);
 * console.log(fired); // true
 * ```
 */
export class ManualClock implements Clock {
  #now: number;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;

  /**
   * Create a clock.
   *
   * @param start The initial time in ms since the epoch.
   */
  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  /** The current time. */
  now(): number {
    return this.#now;
  }

  /** Schedule `fn` at now + `ms`. */
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return id;
  }

  /** Cancel a timer. */
  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete(handle as number);
  }

  /** Number of pending timers. */
  get pending(): number {
    return this.#timers.size;
  }

  /**
   * Move time forward by `ms`, firing due timers in order (including timers
   * they schedule that fall inside the window).
   */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let nextId = -1;
      let nextAt = Infinity;
      for (const [id, t] of this.#timers) {
        if (t.at <= end && t.at < nextAt) {
          nextAt = t.at;
          nextId = id;
        }
      }
      if (nextId < 0) break;
      const timer = this.#timers.get(nextId)!;
      this.#timers.delete(nextId);
      this.#now = Math.max(this.#now, timer.at);
      timer.fn();
    }
    this.#now = end;
  }
}
