// The PresenceStore contract: async, so distributed stores fit without rework.

import type { Metadata, PresentEntry } from "../protocol.ts";

/**
 * Why a connection left a room.
 *
 * @example
 * ```ts
 * import { type LeaveReason, MemoryPresenceStore } from "@presently/presently";
 * const store = new MemoryPresenceStore();
 * const reasons: LeaveReason[] = [];
 * store.subscribe((event) => {
 *   if (event.type === "leave") reasons.push(event.reason);
 * });
 * await store.join("lobby", "c1", "server-1", {}, Date.now());
 * await store.leave("lobby", "c1", "expired", Date.now());
 * console.log(reasons); // ["expired"]
 * await store.close();
 * ```
 */
export type LeaveReason =
  | "leave" // explicit leaveRoom / removeFromRoom
  | "close" // the connection closed (cleanly, or after the grace period; a missed heartbeat too)
  | "instance" // its server instance's lease lapsed or was released
  | "expired"; // its room TTL lapsed without a sign of life

/**
 * A presence event, as stored, fanned out, and seen by `server.events()`.
 *
 * @example
 * ```ts
 * import { MemoryPresenceStore, type PresenceEvent } from "@presently/presently";
 * function describe(event: PresenceEvent): string {
 *   switch (event.type) {
 *     case "join":
 *       return `${event.connectionId} joined ${event.room}`;
 *     case "leave":
 *       return `${event.connectionId} left ${event.room} (${event.reason})`;
 *     case "state":
 *       return `${event.connectionId} in ${event.room}: ${JSON.stringify(event.state)}`;
 *   }
 * }
 * const store = new MemoryPresenceStore();
 * store.subscribe((event) => console.log(describe(event)));
 * await store.join("lobby", "c1", "server-1", {}, Date.now()); // "c1 joined lobby"
 * await store.close();
 * ```
 */
export type PresenceEvent =
  | {
    type: "join";
    room: string;
    connectionId: string;
    /** Per-room sequence number, strictly increasing by one. */
    seq: number;
    /** The connection's public metadata at join time. */
    meta: Metadata;
    /** Instance that owns the connection. */
    instance: string;
    /** Milliseconds since the epoch, by the producing clock. */
    timestamp: number;
    /** The user the connection belongs to, when it has one. */
    user?: string;
    /** Set when this is the user's first connection in the room. */
    firstOfUser?: boolean;
  }
  | {
    type: "leave";
    room: string;
    connectionId: string;
    seq: number;
    reason: LeaveReason;
    timestamp: number;
    /** The user the connection belonged to, when it had one. */
    user?: string;
    /** Set when this was the user's last connection in the room. */
    lastOfUser?: boolean;
  }
  | {
    type: "state";
    room: string;
    connectionId: string;
    seq: number;
    /** The full new state (`null` when cleared or expired). */
    state: unknown;
    /** The merge patch applied, when the update was a patch. */
    patch?: unknown;
    /** Set when the state was cleared by its `expireAfter`. */
    expired?: boolean;
    timestamp: number;
  };

/**
 * A consistent view of one room at sequence `seq`.
 *
 * @example
 * ```ts
 * import { MemoryPresenceStore, type RoomSnapshot } from "@presently/presently";
 * const store = new MemoryPresenceStore();
 * const now = Date.now();
 * await store.join("lobby", "c1", "server-1", { name: "Ada" }, now);
 * await store.setState("lobby", "c1", { kind: "set", state: "typing" }, null, now);
 * const snap: RoomSnapshot = await store.snapshot("lobby", now);
 * console.log(snap.seq); // 2
 * console.log(snap.present); // [{ id: "c1", meta: { name: "Ada" } }]
 * console.log(snap.states); // Map { "c1" => "typing" }
 * await store.close();
 * ```
 */
