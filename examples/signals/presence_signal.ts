// A framework-free presence store on `client.presence(room)`: `get()` returns an
// immutable snapshot `{ status, members, states }` and `subscribe()` tells you
// when it changes. It only watches (it never joins); for a store that joins on
// mount and knows `self` and `others`, use `roomStore` from
// `@presently/presently/presence` (recipes per framework in examples/frameworks).

import type { Metadata, PresenceClient, PresenceSync, PresenceUpdate } from "../../client.ts";

/** One room as the UI sees it. A new object on every change, the same one otherwise. */
export interface PresenceSnapshot<State = unknown, Meta extends Metadata = Metadata> {
  /**
   * `idle` before the first subscriber, `loading` until the room's first sync,
   * `ready` after it, `error` when the server refused (see `error`), `closed`
   * when the client was closed.
   */
  status: "idle" | "loading" | "ready" | "error" | "closed";
  /** Present connections and their public metadata, in join order. */
  members: ReadonlyMap<string, Meta>;
  /** States by connection id (connections without a state are absent). */
  states: ReadonlyMap<string, State>;
  /** Why the subscription failed, when `status` is `error`. */
  error: Error | null;
}

/** A subscribable presence store for one room of one client. */
export interface PresenceSignal<State = unknown, Meta extends Metadata = Metadata> {
  /** The current snapshot. */
  get: () => PresenceSnapshot<State, Meta>;
  /**
   * Call `listener` after each change. The first subscriber starts the
   * room's stream; it stops shortly after the last one leaves.
   */
  subscribe: (listener: () => void) => () => void;
}

/** A chunk of `client.presence(room)`. */
export type PresenceChunk<State = unknown, Meta extends Metadata = Metadata> =
  | PresenceSync<State>
  | PresenceUpdate<State, Meta>;

/** The snapshot before anything is known. */
export function emptySnapshot<State = unknown, Meta extends Metadata = Metadata>(
  status: PresenceSnapshot["status"] = "idle",
): PresenceSnapshot<State, Meta> {
  return { status, members: new Map(), states: new Map(), error: null };
}

/**
 * Apply one chunk of a presence stream to a snapshot. Pure: returns a new
 * snapshot when something changed, the same one otherwise.
 *
 * @param snap The current snapshot.
 * @param chunk A `sync` chunk or an update.
 * @returns The next snapshot.
 */
export function reducePresence<State, Meta extends Metadata>(
  snap: PresenceSnapshot<State, Meta>,
  chunk: PresenceChunk<State, Meta>,
): PresenceSnapshot<State, Meta> {
  switch (chunk.type) {
    case "sync":
      return {
        status: "ready",
        members: new Map(chunk.members.map((m) => [m.id, m.meta as Meta])),
        states: new Map(chunk.states),
        error: null,
      };
    case "join": {
      const members = new Map(snap.members).set(chunk.connectionId, chunk.meta);
      return { ...snap, members };
    }
    case "leave": {
      if (!snap.members.has(chunk.connectionId) && !snap.states.has(chunk.connectionId)) {
        return snap;
      }
      const members = new Map(snap.members);
      const states = new Map(snap.states);
      members.delete(chunk.connectionId);
      states.delete(chunk.connectionId);
      return { ...snap, members, states };
    }
    case "state": {
      if (chunk.state === null && !snap.states.has(chunk.connectionId)) return snap;
      const states = new Map(snap.states);
      if (chunk.state === null) states.delete(chunk.connectionId);
      else states.set(chunk.connectionId, chunk.state);
      return { ...snap, states };
    }
    default: // userOnline / userOffline / count: not part of this view
      return snap;
  }
}

// One store per client and room: the client keeps one subscription per room,
// so two streams on one room would steal each other's updates.
const cache = new WeakMap<object, Map<string, PresenceSignal<never, never>>>();

/**
 * The presence store of `room` on `client`, created on first use and shared
 * afterwards. It only watches: join the room (or not) with the client itself.
 * Do not also call `subscribePresence(room)` or `joinRoom(room, onUpdate)` on
 * the same client and room (either replaces the store's subscription), and
 * note that `leaveRoom(room)` ends the room's subscription too.
 *
 * @param client A `PresenceClient` (connected or not: requests are queued).
 * @param room The room to watch.
 * @returns The store: `get()` and `subscribe()`.
 *
 * @example
 * ```ts ignore
 * const lobby = presenceSignal(client, "room:lobby");
 * const stop = lobby.subscribe(() => {
 *   const { members, states } = lobby.get();
 *   render([...members].map(([id, meta]) => ({ id, meta, state: states.get(id) })));
 * });
 * ```
 */
export function presenceSignal<State = unknown, Meta extends Metadata = Metadata>(
  client: PresenceClient<State, Meta>,
  room: string,
): PresenceSignal<State, Meta> {
  let rooms = cache.get(client);
  if (!rooms) cache.set(client, rooms = new Map());
  const cached = rooms.get(room) as PresenceSignal<State, Meta> | undefined;
  if (cached) return cached;

  let snap = emptySnapshot<State, Meta>();
  const listeners = new Set<() => void>();
  let reader: ReadableStreamDefaultReader<PresenceChunk<State, Meta>> | null = null;
  let stopTimer: ReturnType<typeof setTimeout> | undefined;

  const set = (next: PresenceSnapshot<State, Meta>) => {
    if (next === snap) return;
    snap = next;
    for (const listener of [...listeners]) listener();
  };
  const start = async () => {
    set({ ...snap, status: "loading", error: null });
    const r = reader = client.presence(room).getReader();
    try {
      for (;;) {
        const { done, value } = await r.read();
        if (reader !== r) return; // stopped meanwhile
        if (done) return set({ ...snap, status: "closed" });
        set(reducePresence(snap, value));
      }
    } catch (error) {
      if (reader === r) set({ ...snap, status: "error", error: error as Error });
    } finally {
      if (reader === r) reader = null;
    }
  };
  const stop = () => {
    const r = reader;
    reader = null;
    snap = emptySnapshot();
    void r?.cancel().catch(() => {}); // unsubscribes from the room
  };

  const signal: PresenceSignal<State, Meta> = {
    get: () => snap,
    subscribe: (listener) => {
      listeners.add(listener);
      clearTimeout(stopTimer);
      // The first subscriber (again, after a stop or the end of a stream) starts it.
      if (reader === null && listeners.size === 1) void start();
      return () => {
        if (!listeners.delete(listener) || listeners.size > 0) return;
        // Linger a tick: React's StrictMode unsubscribes and subscribes again at once.
        stopTimer = setTimeout(() => listeners.size === 0 && stop(), 0);
      };
    },
  };
  rooms.set(room, signal as PresenceSignal<never, never>);
  return signal;
}
