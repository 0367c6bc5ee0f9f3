// One room's local view (members, states, seq) and its fan-out: events are
// encoded once per room per flush and sent to every subscriber.

import {
  encodeEvents,
  encodeMember,
  encodePresent,
  encodeSnapshot,
  eventTails,
  type Metadata,
  type PresentEntry,
  type WireEvent,
} from "../protocol.ts";
import type { PresenceEvent } from "../store/types.ts";
import type { Connection } from "./connection.ts";

/** Recent leaves remembered per room view (see `Room.load`). */
const LEFT_MAX = 1024;

/** One connection's presence subscription to one room. */
export interface Subscription {
  readonly conn: Connection;
  readonly room: Room;
  /** Include user online/offline lists in snapshots. */
  users: boolean;
  /** Occupancy-only (`mode: "count"`). */
  count: boolean;
  /** Events with `seq <= fromSeq` are already in this subscriber's snapshot. */
  fromSeq: number;
  /** The server's reset count when this was answered from a fresh store read (else -1). */
  freshAt: number;
  /** Subscribed to the room's native topic. */
  native: boolean;
  /**
   * When it became stale (clock ms), `null` while it is not: a stale
   * subscriber missed events while backed up and gets a fresh snapshot once
   * drained.
   */
  staleSince: number | null;
}

/** Settings the fan-out needs from the server. */
export interface FanoutContext {
  now(): number;
  highWater: number;
  maxPending: number;
  /** A subscriber fell behind: the server tracks it for resync or closing. */
  markStale(sub: Subscription): void;
  /** A subscriber is hopeless (over `maxPending`): close it. */
  overflow(conn: Connection): void;
}

/** Result of applying a store event to a room view. */
export type ApplyResult = "applied" | "duplicate" | "gap";

/**
 * One member of a room's view: its metadata, its state (`undefined`: none),
 * and the seq of its join (-1: unknown). One record per member, not a map
 * each for metadata, states and joins: a map entry costs about 90 B on Bun (JSC).
 * A state is only ever held for a member (the stores keep it so), and leaves
 * with it.
 */
export interface ViewMember {
  meta: Metadata;
  state: unknown;
  joined: number;
}

/** A room's local, in-memory mirror of the store, plus its subscribers. */
export class Room {
  readonly name: string;
  readonly topic: string;
  seq = 0;
  ready = false;
  /** The members in join order, each with its metadata, state and join seq. */
  readonly members = new Map<string, ViewMember>();
  /** userId -> number of present connections, when the server has a userKey. */
  readonly users: Map<string, number> | null;
  /**
   * Local connections with a stake in this view: each one that means to be
   * in the room (`conn.inRoom`), and each one subscribed to its events, with
   * that subscription (`null`: none). Count-mode subscriptions are in
   * `countSubs`. One map, not a set of members and a set of subscribers:
   * most connections are both, and a Set entry costs about 80 B on Bun (JSC).
   */
  readonly #links = new Map<Connection, Subscription | null>();
  /** How many of `#links` hold a subscription. */
  #subCount = 0;
  /** Count-mode (`mode: "count"`) subscriptions. */
  readonly countSubs = new Set<Subscription>();
  /**
   * Members kept from the view before a store reset, absent from the store
   * until their instance registers them again: no leave is sent for them
   * before `settleUntil`, when a reload tells who is really gone.
   */
  settleUntil = 0;
  /** The view was complete when the store last reset: it may answer meanwhile. */
  kept = false;
  /** Loaded in a settle window without keeping: incomplete until then (0: complete). */
  incompleteUntil = 0;
  /** The server's reset count when this view was last loaded (-1: never). */
  loadedAt = -1;
  /** Consecutive failed loads; the next retry waits longer. */
  failures = 0;
  /** A retry of a failed load is scheduled. */
  retry: unknown = null;
  /** Events were dropped while loading: load once more afterwards. */
  reloadAgain = false;
  /** Events seen while the snapshot loads. */
  early: PresenceEvent[] = [];
  pending: WireEvent[] = [];
  pendingFirstSeq = 0;
  /** When the room last sent its pending events (`FlushScheduler`, for the batch interval). */
  flushedAt = -Infinity;
  countDirty = false;
  loading: Promise<void> | null = null;
  unwatch: (() => void) | null = null;
  readonly #userOf: ((meta: Metadata) => string | null) | null;
  /**
   * Each `present` entry as JSON, in join order: appended on join, rebuilt
   * after a leave. A storm of N joins then encodes O(N) entries, not O(N²),
   * and each joiner's snapshot is one flat string join. Built when a
   * snapshot needs it, and dropped once a second has passed without one
   * (`dropIdleCache`): it costs about 80 bytes per member (on Bun), worth
   * keeping only while snapshots are asked for.
   */
  #presentParts: string[] | null = null;
  /** A snapshot read `#presentParts` since the last `dropIdleCache`. */
  #presentRead = false;
  /**
   * Connections whose leave this view applied lately: the leave's time and
   * the seq of the join it ended. A snapshot read in a settle window after a
   * reset that lists one with that very join comes from data rolled back to
   * before the leave (a ghost), which its instance is about to drop. One
   * that joined again (after a reap, or in a store that lost everything and
   * started its seqs over) has another join. Bounded, oldest out first.
   */
  #left = new Map<string, { joined: number; at: number }>();