export interface RoomSnapshot {
  /** The last sequence number reflected in the snapshot (0 for a new room). */
  seq: number;
  /** Present connections with their public metadata, in join order. */
  present: PresentEntry[];
  /** Current states by connection id. */
  states: Map<string, unknown>;
  /**
   * The user of each member that has one, by connection id. Optional for
   * stores written before 0.2; the three bundled stores always fill it.
   */
  users?: Map<string, string>;
  /**
   * The sequence number of each member's join, by connection id. Optional
   * for stores written before 0.2; the bundled stores fill it. After a
   * rollback it tells a ghost (joined before a leave a view saw) from a
   * member that joined again.
   */
  joined?: Map<string, number>;
}

/**
 * How many are in a room: connections, and distinct users among them (a
 * connection without a user counts as a user of its own).
 *
 * @example
 * ```ts
 * import { MemoryPresenceStore, type RoomCount } from "@presently/presently";
 * const store = new MemoryPresenceStore();
 * const now = Date.now();
 * await store.join("lobby", "c1", "server-1", {}, now, "ada");
 * await store.join("lobby", "c2", "server-1", {}, now, "ada");
 * await store.join("lobby", "c3", "server-1", {}, now);
 * const count: RoomCount = await store.count("lobby", now);
 * console.log(count); // { connections: 3, users: 2 }
 * await store.close();
 * ```
 */
export interface RoomCount {
  /** Connections present. */
  connections: number;
  /** Distinct users present (a connection without a user counts as one). */
  users: number;
}

/**
 * One page of {@linkcode PresenceStore.listRooms}: non-empty rooms in
 * ascending order of name, and the cursor of the next page (`null` at the end).
 *
 * @example
 * ```ts
 * import { MemoryPresenceStore, type RoomPage } from "@presently/presently";
 * const store = new MemoryPresenceStore();
 * for (const room of ["doc:1", "doc:2", "chat"]) {
 *   await store.join(room, "c1", "server-1", {}, Date.now());
 * }
 * const page: RoomPage = await store.listRooms({ prefix: "doc:", limit: 1 });
 * console.log(page.rooms); // ["doc:1"]
 * console.log((await store.listRooms({ prefix: "doc:", cursor: page.cursor! })).rooms); // ["doc:2"]
 * await store.close();
 * ```
 */
export interface RoomPage {
  /** Room names, ascending. */
  rooms: string[];
  /** Pass as `cursor` for the next page; `null` when this is the last one. */
  cursor: string | null;
}

/**
 * Which rooms to list: names starting with `prefix`, after `cursor`, at most
 * `limit` (default 100, at most 1000).
 *
 * @example
 * ```ts
 * import type { ListRoomsOptions } from "@presently/presently";
 * const first: ListRoomsOptions = { prefix: "doc:", limit: 50 };
 * console.log(first.limit); // 50
 * ```
 */
export interface ListRoomsOptions {
  /** Only rooms whose name starts with this. */
  prefix?: string;
  /** The `cursor` of the previous page. */
  cursor?: string;
  /** Page size: default 100, capped at 1000. */
  limit?: number;
}

/**
 * One event in a presence hook's durable queue, claimed by one consumer.
 * Its `key` is the idempotency key, the same on every retry.
 *
 * @example
 * ```ts
 * import { MemoryPresenceStore, type HookDelivery } from "@presently/presently";
 * const store = new MemoryPresenceStore();
 * await store.registerHook("audit", ["join", "leave"]);
 * await store.join("lobby", "c1", "server-1", {}, Date.now());
 * const claimed: HookDelivery[] = await store.claimHooks("audit", Date.now(), 30_000, 10);
 * for (const delivery of claimed) {
 *   console.log(delivery.key, delivery.attempt); // "lobby:1:…" 1
 *   await store.settleHook("audit", delivery.key, null); // done: removed from the queue
 * }
 * await store.close();
 * ```
 */
export interface HookDelivery {
  /** The idempotency key: `<room>:<seq>:<timestamp>`, stable across retries. */
  key: string;
  /** The event. */
  event: PresenceEvent;
  /** 1 on the first delivery, then 2, 3, ... */
  attempt: number;
}

