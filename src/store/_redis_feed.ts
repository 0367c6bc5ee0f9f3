// The Redis store's event feed: other handles' events arrive over pub/sub
// for the rooms this handle watches; a message missed (a reconnect, a
// subscription still being set up, a moved slot) is caught up from the
// room's log; and every room's events go out in seq order, each once,
// whichever way they came (the handle's own write, its pub/sub echo, the
// log). Used by redis.ts, which owns the connection and the scripts.

import type { Received } from "./_redis_probe.ts";
import type { PresenceEvent } from "./types.ts";

/** What the feed needs from its store. */
export interface FeedHost {
  /** The store is closed: stop. */
  closed(): boolean;
  /** The pub/sub channel of a room. */
  channel(room: string): string;
  subscribe(channel: string): Promise<void>;
  unsubscribe(channel: string): Promise<void>;
  /**
   * Run the room's catch-up script with `[since, ageMs]`: answers the room's
   * seq then the logged events after `since` (with `since < 0`: those
   * logged in the last `ageMs`).
   */
  catchUp(room: string, args: string[]): Promise<string[]>;
  /** Hand one event to the store's listeners. */
  deliver(event: PresenceEvent): void;
  /** The room's data may be gone: the store's reset listeners should run. */
  reset(): void;
  report(error: unknown): void;
}

interface Watch {
  refs: number;
  /** Last seq delivered for the room, -1 when unknown. */
  lastSeq: number;
  /** When the watch began (wall ms), until its first catch-up is done. */
  startedAt: number | null;
  /** Settles when that first catch-up is done (or failed). */
  ready: PromiseWithResolvers<void> | null;
  subscribed: boolean;
  busy: boolean;
  /**
   * Events held back while the room catches up from its log (a new watch, a
   * reconnect, or a gap in what arrived), so that none is delivered ahead of
   * an earlier one only the log holds. `null`: events go out as they come.
   */
  held: Held[] | null;
  /** Settles once `held` went out; a write whose own event is held waits. */
  drained: PromiseWithResolvers<void> | null;
  /** The running catch-up loop, if any. */
  syncing: Promise<SyncOutcome> | null;
  /** Run one more catch-up round once the current one is done. */
  again: boolean;
}

interface Held {
  event: PresenceEvent;
  /** Made by this handle: delivered even when the room is no longer watched. */
  own: boolean;
}

/** "behind": the log no longer reaches back; "regressed": the seq went back. */
export type SyncOutcome = "ok" | "behind" | "regressed";

/** A new watch also catches up on events this much older than itself. */
const WATCH_SLACK_MS = 50;
/** How many rooms `#known` remembers. */
const KNOWN_ROOMS = 4096;