  constructor(name: string, userOf: ((meta: Metadata) => string | null) | null) {
    this.name = name;
    this.topic = `presently:${name}`;
    this.#userOf = userOf;
    this.users = userOf ? new Map() : null;
  }

  /** A local connection means to be in this room, or subscribes to it. */
  get needed(): boolean {
    return this.#links.size > 0 || this.countSubs.size > 0;
  }

  /** Nobody local needs this view any more, and nothing is left to send. */
  get idle(): boolean {
    return !this.needed && this.pending.length === 0;
  }

  /** Local connections with a stake in this view, each with its event subscription. */
  get links(): ReadonlyMap<Connection, Subscription | null> {
    return this.#links;
  }

  /** A local connection now means to be in this room (`conn.inRoom` holds). */
  addLocal(conn: Connection): void {
    if (!this.#links.has(conn)) this.#links.set(conn, null);
  }

  /** A local connection no longer means to be in this room (`conn.inRoom` no longer holds). */
  removeLocal(conn: Connection): void {
    if (this.#links.get(conn) === null) this.#links.delete(conn);
  }

  /** A new subscription (one event subscription per connection). */
  addSub(sub: Subscription): void {
    if (sub.count) {
      this.countSubs.add(sub);
      return;
    }
    if (!this.#links.get(sub.conn)) this.#subCount++;
    this.#links.set(sub.conn, sub);
  }

  /** A subscription ends; its connection stays while it means to be in the room. */
  removeSub(sub: Subscription): void {
    if (sub.count) {
      this.countSubs.delete(sub);
      return;
    }
    if (this.#links.get(sub.conn) !== sub) return;
    this.#subCount--;
    if (sub.conn.inRoom(this.name)) this.#links.set(sub.conn, null);
    else this.#links.delete(sub.conn);
  }

  /**
   * Replace the view with a store snapshot. With `keep`, members (and their
   * states) that the snapshot lacks stay in the view: see `settleUntil`.
   * Returns how many were kept.
   */
  load(
    seq: number,
    present: PresentEntry[],
    states: Map<string, unknown>,
    keep = false,
    leftSince = Infinity,
    joined?: Map<string, number>,
  ): number {
    const old = keep ? new Map(this.members) : null;
    this.seq = seq;
    this.members.clear();
    this.users?.clear();
    this.#presentParts = null;
    for (const [id, left] of this.#left) if (left.at < leftSince) this.#left.delete(id);
    // Kept through a reset: not the joins whose leave was seen since `leftSince`.
    const ghost = (id: string) =>
      keep && joined?.get(id) !== undefined && joined.get(id) === this.#left.get(id)?.joined;
    for (const { id, meta } of present) {
      if (ghost(id)) continue;
      this.members.set(id, { meta, state: states.get(id), joined: joined?.get(id) ?? -1 });
      this.#countUser(meta, 1);
    }
    let kept = 0;
    for (const [id, member] of old ?? []) {
      if (this.members.has(id)) continue;
      kept++;
      this.members.set(id, member);
      this.#countUser(member.meta, 1);
    }
    this.ready = true;
    this.countDirty = true;
    return kept;
  }

  /** Apply one event in sequence order, queueing its wire form for subscribers. */
  apply(ev: PresenceEvent): ApplyResult {
    if (ev.seq <= this.seq) return "duplicate";
    if (ev.seq !== this.seq + 1) return "gap";
    this.seq = ev.seq;
    if (this.pending.length === 0) this.pendingFirstSeq = ev.seq;
    const cid = ev.connectionId;
    switch (ev.type) {
      case "join": {
        // A member kept through a store reset joins again: not a new user.
        const was = this.members.get(cid);
        this.#left.delete(cid);
        if (was) this.#presentParts = null;
        else this.#presentParts?.push(encodeMember(cid, ev.meta));
        // A join again keeps the state (the store keeps it through a rejoin).
        this.members.set(cid, { meta: ev.meta, state: was?.state, joined: ev.seq });
        this.pending.push([ev.seq, "j", cid, ev.meta]);
        if (was) this.#countUser(was.meta, -1);
        const user = this.#countUser(ev.meta, 1);
        if (user !== null && !was) this.pending.push([ev.seq, "u", user, 1]);
        this.countDirty = true;
        break;
      }
      case "leave": {
        const member = this.members.get(cid);
        if (this.members.delete(cid)) this.#presentParts = null;
        this.#left.delete(cid);
        if (member && member.joined >= 0) {
          this.#left.set(cid, { joined: member.joined, at: ev.timestamp });
        }
        if (this.#left.size > LEFT_MAX) this.#left.delete(this.#left.keys().next().value!);
        this.pending.push([ev.seq, "l", cid]);
        if (member) {
          const user = this.#countUser(member.meta, -1);
          if (user !== null) this.pending.push([ev.seq, "u", user, 0]);
        }
        this.countDirty = true;
        break;
      }
      case "state": {
        const member = this.members.get(cid);
        if (member) member.state = ev.state === null ? undefined : ev.state;
        this.pending.push(
          ev.patch !== undefined && ev.state !== null
            ? [ev.seq, "p", cid, ev.patch]
            : [ev.seq, "s", cid, ev.state],
        );
        break;
      }
    }
    return "applied";
  }

  /** Returns the user id whose online status flipped, else null. */
  #countUser(meta: Metadata, delta: 1 | -1): string | null {
    if (!this.users || !this.#userOf) return null;
    const user = this.#userOf(meta);
    if (user === null) return null;
    const n = (this.users.get(user) ?? 0) + delta;
    if (n <= 0) this.users.delete(user);
    else this.users.set(user, n);
    return (delta === 1 && n === 1) || (delta === -1 && n <= 0) ? user : null;
  }

  /**
   * Drop the snapshot cache unless a snapshot read it since the last call
   * (the sweep calls this with each liveness check, once a second by default).
   */
  dropIdleCache(): void {
    if (!this.#presentRead) this.#presentParts = null;
    this.#presentRead = false;
  }

  #present(): string[] {
    this.#presentRead = true;
    let parts = this.#presentParts;
    if (parts === null) {
      parts = this.#presentParts = [];
      for (const [id, member] of this.members) parts.push(encodeMember(id, member.meta));
    }
    return parts;
  }

  /**
   * A frame carrying the room's snapshot: `head` (e.g. `{"t":"ok","id":7,`)
   * then `"seq"`, `"states"` (and `"users"`), and `"present"` last.
   */
  snapshotFrame(head: string, users: boolean): string {
    // forEach, not for-of: no entry array per member (a join storm asks a
    // snapshot per joiner).
    const states: [string, unknown][] = [];
    this.members.forEach((member, id) => {
      if (member.state !== undefined) states.push([id, member.state]);
    });
    return encodeSnapshot(
      head,
      this.seq,
      states,
      users && this.users ? this.users.keys() : null,
      this.#present(),
    );
  }

  /** A frame of `head` then the `present` array, last (`encodePresent`). */
  presentFrame(head: string): string {
    return encodePresent(head, this.#present());
  }

  /** Occupancy for count-mode subscribers. */
  counts(): { c: number; u: number } {
    return { c: this.members.size, u: this.users?.size ?? this.members.size };
  }

  /** Subscribers currently receiving through the native topic. */
  nativeCount = 0;
  /** Characters published to the native topic since the sweep last checked its subscribers. */
  nativeSent = 0;

  /** Move a subscriber on or off the room's native topic. */
  setNative(sub: Subscription, on: boolean): void {
    if (sub.native === on) return;
    const topics = sub.conn.socket?.topics;
    if (on) {
      if (!topics) return;
      topics.subscribe(this.topic);
    } else {
      try {
        topics?.unsubscribe(this.topic);
      } catch { /* socket already closed */ }
    }
    sub.native = on;
    this.nativeCount += on ? 1 : -1;
  }

  /**
   * Send the pending events: encoded once, published natively to caught-up
   * subscribers and looped over the rest. Subscribers that joined mid-batch
   * get only the tail after their snapshot; backed-up ones are marked stale.
   */
  flush(ctx: FanoutContext): void {
    const events = this.pending;
    if (events.length === 0) return;
    this.pending = [];
    const first = this.pendingFirstSeq;
    const last = events[events.length - 1]![0];
    const frame = encodeEvents(this.name, events);
    if (this.nativeCount > 0) {
      for (const sub of this.#links.values()) {
        if (sub?.native) {
          sub.conn.socket?.topics?.publish(this.topic, frame);
          this.nativeSent += frame.length;
          break;
        }
      }
      if (this.nativeCount === this.#subCount) return;
    }
    let tails: ((after: number) => string) | null = null;
    for (const sub of this.#links.values()) {
      if (!sub || sub.native || sub.staleSince !== null || sub.fromSeq >= last) continue;
      let data = frame;
      if (sub.fromSeq >= first) {
        tails ??= eventTails(this.name, events, frame);
        data = tails(sub.fromSeq);
      }
      if (this.sendTo(sub, data, ctx)) {
        // Caught up: the next batches go whole (or natively).
        sub.fromSeq = last;
        this.setNative(sub, true);
      }
    }
  }

  /** Send one frame to one subscriber, with backpressure handling. */
  sendTo(sub: Subscription, data: string, ctx: FanoutContext): boolean {
    const socket = sub.conn.socket;
    if (!socket) {
      ctx.markStale(sub);
      return false;
    }
    const conn = sub.conn;
    // bufferedAmount is a runtime call (an op per read in Deno): ask only once
    // the bytes sent since the last answer could have crossed the watermark.
    if (conn.mayExceed(ctx.highWater, data.length)) {
      const buffered = conn.readBacklog();
      if (buffered > ctx.maxPending) {
        ctx.overflow(conn);
        return false;
      }
      if (buffered > ctx.highWater) {
        ctx.markStale(sub);
        return false;
      }
    }
    if (!conn.send(data)) {
      ctx.markStale(sub);
      return false;
    }
    return true;
  }
}
