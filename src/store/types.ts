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
 * await store.leave("lobby", "c1", "timeout", Date.now());
 * console.log(reasons); // ["timeout"]
 * await store.close();
 * ```
 */
export type LeaveReason =
  | "leave" // explicit leaveRoom / removeFromRoom
  | "close" // the connection closed (cleanly, or after the grace period)
  | "timeout" // missed heartbeats
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
  }
  | {
    type: "leave";
    room: string;
    connectionId: string;
    seq: number;
    reason: LeaveReason;
    timestamp: number;
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
}

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
  /** Register (or renew) an instance lease that lapses after `ttlMs`. */
  renewLease(instanceId: string, ttlMs: number, now: number): Promise<void>;
  /**
   * Release an instance cleanly: remove all its entries now, emitting their
   * leaves with reason `"close"`, and drop its lease.
   */
  releaseLease(instanceId: string): Promise<void>;

  /** Add a connection to a room. `null` when it was already present. */
  join(
    room: string,
    connectionId: string,
    instanceId: string,
    meta: Metadata,
    now: number,
  ): Promise<PresenceEvent | null>;
  /** Remove a connection from a room (and its state). `null` when absent. */
  leave(
    room: string,
    connectionId: string,
    reason: LeaveReason,
    now: number,
  ): Promise<PresenceEvent | null>;
  /**
   * Write a member's state. Resolves `"not_member"` when the connection is not
   * in the room, `null` when the write changed nothing (clearing no state).
   * `expiresAt` (ms since epoch) schedules the state to be cleared.
   */
  setState(
    room: string,
    connectionId: string,
    write: StateWrite,
    expiresAt: number | null,
    now: number,
  ): Promise<PresenceEvent | null | "not_member">;

  /** The room's present connections, states and sequence number. */
  snapshot(room: string, now: number): Promise<RoomSnapshot>;

  /** Store a connection's metadata (public part), visible to all instances. */
  setMetadata(
    connectionId: string,
    instanceId: string,
    meta: Metadata,
  ): Promise<void>;
  /** A connection's metadata, or `null` when unknown. */
  getMetadata(connectionId: string): Promise<Metadata | null>;
  /** Forget a connection's metadata (after it is gone). */
  deleteMetadata(connectionId: string): Promise<void>;

  /** Register a listener on the event feed. Returns the unsubscribe. */
  subscribe(listener: StoreListener): () => void;
  /**
   * Declare interest in a room's events from other instances (and keep its
   * seq while it is empty). Returns a function that drops the interest.
   * Calls are reference counted.
   */
  watchRoom(room: string): () => void;

  /** Expire states and lapsed instances as of `now`, emitting the events. */
  sweep(now: number): Promise<void>;

  /**
   * Optional: register a listener called when the backend lost this
   * instance's data (e.g. a Redis restart without persistence). The server
   * then re-registers its live presence (lease, metadata, memberships,
   * states) and resynchronises every room view from a fresh snapshot.
   * A store shared by several servers in one process passes the instance id
   * whose data was lost; each server ignores the other ids. Without an id,
   * every listener takes it as its own. Returns the unsubscribe.
   */
  onReset?(listener: (instanceId?: string) => void): () => void;

  /** Release resources (connections, timers). The store is unusable after. */
  close(): Promise<void>;
}
