// Flush scheduling: rooms whose views changed are marked dirty, and once per
// tick every dirty room encodes its pending events once and fans the frame
// out (`Room.flush`). Quiet: the flush runs as an immediate (a 0 ms timer
// waits 1-2 ms). Busy: a timer as long as the last flush took (capped), so
// flushing never takes more than about half the time and a large room gets
// fewer, fuller frames. An injected clock always gets its timer, so tests
// drive the flush by hand.

import { type Clock, systemClock, type TimerHandle } from "../clock.ts";
import type { FanoutContext, Room } from "./room.ts";

interface ImmediateLike {
  setImmediate?: (fn: () => void) => TimerHandle;
  clearImmediate?: (handle: TimerHandle) => void;
}
/** `setImmediate` (Deno, Bun, Node): runs after this tick's I/O, without a timer's 1 ms floor. */
const IMMEDIATE = globalThis as ImmediateLike;
/** A flush this recent means load: batch over a 0 ms timer instead of an immediate. */
const BUSY_FLUSH_MS = 20;
/** Longest a busy flush waits (ms). */
const MAX_FLUSH_DELAY_MS = 10;

/** What the scheduler needs from the server. */
export interface FlushHost {
  readonly clock: Clock;
  readonly fanout: FanoutContext;
  /** The server is closed: schedule nothing. */
  closed(): boolean;
  /** A frame went out (a counter). */
  sent(): void;
  /** Fan-out threw. */
  failed(error: unknown): void;
  /** The room was flushed: drop its view if nobody needs it any more. */
  flushed(room: Room): void;
}

/** Batches the rooms' pending events into one frame per room per tick. */
export class FlushScheduler {
  readonly #host: FlushHost;
  readonly #dirty = new Set<Room>();
  readonly #useImmediate: boolean;
  #timer: TimerHandle | null = null;
  #immediate = false;
  #last = -Infinity;
  /** How long the last flush took (ms, capped): the next busy flush waits that long. */
  #cost = 0;

  constructor(host: FlushHost) {
    this.#host = host;
    this.#useImmediate = host.clock === systemClock &&
      typeof IMMEDIATE.setImmediate === "function";
  }

  /** The room has pending events: flush it in this tick's batch. */
  schedule(room: Room): void {
    this.#dirty.add(room);
    if (this.#timer !== null || this.#host.closed()) return;
    const clock = this.#host.clock;
    const quiet = clock.now() - this.#last >= BUSY_FLUSH_MS;
    this.#immediate = this.#useImmediate && quiet;
    this.#timer = this.#immediate
      ? IMMEDIATE.setImmediate!(() => this.flush())
      : clock.setTimeout(() => this.flush(), quiet ? 0 : this.#cost);
  }

  /** Flush every dirty room now. */
  flush(): void {
    this.#timer = null;
    const clock = this.#host.clock;
    const start = clock.now();
    for (const room of this.#dirty) this.flushRoom(room);
    this.#dirty.clear();
    this.#last = clock.now();
    this.#cost = Math.min(MAX_FLUSH_DELAY_MS, this.#last - start);
  }

  /** Flush one room now (before a snapshot or a reload, so nothing is sent twice). */
  flushRoom(room: Room): void {
    if (room.pending.length === 0) return;
    try {
      room.flush(this.#host.fanout);
      this.#host.sent();
    } catch (e) {
      this.#host.failed(e);
    }
    this.#host.flushed(room);
  }

  /** The room's view is gone: nothing of it is flushed any more. */
  forget(room: Room): void {
    this.#dirty.delete(room);
  }

  /** Cancel the pending flush (the server closes). */
  stop(): void {
    if (this.#timer === null) return;
    if (this.#immediate) IMMEDIATE.clearImmediate?.(this.#timer);
    else this.#host.clock.clearTimeout(this.#timer);
    this.#timer = null;
  }
}