/** `Promise.withResolvers()`, which Node 20 lacks. */
function resolvers(): {
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
} {
  let resolve!: () => void, reject!: (e: unknown) => void;
  const promise = new Promise<void>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

/** Ordered, once-only delivery of the rooms a store handle watches. */
export class RedisFeed {
  readonly #host: FeedHost;
  readonly #watches = new Map<string, Watch>();
  /** Last seq of events this handle made, per room (bounded, oldest out). */
  readonly #known = new Map<string, number>();
  /** What arrived over pub/sub. */
  readonly received: Received = { messages: 0, events: 0 };

  constructor(host: FeedHost) {
    this.#host = host;
  }

  /** The rooms watched now. */
  rooms(): string[] {
    return [...this.#watches.keys()];
  }

  /**
   * After a data loss: nothing delivered before counts (sequence numbers
   * start over), so every watched room delivers again from 0.
   */
  forget(): void {
    this.#known.clear();
    for (const w of this.#watches.values()) w.lastSeq = 0;
  }

  /** Catch every subscribed room up from its log (after a reconnect). */
  resyncAll(): Promise<SyncOutcome[]> {
    return Promise.all(
      [...this.#watches].filter(([, w]) => w.subscribed && w.refs > 0)
        .map(([room, w]) => this.#sync(room, w)),
    );
  }

  /** Catch one watched room up from its log (its subscription moved). */
  resync(room: string): Promise<SyncOutcome> {
    const w = this.#watches.get(room);
    if (w === undefined || w.refs === 0) return Promise.resolve("ok");
    return this.#sync(room, w);
  }

  /** Deliver what is held and drop every watch (the store closes). */
  close(): void {
    for (const w of this.#watches.values()) {
      this.#settle(w);
      this.#flush(w);
    }
    this.#watches.clear();
  }

  /**
   * Receive other handles' events in `room` (reference counted; the
   * returned function drops this interest): subscribes the room's channel
   * and, once subscribed, catches up from the room's log on events
   * published since the call, so none falls between the call and the
   * subscription. Pub/sub messages that arrive meanwhile are held back until
   * then, so they cannot overtake the events the log fills in.
   */
  watch(room: string): () => void {
    let watch = this.#watches.get(room);
    if (watch === undefined) {
      watch = {
        refs: 0,
        lastSeq: -1,
        startedAt: null,
        ready: null,
        subscribed: false,
        busy: false,
        held: null,
        drained: null,
        syncing: null,
        again: false,
      };
      this.#watches.set(room, watch);
    }
    const w = watch;
    if (++w.refs === 1) {
      // Nothing this handle made itself is news to it.
      w.lastSeq = this.#known.get(room) ?? -1;
      w.startedAt = Date.now();
      w.ready ??= resolvers();
      // Until the first catch-up is done, a pub/sub message may be ahead of
      // events only the log has: hold it back.
      this.#hold(w);
      this.#reconcile(room, w);
    }
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      if (--w.refs === 0) {
        w.lastSeq = -1;
        if (w.syncing === null) this.#flush(w);
        this.#reconcile(room, w);
      }
    };
  }
  /** The seq up to which a watched room was delivered, so a write can fill the gap. */
  since(room: string): string {
    const w = this.#watches.get(room);
    return w !== undefined && w.refs > 0 && w.startedAt === null ? String(w.lastSeq) : "-1";
  }

  // -------------------------------------------------------------------------
  // Events

  onMessage(message: string): void {
    if (this.#host.closed()) return;
    let events: PresenceEvent[];
    try {
      events = JSON.parse(message);
    } catch (error) {
      this.#host.report(error);
      return;
    }
    this.received.messages++;
    this.received.events += events.length;
    for (const event of events) this.offer(event, false);
  }

  /**
   * Deliver in seq order per watched room, dropping what was delivered
   * already. An event that comes while the room catches up, or after a gap
   * (an earlier event not received yet), is held until the room's log filled
   * in what precedes it. Answers a promise when it held an own event: the
   * write resolves only once that went out.
   */
  offer(event: PresenceEvent, own: boolean): Promise<void> | null {
    if (own) this.#remember(event);
    const w = this.#watches.get(event.room);
    if (w === undefined || w.refs === 0) {
      if (own) this.#host.deliver(event);
      return null;
    }
    if (w.held === null) {
      if (event.seq <= w.lastSeq) return null;
      if (w.lastSeq < 0 || event.seq === w.lastSeq + 1) {
        w.lastSeq = event.seq;
        this.#host.deliver(event);
        return null;
      }
      // A gap: fetch what is missing from the log before going on.
      this.#hold(w);
      w.held!.push({ event, own });
      this.#sync(event.room, w).then((outcome) => {
        if (outcome !== "ok") this.#host.reset();
      }, (error) => {
        if (!this.#host.closed()) this.#host.report(error);
      });
      return own ? w.drained!.promise : null;
    }
    w.held.push({ event, own });
    return own ? w.drained!.promise : null;
  }

  /** Start holding back the room's events (no-op when already holding). */
  #hold(w: Watch): void {
    if (w.held !== null) return;
    w.held = [];
    w.drained = resolvers();
  }

  /** Stop holding: the held events go out as they are, in seq order. */
  #flush(w: Watch): void {
    const held = w.held;
    const drained = w.drained;
    w.held = null;
    w.drained = null;
    if (held !== null) {
      held.sort((x, y) => x.event.seq - y.event.seq);
      for (const h of held) this.#pass(w, h);
    }
    drained?.resolve();
  }

  /** Deliver a held (or logged) event unless the watch is past it already. */
  #pass(w: Watch, h: Held): void {
    if (w.refs > 0) {
      if (h.event.seq <= w.lastSeq) return;
      w.lastSeq = h.event.seq;
    } else if (!h.own) return;
    this.#host.deliver(h.event);
  }

  #settle(w: Watch): void {
    const ready = w.ready;
    w.ready = null;
    ready?.resolve();
  }

  /**
   * A write in a room whose watch is still being set up waits for it, so its
   * own event cannot overtake remote ones the watch is about to catch up.
   */
  async settled(room: string): Promise<void> {
    const ready = this.#watches.get(room)?.ready;
    if (ready) await ready.promise;
  }

  #remember(event: PresenceEvent): void {
    const known = this.#known;
    const last = known.get(event.room);
    if (last !== undefined && last >= event.seq) return;
    known.delete(event.room);
    known.set(event.room, event.seq);
    if (known.size > KNOWN_ROOMS) {
      known.delete(known.keys().next().value!);
    }
  }

  /** Bring the channel subscription in line with the watch count, then catch up. */
  #reconcile(room: string, w: Watch): void {
    if (w.busy || this.#host.closed()) return;
    w.busy = true;
    let failed = false;
    const channel = this.#host.channel(room);
    (async () => {
      while (!this.#host.closed()) {
        if (w.refs > 0 && !w.subscribed) {
          await this.#host.subscribe(channel);
          w.subscribed = true;
        } else if (w.refs > 0 && w.startedAt !== null) {
          await this.#sync(room, w);
        } else if (w.refs === 0 && w.subscribed) {
          await this.#host.unsubscribe(channel);
          w.subscribed = false;
        } else break;
      }
    })().catch((error) => {
      failed = true;
      this.#settle(w);
      // Deliver what was held rather than keep it back until the retry.
      if (w.syncing === null) this.#flush(w);
      if (this.#host.closed()) return;
      this.#host.report(error);
      setTimeout(() => this.#reconcile(room, w), 500);
    }).finally(() => {
      w.busy = false;
      if (w.refs === 0) this.#settle(w);
      const pending = w.refs > 0 ? !w.subscribed || w.startedAt !== null : w.subscribed;
      if (pending) {
        // A watch or unwatch landed while the loop was finishing.
        if (!failed) this.#reconcile(room, w);
      } else if (w.refs === 0 && this.#watches.get(room) === w) {
        this.#watches.delete(room);
      }
    });
  }

  /**
   * Catch the room up from its log, then deliver what was held, in seq
   * order. Joins the running loop when there is one (one more round then:
   * e.g. a reconnect came in meanwhile). Resolves once nothing is held.
   */
  #sync(room: string, w: Watch): Promise<SyncOutcome> {
    if (w.syncing !== null) {
      w.again = true;
      return w.syncing;
    }
    if (w.refs === 0) {
      this.#flush(w);
      return Promise.resolve("ok");
    }
    this.#hold(w);
    w.syncing = this.#syncLoop(room, w);
    return w.syncing;
  }

  async #syncLoop(room: string, w: Watch): Promise<SyncOutcome> {
    let outcome: SyncOutcome = "ok";
    try {
      for (;;) {
        w.again = false;
        if (w.refs === 0) {
          this.#flush(w);
          break;
        }
        this.#hold(w);
        const round = await this.#catchUp(room, w);
        if (round.outcome !== "ok") outcome = round.outcome;
        if (this.#host.closed() || (round.done && !w.again)) break;
      }
    } catch (error) {
      w.syncing = null;
      this.#flush(w);
      throw error;
    }
    // Synchronously with the last check of `again`: a later `#sync` starts anew.
    w.syncing = null;
    return outcome;
  }

  /**
   * One catch-up round: read the log (for a new watch, the events appended
   * since it began, with some slack for the trip to Redis; else those after
   * the last one delivered), then deliver the logged and the held events in
   * seq order. Up to the room's seq as read, that is final: a seq missing
   * then is older than the log and shows as a gap. Past it, held events go
   * out only while contiguous (`done: false` when one still waits for an
   * earlier event, which the next round fetches). Reports whether the room
   * is behind (the log no longer reaches back) or went backwards.
   */
  async #catchUp(
    room: string,
    w: Watch,
  ): Promise<{ outcome: SyncOutcome; done: boolean }> {
    const initial = w.startedAt !== null;
    let since = initial ? -1 : w.lastSeq;
    let outcome: SyncOutcome = "ok";
    let r: string[];
    if (initial) {
      const age = Date.now() - w.startedAt! + WATCH_SLACK_MS;
      r = await this.#host.catchUp(room, ["-1", String(age)]);
    } else {
      r = await this.#host.catchUp(room, [String(since), "0"]);
      if (since >= 0 && Number(r[0]) < since) {
        // The room started over (data loss): everything in it is new.
        outcome = "regressed";
        this.#known.delete(room);
        w.lastSeq = since = 0;
        r = await this.#host.catchUp(room, ["0", "0"]);
      }
    }
    if (initial) {
      w.startedAt = null;
      this.#settle(w);
    }
    if (w.refs === 0) {
      this.#flush(w);
      return { outcome: "ok", done: true };
    }
    const cur = Number(r[0]);
    const queue: Held[] = [];
    for (let i = 1; i < r.length; i++) {
      queue.push({ event: JSON.parse(r[i]!) as PresenceEvent, own: false });
    }
    if (w.held !== null) queue.push(...w.held);
    queue.sort((x, y) => x.event.seq - y.event.seq);
    let i = 0;
    for (; i < queue.length && queue[i]!.event.seq <= cur; i++) {
      this.#pass(w, queue[i]!);
    }
    if (outcome === "ok" && since >= 0 && w.lastSeq < cur) outcome = "behind";
    // Older events are from before the watch began, or beyond the log.
    w.lastSeq = Math.max(w.lastSeq, cur);
    for (; i < queue.length && queue[i]!.event.seq <= w.lastSeq + 1; i++) {
      this.#pass(w, queue[i]!);
    }
    // What is left waits for an earlier event: the next round fetches it.
    w.held = queue.slice(i);
    if (w.held.length > 0) return { outcome, done: false };
    this.#flush(w);
    return { outcome, done: true };
  }
}
