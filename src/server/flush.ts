// Flush scheduling: rooms whose views changed are marked dirty, and once per
// tick every dirty room encodes its pending events once and fans the frame
// out (`Room.flush`). Quiet: the flush runs as an immediate (a 0 ms timer
// waits 1-2 ms). Busy: a timer as long as the last flush took (capped), so
// flushing never takes more than about half the time and a large room gets
// fewer, fuller frames. An injected clock always gets its timer, so tests
// drive the flush by hand.
//
// With a batch interval W (`batchIntervalMs` > 0), a room sends at most one
// frame per W: an event in a room that sent a frame less than W ago waits
// until W has passed since it (one timer for all such rooms, at the
// earliest due), so every event that arrives meanwhile shares the frame. An
// event in a room quiet for W or more goes out at once, as without W.

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
  /** A room sends at most one frame per this many ms (0: no batch interval). */
  readonly batchIntervalMs: number;
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
  /** Rooms waiting out the batch interval since their last frame. */
  readonly #held = new Set<Room>();
  #heldTimer: TimerHandle | null = null;
  /** When `#heldTimer` fires. */
  #heldAt = Infinity;

  constructor(host: FlushHost) {
    this.#host = host;
    this.#useImmediate = host.clock === systemClock &&
      typeof IMMEDIATE.setImmediate === "function";
  }

  /** The room has pending events: flush it in this tick's batch. */
  schedule(room: Room): void {
    const clock = this.#host.clock;
    const window = this.#host.batchIntervalMs;
    if (window > 0 && !this.#dirty.has(room)) {
      const due = room.flushedAt + window;
      if (due > clock.now()) return this.#hold(room, due);
    }
    this.#dirty.add(room);
    if (this.#timer !== null || this.#host.closed()) return;
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
    room.flushedAt = this.#host.clock.now();
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
    this.#held.delete(room);
  }

  /** Cancel the pending flushes (the server closes). */
  stop(): void {
    if (this.#heldTimer !== null) this.#host.clock.clearTimeout(this.#heldTimer);
    this.#heldTimer = null;
    this.#held.clear();
    if (this.#timer === null) return;
    if (this.#immediate) IMMEDIATE.clearImmediate?.(this.#timer);
    else this.#host.clock.clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** The room sent a frame less than the batch interval ago: flush it at `due`. */
  #hold(room: Room, due: number): void {
    this.#held.add(room);
    if (due < this.#heldAt) this.#releaseAt(due);
  }

  /** (Re)arm the one timer of the held rooms for `at`. */
  #releaseAt(at: number): void {
    if (this.#host.closed()) return;
    const clock = this.#host.clock;
    if (this.#heldTimer !== null) clock.clearTimeout(this.#heldTimer);
    this.#heldAt = at;
    this.#heldTimer = clock.setTimeout(() => this.#release(), at - clock.now());
  }

  /** Flush the held rooms whose interval has passed; wait for the rest. */
  #release(): void {
    this.#heldTimer = null;
    this.#heldAt = Infinity;
    const now = this.#host.clock.now();
    const window = this.#host.batchIntervalMs;
    let next = Infinity;
    for (const room of this.#held) {
      const due = room.flushedAt + window;
      if (due > now) {
        next = Math.min(next, due);
        continue;
      }
      this.#held.delete(room);
      this.flushRoom(room);
    }
    if (next < Infinity) this.#releaseAt(next);
  }
}
