// A framework-agnostic store of one room, on the `{ subscribe, getSnapshot }`
// contract that React's useSyncExternalStore, Svelte stores, Vue and Solid
// all accept. Mounting (the first subscriber) joins, unmounting (the last
// one leaving) leaves; snapshots are immutable and share every part that
// did not change.

import type { PresenceError } from "../errors.ts";
import type { Metadata } from "../protocol.ts";
import type { PresenceClient, PresenceStatus, PublishOptions, PublishResult } from "./client.ts";
import {
  applyToConns,
  type Conn,
  groupUsers,
  type PresenceUser,
  type UserIdentifiers,
} from "./presence.ts";
import type { PresenceUpdate } from "./sync.ts";

/**
 * One connection in a {@link RoomSnapshot}.
 *
 * @example
 * ```ts
 * import type { RoomMember } from "@presently/presently/presence";
 * const label = (m: RoomMember<{ typing?: boolean }, { name: string }>) =>
 *   `${m.meta.name}${m.state?.typing ? " is typing" : ""}`;
 * ```
 */
export interface RoomMember<State = unknown, Meta extends Metadata = Metadata> {
  /** The connection id. */
  connectionId: string;
  /** Its public metadata. */
  meta: Meta;
  /** Its state, or `null`. */
  state: State | null;
}

/**
 * An immutable view of a room. A new snapshot is made only when something in
 * it changed, and it reuses every part that did not: `count` stays the same
 * object while the numbers do, a member object while its metadata and state
 * do, and `others` / `users` the same array while their items do. So a
 * selector on `count` does not see a cursor move.
 *
 * @example
 * ```ts
 * import type { RoomSnapshot } from "@presently/presently/presence";
 * const line = (s: RoomSnapshot) =>
 *   s.joined ? `${s.count.users} here` : (s.error?.code ?? s.status);
 * ```
 */
export interface RoomSnapshot<State = unknown, Meta extends Metadata = Metadata> {
  /** The client's status. */
  status: PresenceStatus;
  /** Joined, with the room's view: the store has a subscriber and the join succeeded. */
  joined: boolean;
  /** Why the last join was refused, or `null`. */
  error: PresenceError | null;
  /** This connection, once joined. */
  self: RoomMember<State, Meta> | null;
  /** The other connections, in the order they were seen. */
  others: RoomMember<State, Meta>[];
  /** Connections grouped into users (this one included). */
  users: PresenceUser<State, Meta>[];
  /** Occupancy: connections and users. */
  count: { connections: number; users: number };
}

/**
 * Options of {@link roomStore}. The first call for a client and room decides
 * them; later calls get the same store.
 *
 * @example
 * ```ts
 * import type { RoomStoreOptions } from "@presently/presently/presence";
 * const options: RoomStoreOptions<unknown, { userId: string }> = {
 *   metadataIdentifier: (meta) => meta.userId,
 *   lingerMs: 1000,
 * };
 * ```
 */
export interface RoomStoreOptions<State = unknown, Meta extends Metadata = Metadata>
  extends UserIdentifiers<State, Meta> {
  /**
   * How long the room stays joined after the last subscriber left (default
   * 0: until the next task). A subscriber coming back within it (React
   * StrictMode's remount, a route change) keeps the one join.
   */
  lingerMs?: number;
}

/**
 * A room as an external store: `subscribe` + `getSnapshot`, plus `update`.
 *
 * - `subscribe(listener)` calls `listener(snapshot)` at once and on every
 *   change (coalesced per microtask), and returns the unsubscribe function:
 *   this is Svelte's store contract and what React's `useSyncExternalStore`,
 *   Vue's `shallowRef` glue and Solid's `from` take.
 * - The first subscriber joins the room (one `join` with `sub` on the wire),
 *   connecting the client if it is not; when the last one leaves, the room
 *   is left after `lingerMs`.
 *
 * @example
 * ```ts
 * import type { RoomStore } from "@presently/presently/presence";
 * const watchCount = (store: RoomStore) => store.subscribe((s) => console.log(s.count.users));
 * ```
 */
export interface RoomStore<State = unknown, Meta extends Metadata = Metadata> {
  /**
   * Listen to the snapshots; the first listener joins the room.
   *
   * @param listener Called at once and with each new snapshot.
   * @returns Unsubscribe; the last one leaves the room (after `lingerMs`).
   */
  subscribe(listener: (snapshot: RoomSnapshot<State, Meta>) => void): () => void;
  /**
   * The current snapshot: the same object until something changes.
   *
   * @returns The snapshot.
   */
  getSnapshot(): RoomSnapshot<State, Meta>;
  /**
   * Publish this connection's state in the room (`state` or `patch`, and
   * `expireAfter`). With a `ThrottledPresenceClient` it is throttled.
   *
   * @param change As for `publishPresenceState`.
   * @returns The publish result; never rejects.
   */
  update(change: PublishOptions<State>): Promise<PublishResult>;
}

const stores = new WeakMap<object, Map<string, RoomStore<never, never>>>();

/** Reuse `prev` when `next` holds the same items. */
const same = <T>(prev: T[], next: T[]): T[] =>
  prev.length === next.length && next.every((x, i) => x === prev[i]) ? prev : next;

