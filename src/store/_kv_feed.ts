// The Deno KV store's event feed: each watched room's log is read from the
// last seq delivered whenever the room's sequence key moves, noticed through
// `kv.watch` (where it crosses instances) and by polling (where it does not:
// processes on one local file). Watch and polling share one catch-up per
// room, so no log range is read twice; every event goes out once, in seq
// order. Used by deno_kv.ts, which owns the keys and the writes.

import type { KvLike, KvLikeEntryMaybe, KvLikeKey } from "./deno_kv.ts";
import { pool, sleep } from "./_async.ts";
import type { PresenceEvent } from "./types.ts";

/** What the feed needs from its store. */
export interface KvFeedHost {
  closed(): boolean;
  /** The key of a room's sequence number. */
  seqKey(room: string): KvLikeKey;
  /** The key of a room's log entry `seq`. */
  logKey(room: string, seq: number): KvLikeKey;
  /** Hand one event to the store's listeners. */
  deliver(event: PresenceEvent): void;
  report(error: unknown): void;
}

/** KV reads in flight at once, per polling round (shared with the store). */
export const PARALLEL = 8;
const WATCH_RESTART_MS = 1_000;

/** The seq stored in a sequence key's entry (0 when absent). */
export function seqOf(entry: KvLikeEntryMaybe | undefined): number {
  const v = entry?.value;
  return typeof v === "number" ? v : 0;
}

interface RoomWatch {
  room: string;
  seqKey: KvLikeKey;
  refs: number;
  /** Last seq delivered (or seen when the watch started); -1 until known. */
  last: number;
  ready: Promise<void>;
  stopped: boolean;
  reader: ReadableStreamDefaultReader<readonly KvLikeEntryMaybe[]> | null;
  loop: Promise<void> | null;
  /** The highest seq a watch or a poll saw: what the catch-up under way reads up to. */
  want: number;
  /** The catch-up under way: watch and polling share it, so no range is read twice. */
  catching: Promise<void> | null;
}

/** Ordered, once-only delivery of the rooms a KV store handle watches. */
export class KvFeed {
  readonly #kv: KvLike;
  readonly #host: KvFeedHost;
  readonly #pollMs: number;
  readonly #useWatch: boolean;
  readonly #watches = new Map<string, RoomWatch>();
  #pollTimer: ReturnType<typeof setTimeout> | null = null;
  #polling: Promise<void> | null = null;

  constructor(kv: KvLike, host: KvFeedHost, pollMs: number, useWatch: boolean) {
    this.#kv = kv;
    this.#host = host;
    this.#pollMs = pollMs;
    this.#useWatch = useWatch;
  }