/** The event types a presence hook's queue takes. */
export type HookEventType = "join" | "leave" | "state";

/**
 * How a state write changes the stored state.
 *
 * @example
 * ```ts
 * import { MemoryPresenceStore, type StateWrite } from "@presently/presently";
 * const store = new MemoryPresenceStore();
 * const now = Date.now();
 * await store.join("lobby", "c1", "server-1", {}, now);
 * const writes: StateWrite[] = [
 *   { kind: "set", state: { typing: false, line: 1 } },
 *   { kind: "patch", patch: { typing: true } }, // an RFC 7386 merge patch
 * ];
 * for (const write of writes) await store.setState("lobby", "c1", write, null, now);
 * console.log((await store.snapshot("lobby", now)).states.get("c1")); // { typing: true, line: 1 }
 * await store.setState("lobby", "c1", { kind: "clear" }, null, now);
 * await store.close();
 * ```
 */
export type StateWrite =
  | { kind: "set"; state: unknown }
  | { kind: "patch"; patch: unknown }
  | { kind: "clear" };

/**
 * Listener for the store's ordered event feed.
 *
 * @example
 * ```ts
 * import { MemoryPresenceStore, type StoreListener } from "@presently/presently";
 * const store = new MemoryPresenceStore();
 * const log: StoreListener = (event) => console.log(event.room, event.type, event.seq);
 * const unsubscribe = store.subscribe(log);
 * await store.join("lobby", "c1", "server-1", {}, Date.now()); // "lobby join 1"
 * unsubscribe();
 * await store.close();
 * ```
 */
export type StoreListener = (event: PresenceEvent) => void;

/**
 * The storage and event-distribution seam. One instance of a store may be
 * shared by many `PresenceServer` instances (processes); each server calls it
 * with its own `instanceId`.
 *
 * Contract (checked by `tests/store_conformance.ts` for every implementation):
 * - Mutations are atomic and assign the room's next sequence number. They
 *   resolve with the event they produced, or `null` when nothing changed.
 * - Every event produced by any instance is delivered, in sequence order per
 *   room, to listeners registered with `subscribe` whose `watchRoom` covers the
 *   room. Events produced by this store handle are delivered before the
 *   mutation's promise resolves.
 * - Entries are tagged with the instance that owns the connection. When an
 *   instance's lease lapses, `sweep` on any survivor removes its entries and
 *   emits their leaves exactly once (reason `"instance"`).
 * - A room's seq never goes back while any handle watches it. A store may
 *   forget an empty room nobody watches (its seq then starts over at 0).
 * - States with `expiresAt` are cleared by `sweep` once `now >= expiresAt`,
 *   emitting a state event with `state: null` and `expired: true` exactly once.
 *   Reads never return an expired state, swept or not.
 *
 * @example Code that works on any store
 * ```ts
 * import { MemoryPresenceStore, type PresenceStore } from "@presently/presently";
 * // MemoryPresenceStore, KvPresenceStore and RedisPresenceStore all fit.
 * async function whoIsIn(store: PresenceStore, room: string): Promise<string[]> {
 *   const { present } = await store.snapshot(room, Date.now());
 *   return present.map((entry) => entry.id);
 * }
 * const store = new MemoryPresenceStore();
 * await store.join("lobby", "c1", "server-1", { name: "Ada" }, Date.now());
 * console.log(await whoIsIn(store, "lobby")); // ["c1"]
 * await store.close();
 * ```
 */
export interface PresenceStore {
  /**
   * Register or renew an instance lease that lapses at `now + ttlMs`. Once it
   * lapses, `sweep` on any handle removes the instance's entries (leaves with
   * reason `"instance"`). An instance that never had a lease is never reaped,
   * so a server writes entries only while it holds one; a store whose backend
   * can come back empty holds an instance's writes after such a loss until
   * its lease is renewed there (see `RedisPresenceStore`).
   * A renewal that finds its lease gone (reaped after a long stall, or lost by
   * the backend) runs the `onReset` listeners.
   */
  renewLease(instanceId: string, ttlMs: number, now: number): Promise<void>;
  /**
   * Release an instance cleanly: remove all its entries now, emitting their
   * leaves with reason `"close"`, forget the metadata it owns, and drop its
   * lease. Resolves after the leave events were delivered.
   */
  releaseLease(instanceId: string): Promise<void>;

