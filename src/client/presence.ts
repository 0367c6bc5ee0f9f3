// Unified presence: one room's connections grouped into users (tabs, devices).

import type { Metadata } from "../protocol.ts";
import type { PresenceClient, PublishResult } from "./client.ts";
import type { PresenceUpdate } from "./sync.ts";

/**
 * A user: all connections that share an identity.
 *
 * @example
 * ```ts
 * import type { PresenceUser } from "@presently/presently/presence";
 * const label = (u: PresenceUser<{ name: string }>) =>
 *   `${u.state?.name ?? u.id}${u.tabCount > 1 ? ` (${u.tabCount} tabs)` : ""}`;
 * ```
 */
export interface PresenceUser<
  State = unknown,
  Meta extends Metadata = Metadata,
> {
  /** The identity: from metadata, else from state, else the connection id. */
  id: string;
  /** Public metadata of the user's first connection (e.g. a display name). */
  meta: Meta;
  /** State of the user's most recently updated connection with a state, else `null`. */
  state: State | null;
  /** The user's connection ids, in the order they were seen. */
  connections: string[];
  /** `connections.length`. */
  tabCount: number;
}

/**
 * Options of {@link createPresence}.
 *
 * @example
 * ```ts
 * import { PresenceClient } from "@presently/presently/client";
 * import type { CreatePresenceOptions } from "@presently/presently/presence";
 * const url = "wss://example.com/presence";
 * const client = new PresenceClient<{ name: string }, { userId: string }>(url);
 * const options: CreatePresenceOptions<{ name: string }, { userId: string }> = {
 *   client,
 *   room: "doc:42",
 *   metadataIdentifier: (meta) => meta.userId,
 *   storageKey: "presence:doc:42",
 * };
 * ```
 */
export interface CreatePresenceOptions<
  State = unknown,
  Meta extends Metadata = Metadata,
> extends UserIdentifiers<State, Meta> {
  /** The client to use (connected or not). */
  client: PresenceClient<State, Meta>;
  /** The room to join and watch. */
  room: string;
  /** `localStorage` key that keeps the last published state across reloads. */
  storageKey?: string;
  /** Called with the user list whenever it changes (bursts are coalesced). */
  onUpdate?: (users: PresenceUser<State, Meta>[]) => void;
}

/**
 * What {@link createPresence} returns.
 *
 * @example
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { presenceHandler } from "@presently/presently/deno";
 * import { PresenceClient } from "@presently/presently/client";
 * import { createPresence } from "@presently/presently/presence";
 *
 * const server = new PresenceServer();
 * server.trackPresence("lobby");
 * const handler = presenceHandler(server);
 * const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
 * const url = `ws://127.0.0.1:${http.addr.port}/`;
 * const client = new PresenceClient<{ name: string }>(url);
 * await client.connect();
 *
 * const presence = createPresence({ client, room: "lobby", stateIdentifier: (s) => s.name });
 * await presence.ready;
 * await presence.publish({ name: "Ada" });
 * console.log(presence.users.length); // 1
 * await presence.destroy();
 *
 * await client.close();
 * await server.close();
 * await http.shutdown();
 * ```
 */
export interface Presence<State = unknown, Meta extends Metadata = Metadata> {
  /** The users, in the order they were first seen. */
  readonly users: PresenceUser<State, Meta>[];
  /** Resolves once joined and subscribed; rejects with a `PresenceError`. */
  readonly ready: Promise<void>;
  /**
   * Publish this connection's full state (and keep it in `localStorage`
   * under `storageKey`).
   *
   * @param state The new state.
   * @returns The publish result; never rejects.
   */
  publish(state: State): Promise<PublishResult>;
  /**
   * Unsubscribe and leave the room.
   *
   * @returns Resolves once the room is left.
   */
  destroy(): Promise<void>;
}

/** One connection as the user views see it: metadata, state, when the state last changed. */
export type Conn<State, Meta> = { m: Meta; s: State | null; t: number };

/** How connections map to users. */
export interface UserIdentifiers<State, Meta> {
  /** The user id carried in a connection's state, if any. */
  stateIdentifier?: ((state: State) => string | null | undefined) | undefined;
  /** The user id carried in a connection's metadata, if any (checked first). */
  metadataIdentifier?: ((meta: Meta) => string | null | undefined) | undefined;
}

/**
 * Group connections into users, keeping the users of `previous` in their
 * place. A user's state is that of its most recently updated connection.
 */
export function groupUsers<State, Meta extends Metadata>(
  conns: Map<string, Conn<State, Meta>>,
  previous: PresenceUser<State, Meta>[],
  { metadataIdentifier, stateIdentifier }: UserIdentifiers<State, Meta>,
): PresenceUser<State, Meta>[] {
  // Seed with the previous order so users keep their place.
  const byId = new Map<string, PresenceUser<State, Meta> | undefined>(
    previous.map((u) => [u.id, undefined]),
  );
  const at = new Map<string, number>();
  for (const [cid, c] of conns) {
    const id = metadataIdentifier?.(c.m) ??
      (c.s === null ? null : stateIdentifier?.(c.s)) ?? cid;
    let u = byId.get(id);
    if (!u) byId.set(id, u = { id, meta: c.m, state: null, connections: [], tabCount: 0 });
    u.tabCount = u.connections.push(cid);
    if (c.s !== null && c.t >= (at.get(id) ?? 0)) {
      at.set(id, c.t);
      u.state = c.s;
    }
  }
  return [...byId.values()].filter((u) => u !== undefined);
}