  /** Stop polling and watching; resolves once nothing is in flight. */
  async close(): Promise<void> {
    if (this.#pollTimer !== null) clearTimeout(this.#pollTimer);
    this.#pollTimer = null;
    const pending: Promise<unknown>[] = [];
    if (this.#polling) pending.push(this.#polling);
    for (const w of this.#watches.values()) {
      this.#stopWatch(w);
      pending.push(w.ready);
      if (w.loop) pending.push(w.loop);
    }
    await Promise.allSettled(pending);
    this.#watches.clear();
  }

  /**
   * Receive other handles' events in `room` (reference counted; the
   * returned function drops this interest): from a baseline read now, every
   * later event of the room's log, through `kv.watch` and polling.
   */
  watch(room: string): () => void {
    let w = this.#watches.get(room);
    if (w === undefined) w = this.#startWatch(room);
    w.refs++;
    const watch = w;
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      if (--watch.refs > 0 || this.#watches.get(room) !== watch) return;
      this.#watches.delete(room);
      this.#stopWatch(watch);
    };
  }

  #startWatch(room: string): RoomWatch {
    const seqKey = this.#host.seqKey(room);
    const w: RoomWatch = {
      room,
      seqKey,
      refs: 0,
      last: -1,
      ready: Promise.resolve(),
      stopped: false,
      reader: null,
      loop: null,
      want: -1,
      catching: null,
    };
    // The baseline: events after the room's seq now are delivered.
    w.ready = this.#kv.get(seqKey).then((e) => {
      if (w.last < 0) w.last = seqOf(e);
    }, (error) => this.#host.report(error));
    this.#watches.set(room, w);
    if (this.#useWatch) this.#runWatch(w);
    this.#schedulePoll();
    return w;
  }

  #runWatch(w: RoomWatch): void {
    const reader = this.#kv.watch!([w.seqKey]).getReader();
    w.reader = reader;
    w.loop = (async () => {
      try {
        await w.ready;
        for (;;) {
          const { done, value } = await reader.read();
          if (w.stopped) return;
          if (done) break;
          const seq = seqOf(value[0]);
          if (w.last >= 0 && seq > w.last) await this.#catchUp(w, seq);
        }
      } catch (error) {
        if (w.stopped || this.#host.closed()) return;
        this.#host.report(error);
        reader.cancel().catch(() => {});
      }
      // The stream failed or ended (e.g. a dropped KV Connect link): polling
      // keeps delivering meanwhile; watch again later.
      await sleep(WATCH_RESTART_MS);
      if (!w.stopped && !this.#host.closed()) this.#runWatch(w);
    })();
  }

  #stopWatch(w: RoomWatch): void {
    w.stopped = true;
    w.reader?.cancel().catch(() => {});
  }

  #schedulePoll(): void {
    if (
      this.#pollTimer !== null || this.#polling !== null || this.#host.closed() ||
      this.#pollMs <= 0 || this.#watches.size === 0
    ) return;
    this.#pollTimer = setTimeout(() => {
      this.#pollTimer = null;
      this.#polling = this.#poll().finally(() => {
        this.#polling = null;
        this.#schedulePoll();
      });
    }, this.#pollMs);
  }

  async #poll(): Promise<void> {
    const watches = [...this.#watches.values()].filter((w) => w.last >= 0);
    const chunks: RoomWatch[][] = [];
    for (let i = 0; i < watches.length; i += 10) {
      chunks.push(watches.slice(i, i + 10));
    }
    await pool(chunks, PARALLEL, async (chunk) => {
      if (this.#host.closed()) return;
      try {
        const entries = await this.#kv.getMany(chunk.map((w) => w.seqKey));
        await Promise.all(chunk.map((w, i) => {
          const seq = seqOf(entries[i]);
          return seq > w.last && !w.stopped ? this.#catchUp(w, seq) : undefined;
        }));
      } catch (error) {
        if (!this.#host.closed()) this.#host.report(error);
      }
    });
  }

  /**
   * Deliver the logged events after `w.last` up to `target`. One catch-up
   * runs per room at a time: a watch and the poll that both saw the seq move
   * join it (reading on to the higher target) instead of reading the same
   * log range twice.
   */
  #catchUp(w: RoomWatch, target: number): Promise<void> {
    w.want = Math.max(w.want, target);
    if (w.catching !== null) return w.catching;
    w.catching = (async () => {
      try {
        while (!w.stopped && w.want > w.last) {
          const to = w.want;
          const events: PresenceEvent[] = [];
          for await (
            const e of this.#kv.list({
              start: this.#host.logKey(w.room, w.last + 1),
              end: this.#host.logKey(w.room, to + 1),
            })
          ) {
            events.push(JSON.parse(e.value as string) as PresenceEvent);
          }
          // Entries past the log's TTL are gone: the gap tells the server to reload.
          this.#deliver(w, events);
          if (w.last < to) return; // the rest of the range is gone (or not written yet)
        }
      } finally {
        w.catching = null;
      }
    })();
    return w.catching;
  }

  /** Deliver this handle's own events before its mutation resolves. */
  async publish(room: string, events: PresenceEvent[]): Promise<void> {
    const w = this.#watches.get(room);
    if (w === undefined) {
      for (const event of events) this.#host.deliver(event);
      return;
    }
    await w.ready;
    const first = events[0]!.seq;
    if (w.last >= 0 && first > w.last + 1) {
      try {
        await this.#catchUp(w, first - 1);
      } catch (error) {
        this.#host.report(error);
      }
    }
    this.#deliver(w, events);
  }

  #deliver(w: RoomWatch, events: readonly PresenceEvent[]): void {
    for (const event of events) {
      if (event.seq <= w.last) continue;
      w.last = event.seq;
      this.#host.deliver(event);
    }
  }
}