  /**
   * Add a connection to a room and emit a `join` event with the room's next
   * seq (carrying `meta`, the owning instance and `now`). `null`, and no
   * event, when it was already present. With `userId`, the member counts
   * toward that user: the event carries `user`, and `firstOfUser` when the
   * user had no other connection there.
   */
  join(
    room: string,
    connectionId: string,
    instanceId: string,
    meta: Metadata,
    now: number,
    userId?: string | null,
  ): Promise<PresenceEvent | null>;
  /**
   * Remove a connection from a room, dropping its state, and emit a `leave`
   * event with `reason` and `now` (the only event: no separate state event
   * for the dropped state; `lastOfUser` when it was its user's last
   * connection there). `null`, and no event, when it was absent.
   */
  leave(
    room: string,
    connectionId: string,
    reason: LeaveReason,
    now: number,
  ): Promise<PresenceEvent | null>;
  /**
   * Write a member's state: replace it (`set`), RFC 7386 merge-patch it
   * (`patch`: nested objects merge, `null` removes a key, a patch without a
   * state starts from `{}`), or `clear` it. A `null` state or patch clears
   * like `clear`. States keep their exact JSON (key order, numbers,
   * `__proto__` keys, which never pollute prototypes).
   *
   * A `set` or `patch` replaces any earlier expiry with `expiresAt` (ms since
   * epoch; `null`: never expires). A state that expired but was not swept yet
   * counts as absent: its expiry is announced first (a state event with
   * `state: null, expired: true`), then the write applies. Concurrent patches
   * from several handles never lose an update (a distributed store merges
   * from the version it read and writes only if it is still current,
   * retrying otherwise; it throws `store_error` if they keep conflicting).
   *
   * Resolves with the state event; `null` when clearing no state;
   * `"not_member"` when the connection is not in the room.
   */
  setState(
    room: string,
    connectionId: string,
    write: StateWrite,
    expiresAt: number | null,
    now: number,
  ): Promise<PresenceEvent | null | "not_member">;

  /**
   * A consistent view of a room, read in one atomic step: its seq, the
   * members in join order with their metadata (and users and join seqs), and
   * the states that have not expired as of `now`, swept or not. An unknown
   * room has seq 0 and nobody present.
   */
  snapshot(room: string, now: number): Promise<RoomSnapshot>;

  /**
   * Connections and distinct users in a room, from counters kept by the
   * writes (never by reading the member list). A member without a user
   * counts as a user of its own.
   */
  count(room: string, now: number): Promise<RoomCount>;
  /**
   * Non-empty rooms by name (optionally under a prefix), ascending, a page
   * at a time; `cursor` continues after the last name of a page.
   */
  listRooms(options?: ListRoomsOptions): Promise<RoomPage>;
  /** The rooms where a user has at least one connection, ascending. */
  userRooms(userId: string): Promise<string[]>;

  /**
   * Create (or widen) the durable queue of presence hook `name`: from when
   * this resolves, every event of the given types that any handle produces
   * (reaps and expiries included) is also appended to it, in the same
   * atomic step as the write, with the key `<room>:<seq>:<timestamp>`. The
   * registration lives with the data, so every instance sees it.
   */
  registerHook(name: string, types: readonly HookEventType[]): Promise<void>;
  /** Stop queueing for hook `name` and drop what is queued. */
  dropHook(name: string): Promise<void>;
  /**
   * Claim up to `max` queued events of hook `name` that are due at `now`,
   * each with its attempt number (1 on the first claim). Each claimed event
   * is hidden until `now + leaseMs`; unless settled by then, it is due again
   * (for any consumer), with the same key and the next attempt.
   */
  claimHooks(name: string, now: number, leaseMs: number, max: number): Promise<HookDelivery[]>;
  /**
   * Settle a claimed event: `retryAt === null` removes it (delivered);
   * a time makes it due again then (a failed attempt).
   */
  settleHook(name: string, key: string, retryAt: number | null): Promise<void>;