/**
 * Apply a presence update to a connection map; `false` when it changed
 * nothing a user view shows.
 */
export function applyToConns<State, Meta extends Metadata>(
  conns: Map<string, Conn<State, Meta>>,
  u: PresenceUpdate<State, Meta>,
  tick: () => number,
): boolean {
  if (u.type === "join") conns.set(u.connectionId, { m: u.meta, s: null, t: 0 });
  else if (u.type === "leave") conns.delete(u.connectionId);
  else if (u.type === "state") {
    const c = conns.get(u.connectionId);
    if (!c) return false;
    c.s = u.state;
    c.t = tick();
  } else return false;
  return true;
}

const storage = (): Storage | undefined => {
  // Absent in Bun, may throw in Deno without a location.
  try {
    return globalThis.localStorage;
  } catch {
    return undefined;
  }
};

/**
 * Join a room and keep a user-level view of it: connections are grouped by
 * `metadataIdentifier(meta) ?? stateIdentifier(state) ?? connectionId`.
 * A state saved under `storageKey` (from an earlier page load) is
 * republished once joined; the client republishes it after reconnects.
 *
 * @param options The client, room, identifiers, storage key and callback.
 * @returns The live user list, `publish`, `destroy` and `ready`.
 *
 * @example
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { presenceHandler } from "@presently/presently/deno";
 * import { PresenceClient } from "@presently/presently/client";
 * import { createPresence } from "@presently/presently/presence";
 *
 * // Every connection of user "ada" (e.g. two tabs) counts as one user.
 * const server = new PresenceServer({ authenticate: () => ({ userId: "ada" }) });
 * server.trackPresence(/^doc:/);
 * const handler = presenceHandler(server);
 * const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
 * const url = `ws://127.0.0.1:${http.addr.port}/`;
 * const tab1 = new PresenceClient<{ name: string }, { userId: string }>(url);
 * const tab2 = new PresenceClient<{ name: string }, { userId: string }>(url);
 * await Promise.all([tab1.connect(), tab2.connect()]);
 *
 * const bothTabs = Promise.withResolvers<void>();
 * const presence = createPresence({
 *   client: tab1,
 *   room: "doc:42",
 *   metadataIdentifier: (meta) => meta.userId,
 *   onUpdate: (users) => {
 *     console.log(users.map((u) => `${u.id} (${u.tabCount})`)); // [], ["ada (1)"], ["ada (2)"]
 *     if (users[0]?.tabCount === 2) bothTabs.resolve();
 *   },
 * });
 * await presence.ready;
 * await presence.publish({ name: "Ada" });
 * await tab2.joinRoom("doc:42");
 * await bothTabs.promise;
 *
 * await presence.destroy();
 * await Promise.all([tab1.close(), tab2.close()]);
 * await server.close();
 * await http.shutdown();
 * ```
 */
export function createPresence<
  State = unknown,
  Meta extends Metadata = Metadata,
>(
  options: CreatePresenceOptions<State, Meta>,
): Presence<State, Meta> {
  const { client, room, storageKey, onUpdate } = options;
  // Per connection: metadata, state, and when the state last changed.
  const conns = new Map<string, Conn<State, Meta>>();
  let users: PresenceUser<State, Meta>[] = [];
  let dirty = false, queued = false, dead = false, clock = 0;
  const tick = () => ++clock;

  const list = (): PresenceUser<State, Meta>[] => {
    if (dirty) {
      dirty = false;
      users = groupUsers(conns, users, options);
    }
    return users;
  };
  const changed = (): void => {
    dirty = true;
    if (onUpdate && !queued) {
      queued = true;
      queueMicrotask(() => {
        queued = false;
        if (!dead) onUpdate(list());
      });
    }
  };
  const on = (u: PresenceUpdate<State, Meta>): void => {
    if (applyToConns(conns, u, tick)) changed();
  };
  const publish = (state: State): Promise<PublishResult> => {
    try {
      if (storageKey) storage()?.setItem(storageKey, JSON.stringify(state));
    } catch { /* quota or privacy mode */ }
    return client.publishPresenceState(room, { state });
  };

  // One request joins and subscribes, so the roster and its updates start
  // from the same snapshot. This runs before the next socket message.
  const ready = client.joinRoom(room, on).then(async (r) => {
    if (r.error) throw r.error;
    for (const { id, meta } of r.present) {
      conns.set(id, { m: meta as Meta, s: r.states?.get(id) ?? null, t: tick() });
    }
    changed();
    let saved: State | undefined;
    try {
      const text = storageKey && storage()?.getItem(storageKey);
      if (text) saved = JSON.parse(text);
    } catch { /* unreadable storage or not JSON */ }
    if (saved !== undefined) await publish(saved);
  });
  // A failure is reported through `ready`; do not crash when nobody awaits it.
  ready.catch(() => {});

  return {
    get users() {
      return list();
    },
    ready,
    publish,
    async destroy() {
      dead = true;
      await client.leaveRoom(room, on);
    },
  };
}
