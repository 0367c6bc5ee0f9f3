// The injected clock: every timer in the server goes through one of these.

/**
 * Opaque timer handle returned by a `Clock`.
 *
 * @example
 * ```ts
 * import { ManualClock, type TimerHandle } from "@presently/presently";
 * const clock = new ManualClock();
 * const handle: TimerHandle = clock.setTimeout(() => console.log("fired"), 100);
 * clock.clearTimeout(handle);
 * clock.advance(100); // nothing fires
 * ```
 */
export type TimerHandle = unknown;

/**
 * Time source and timers, injectable so tests drive time by hand.
 *
 * @example
 * ```ts
 * import { type Clock, PresenceServer, systemClock } from "@presently/presently";
 * // A clock 5 s ahead, e.g. to test clock skew between instances.
 * const ahead: Clock = {
 *   now: () => systemClock.now() + 5_000,
 *   setTimeout: (fn, ms) => systemClock.setTimeout(fn, ms),
 *   clearTimeout: (handle) => systemClock.clearTimeout(handle),
 * };
 * const server = new PresenceServer({ clock: ahead });
 * await server.close();
 * ```
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Run `fn` after `ms` milliseconds. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancel a timer from `setTimeout`. */
  clearTimeout(handle: TimerHandle): void;
}

/**
 * The real clock: `Date.now` and the global timers.
 *
 * @example
 * ```ts
 * import { PresenceServer, systemClock } from "@presently/presently";
 * const server = new PresenceServer({ clock: systemClock }); // the default
 * const handle = systemClock.setTimeout(() => console.log("not printed"), 1_000);
 * systemClock.clearTimeout(handle);
 * console.log(systemClock.now() <= Date.now()); // true
 * await server.close();
 * ```
 */
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
   *
   * @example
   * ```ts
   * import { ManualClock } from "@presently/presently";
   * const clock = new ManualClock(Date.UTC(2025, 0, 1));
   * console.log(new Date(clock.now()).toISOString()); // "2025-01-01T00:00:00.000Z"
   * ```
   */
  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  /**
   * The current time.
   *
   * @returns Milliseconds since the epoch.
   *
   * @example
   * ```ts
   * import { ManualClock } from "@presently/presently";
   * const clock = new ManualClock(1_000);
   * clock.advance(500);
   * console.log(clock.now()); // 1500
   * ```
   */
  now(): number {
    return this.#now;
  }

  /**
   * Schedule `fn` at now + `ms`.
   *
   * @param fn The callback.
   * @param ms The delay in milliseconds.
   * @returns A handle for `clearTimeout`.
   *
   * @example
   * ```ts
   * import { ManualClock } from "@presently/presently";
   * const clock = new ManualClock();
   * clock.setTimeout(() => console.log("fired"), 100);
   * clock.advance(99); // nothing yet
   * clock.advance(1); // logs "fired"
   * ```
   */
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return id;
  }

  /**
   * Cancel a timer.
   *
   * @param handle A handle from `setTimeout`.
   *
   * @example
   * ```ts
   * import { ManualClock } from "@presently/presently";
   * const clock = new ManualClock();
   * const handle = clock.setTimeout(() => console.log("never"), 100);
   * clock.clearTimeout(handle);
   * console.log(clock.pending); // 0
   * ```
   */
  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete(handle as number);
  }

  /**
   * Number of pending timers.
   *
   * @returns How many timers have not fired or been cleared.
   *
   * @example
   * ```ts
   * import { ManualClock } from "@presently/presently";
   * const clock = new ManualClock();
   * clock.setTimeout(() => {}, 100);
   * console.log(clock.pending); // 1
   * clock.advance(100);
   * console.log(clock.pending); // 0
   * ```
   */
  get pending(): number {
    return this.#timers.size;
  }

  /**
   * Move time forward by `ms`, firing due timers in order (including timers
   * they schedule that fall inside the window).
   *
   * @param ms How far to move, in milliseconds.
   *
   * @example
   * ```ts
   * import { ManualClock } from "@presently/presently";
   * import { PresenceServer } from "@presently/presently";
   * const clock = new ManualClock();
   * const server = new PresenceServer({ clock });
   * clock.advance(30_000); // runs 30 s of heartbeats and sweeps at once
   * await server.close();
   * ```
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