/**
 * The store of `room` on `client`: one per client and room, so any number of
 * components (and frameworks) on one room share one join and one
 * subscription. It coexists with `createPresence` and `client.presence()` on
 * the same room: each holds the room and listens on its own.
 *
 * @param client The client (connected or not: requests wait for the socket).
 * @param room The room.
 * @param options User identifiers and `lingerMs`; the first call decides them.
 * @returns The room store.
 *
 * @example React (`useSyncExternalStore`), Svelte (`$store`), Vue, Solid
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { presenceHandler } from "@presently/presently/deno";
 * import { PresenceClient } from "@presently/presently/client";
 * import { roomStore } from "@presently/presently/presence";
 *
 * const presence = new PresenceServer();
 * presence.trackPresence("doc");
 * const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, presenceHandler(presence));
 * const client = new PresenceClient<{ typing: boolean }>(`ws://127.0.0.1:${http.addr.port}/`);
 *
 * const store = roomStore(client, "doc");
 * // React: const count = useSyncExternalStore(store.subscribe, () => store.getSnapshot().count);
 * const joined = Promise.withResolvers<void>();
 * const unsubscribe = store.subscribe((s) => s.joined && joined.resolve()); // joins
 * await joined.promise;
 * await store.update({ state: { typing: true } });
 * console.log(store.getSnapshot().count); // { connections: 1, users: 1 }
 * unsubscribe(); // leaves on the next task
 *
 * await client.close();
 * await presence.close();
 * await http.shutdown();
 * ```
 */
export function roomStore<State = unknown, Meta extends Metadata = Metadata>(
  client: PresenceClient<State, Meta>,
  room: string,
  options: RoomStoreOptions<State, Meta> = {},
): RoomStore<State, Meta> {
  let byRoom = stores.get(client);
  if (!byRoom) stores.set(client, byRoom = new Map());
  let store = byRoom.get(room) as RoomStore<State, Meta> | undefined;
  if (!store) {
    store = createRoomStore(client, room, options);
    byRoom.set(room, store as unknown as RoomStore<never, never>);
  }
  return store;
}

function createRoomStore<State, Meta extends Metadata>(
  client: PresenceClient<State, Meta>,
  room: string,
  options: RoomStoreOptions<State, Meta>,
): RoomStore<State, Meta> {
  type Snapshot = RoomSnapshot<State, Meta>;
  type Member = RoomMember<State, Meta>;
  const conns = new Map<string, Conn<State, Meta>>();
  const members = new Map<string, Member>();
  const listeners = new Set<(s: Snapshot) => void>();
  let clock = 0, dirty = false, queued = false, joined = false, generation = 0;
  let error: PresenceError | null = null, told: Snapshot | null = null;
  let linger: ReturnType<typeof setTimeout> | undefined, offStatus: (() => void) | undefined;
  let snapshot: Snapshot = {
    status: client.status,
    joined,
    error,
    self: null,
    others: [],
    users: [],
    count: { connections: 0, users: 0 },
  };
  const tick = () => ++clock;

  const rebuild = (): void => {
    dirty = false;
    const me = client.connectionId, prev = snapshot, others: Member[] = [];
    let self: Member | null = null;
    for (const [id, c] of conns) {
      let m = members.get(id);
      if (!m || m.meta !== c.m || m.state !== c.s) {
        members.set(id, m = { connectionId: id, meta: c.m, state: c.s });
      }
      if (id === me) self = m;
      else others.push(m);
    }
    for (const id of members.keys()) if (!conns.has(id)) members.delete(id);
    const before = new Map(prev.users.map((u) => [u.id, u]));
    const users = groupUsers(conns, prev.users, options).map((u) => {
      const old = before.get(u.id);
      return old && old.meta === u.meta && old.state === u.state &&
          same(old.connections, u.connections) === old.connections
        ? old
        : u;
    });
    const count = prev.count.connections === conns.size && prev.count.users === users.length
      ? prev.count
      : { connections: conns.size, users: users.length };
    const next: Snapshot = {
      status: client.status,
      joined,
      error,
      self,
      others: same(prev.others, others),
      users: same(prev.users, users),
      count,
    };
    const keys = Object.keys(next) as (keyof Snapshot)[];
    if (keys.some((k) => next[k] !== prev[k])) snapshot = next;
  };

  const getSnapshot = (): Snapshot => {
    if (dirty) rebuild();
    return snapshot;
  };

  const notify = (): void => {
    const s = getSnapshot();
    if (s === told) return;
    told = s;
    for (const listener of [...listeners]) {
      try {
        listener(s);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  };

  const changed = (): void => {
    dirty = true;
    if (!queued) {
      queued = true;
      queueMicrotask(() => {
        queued = false;
        notify();
      });
    }
  };

  const on = (u: PresenceUpdate<State, Meta>): void => {
    if (applyToConns(conns, u, tick)) changed();
  };

  const start = (): void => {
    const mine = ++generation;
    offStatus = client.onStatus((status) => {
      if (status === "closed" || status === "unauthorized") {
        conns.clear();
        joined = false;
      }
      changed();
    });
    // Mounting means being in the room: connect if nobody did yet.
    client.connect().catch(() => {});
    void client.joinRoom(room, on).then((r) => {
      if (mine !== generation) return;
      if (r.success) {
        error = null;
        joined = true;
        conns.clear();
        for (const { id, meta } of r.present) {
          conns.set(id, { m: meta as Meta, s: r.states?.get(id) ?? null, t: tick() });
        }
      } else error = r.error ?? null;
      changed();
    });
  };

  const stop = (): void => {
    linger = undefined;
    generation++;
    offStatus?.();
    void client.leaveRoom(room, on);
    conns.clear();
    joined = false;
    changed();
  };

  return {
    subscribe(listener) {
      listeners.add(listener);
      if (listeners.size === 1) {
        if (linger !== undefined) {
          clearTimeout(linger);
          linger = undefined;
        } else start();
      }
      listener(getSnapshot());
      return () => {
        if (listeners.delete(listener) && listeners.size === 0) {
          linger = setTimeout(stop, options.lingerMs ?? 0);
        }
      };
    },
    getSnapshot,
    update: (change) => client.publishPresenceState(room, change),
  };
}