  /**
   * Store a connection's metadata (public part), visible to all handles,
   * tagged with the instance that owns the connection so it is forgotten
   * when that instance is reaped or released.
   */
  setMetadata(
    connectionId: string,
    instanceId: string,
    meta: Metadata,
  ): Promise<void>;
  /** A connection's metadata, whichever instance set it, or `null` when unknown. */
  getMetadata(connectionId: string): Promise<Metadata | null>;
  /** Forget a connection's metadata (after it is gone). Unknown ones are ignored. */
  deleteMetadata(connectionId: string): Promise<void>;

  /**
   * Register a listener on the event feed: the events made through this
   * handle (every room, before the mutation resolves), and those of other
   * handles in the rooms passed to `watchRoom`, in seq order per room. A
   * listener that throws is reported to the store's `onError` and does not
   * affect the mutation or the other listeners. The same function subscribed
   * twice is called twice. Returns an idempotent unsubscribe.
   */
  subscribe(listener: StoreListener): () => void;
  /**
   * Declare interest in a room's events from other handles (and keep its
   * seq while it is empty). Calls are reference counted; the returned
   * function drops this one interest and is idempotent. Events made shortly
   * before the call may be delivered too (a view drops them by seq).
   */
  watchRoom(room: string): () => void;

  /**
   * Reap instances whose lease lapsed (`now >= expiry`; leaves with reason
   * `"instance"`), then clear states whose `expiresAt <= now` (state events
   * with `state: null, expired: true`). Each event is emitted once however
   * many handles sweep at once. An instance whose lease this handle renews
   * itself is left to the others (in its own process it has at most
   * stalled). Resolves after the events were delivered.
   */
  sweep(now: number): Promise<void>;

  /**
   * Optional: register a listener called when the backend lost this
   * instance's data: a restart without persistence, a lease reaped while
   * the instance lived, a watched room that moved on further than the store
   * can catch up, or a rollback (a failover that lost the last writes). The
   * server then re-registers its live presence (lease, metadata,
   * memberships, states) and resynchronises every room view from a fresh
   * snapshot. A store shared by several servers in one process passes the
   * instance id whose data was lost; each server ignores the other ids.
   * Without an id, every listener takes it as its own. Returns an
   * idempotent unsubscribe.
   */
  onReset?(listener: (instanceId?: string) => void): () => void;

  /**
   * Optional: what the store holds as owned by an instance (its members and
   * the connections whose metadata it owns). After a reset the server drops
   * what it does not hold any more: after a rollback (a failover that lost
   * the last writes) these are the ghosts of connections that had left.
   */
  owned?(instanceId: string): Promise<OwnedEntries>;

  /**
   * Release resources (connections, timers) and drop every listener. After
   * it, every method except `subscribe`, `watchRoom` and `onReset` rejects
   * with code `"closed"`. The store never closes a handle it was given
   * (a `Deno.Kv`, for example).
   */
  close(): Promise<void>;
}

/**
 * What a store holds as owned by one instance.
 *
 * @example
 * ```ts
 * import { MemoryPresenceStore, type OwnedEntries } from "@presently/presently";
 * const store = new MemoryPresenceStore();
 * await store.join("lobby", "c1", "server-1", {}, Date.now());
 * await store.setMetadata("c1", "server-1", { name: "Ada" });
 * const owned: OwnedEntries = await store.owned("server-1");
 * console.log(owned); // { members: [{ room: "lobby", connectionId: "c1" }], metadata: ["c1"] }
 * await store.close();
 * ```
 */
export interface OwnedEntries {
  /** Memberships of the instance's connections. */
  members: Array<{ room: string; connectionId: string }>;
  /** Connections whose metadata the instance owns. */
  metadata: string[];
}
