// Pure room-view sync (Phoenix style): snapshots and sequenced events in,
// presence updates out. No I/O, no timers.

import { applyMergePatch } from "../merge_patch.ts";
import type { Metadata, WireEvent, WireSnapshot } from "../protocol.ts";

/**
 * One change in a subscribed room, as delivered to `subscribePresence`
 * callbacks. `state` is the merged full state (`null` when cleared or expired).
 * `userOnline`/`userOffline` come with `users: true` subscriptions, `count`
 * with `mode: "count"` ones.
 *
 * @example
 * ```ts
 * import type { PresenceUpdate } from "@presently/presently/client";
 * function render(u: PresenceUpdate<{ typing: boolean }>): string {
 *   switch (u.type) {
 *     case "join": return `${u.connectionId} joined`;
 *     case "leave": return `${u.connectionId} left`;
 *     case "state": return `${u.connectionId} typing: ${u.state?.typing ?? false}`;
 *     case "count": return `${u.connections} connections`;
 *     default: return `${u.userId} ${u.type}`;
 *   }
 * }
 * ```
 */
export type PresenceUpdate<
  State = unknown,
  Meta extends Metadata = Metadata,
> =
  | {
    type: "join";
    room: string;
    connectionId: string;
    meta: Meta;
    seq: number;
  }
  | { type: "leave"; room: string; connectionId: string; seq: number }
  | {
    type: "state";
    room: string;
    connectionId: string;
    state: State | null;
    seq: number;
  }
  | { type: "userOnline" | "userOffline"; room: string; userId: string }
  | { type: "count"; room: string; connections: number; users: number };

/**
 * The client-side view of one room. Mutated only by {@link applySnapshot}
 * and {@link applyEvent}.
 *
 * @example
 * ```ts
 * import { createRoomView, type RoomView } from "@presently/presently/client";
 * const view: RoomView<{ typing: boolean }> = createRoomView("lobby");
 * console.log(view.members.size, view.states.size);
 * ```
 */
export interface RoomView<State = unknown, Meta extends Metadata = Metadata> {
  /** The room name, copied into every update. */
  room: string;
  /** A snapshot has been applied at least once. */
  ready: boolean;
  /**
   * Events were missed (a gap, or the buffer overflowed): a fresh snapshot is
   * needed, and events are buffered until it arrives.
   */
  resync: boolean;
  /** The sequence number of the last applied event or snapshot. */
  seq: number;
  /** Present connections and their metadata. */
  members: Map<string, Meta>;
  /** Connection states (connections without a state are absent). */
  states: Map<string, State>;
  /** Online user ids, from snapshots that list them and `u` events. */
  users: Set<string>;
  /** Events waiting for a snapshot. */
  buffer: WireEvent[];
  /** Most events kept in `buffer`; the oldest are dropped past it. */
  maxBuffer: number;
}

/**
 * What {@link applyEvent} returns.
 *
 * @example
 * ```ts
 * import { applyEvent, createRoomView } from "@presently/presently/client";
 * const { updates, gap } = applyEvent(createRoomView("lobby"), [1, "l", "a"]);
 * console.log(updates.length, gap); // 0 false: buffered until a snapshot
 * ```
 */
export interface ApplyEventResult<
  State = unknown,
  Meta extends Metadata = Metadata,
> {
  /** The updates to emit (empty when the event was buffered or a duplicate). */
  updates: PresenceUpdate<State, Meta>[];
  /** `true` when the view missed events: the caller must resubscribe. */
  gap: boolean;
}

/**
 * Create an empty room view that buffers events until its first snapshot.
 *
 * @param room The room name, copied into every update.
 * @param maxBuffer Most events buffered while waiting for a snapshot.
 * @returns A view that is not ready yet.
 *
 * @example
 * ```ts
 * import { createRoomView } from "@presently/presently/client";
 * const view = createRoomView("lobby");
 * console.log(view.ready); // false
 * ```
 */
export function createRoomView<
  State = unknown,
  Meta extends Metadata = Metadata,
>(room = "", maxBuffer = 1000): RoomView<State, Meta> {
  return {
    room,
    ready: false,
    resync: false,
    seq: 0,
    members: new Map(),
    states: new Map(),
    users: new Set(),
    buffer: [],
    maxBuffer,
  };
}

/**
 * Replace the view with a snapshot, then replay buffered events newer than it.
 * On a view that was ready before (a resync) the returned updates are the
 * difference between the old and the new view, so a connection present in
 * both is never reported as a leave plus a join. A snapshot with `k` (sent
 * in a store reset's settle window) keeps the members, states and users the
 * view has that it lacks, until a snapshot without `k`.
 *
 * @param view The view to update.
 * @param snap The snapshot from a `sub` answer or a `snap` frame.
 * @returns The updates to emit: the diff (resync only), then replayed events.
 *
 * @example
 * ```ts
 * import { applySnapshot, createRoomView } from "@presently/presently/client";
 * const view = createRoomView("lobby");
 * applySnapshot(view, { seq: 3, present: [{ id: "a", meta: {} }], states: [] });
 * console.log([...view.members.keys()]); // ["a"]
 * ```
 */
export function applySnapshot<State, Meta extends Metadata>(
  view: RoomView<State, Meta>,
  snap: WireSnapshot,
): PresenceUpdate<State, Meta>[] {
  const { room, members: oldM, states: oldS, users: oldU } = view;
  const seq = snap.seq;
  const members = new Map(
    snap.present.map((p) => [p.id, p.meta as Meta] as const),
  );
  const states = new Map(snap.states as Array<[string, State]>);
  // A snapshot without a user list (no `users: true`) leaves the set alone.
  const users = snap.users ? new Set(snap.users) : oldU;
  const out: PresenceUpdate<State, Meta>[] = [];
  if (view.ready) {
    // A snapshot with `k` comes in a store reset's settle window: the
    // server's view may lack members whose instances have not registered
    // them again yet. Ours are kept until the snapshot that ends the window.
    for (const [id, meta] of oldM) {
      if (members.has(id)) continue;
      if (snap.k) {
        members.set(id, meta);
        if (oldS.has(id)) states.set(id, oldS.get(id)!);
      } else out.push({ type: "leave", room, connectionId: id, seq });
    }
    for (const [id, meta] of members) {
      if (!oldM.has(id)) {
        out.push({ type: "join", room, connectionId: id, meta, seq });
      }
    }
    // Only members' states matter: a state without a member is not shown.
    for (const id of members.keys()) {
      const state = states.get(id) ?? null;
      if (JSON.stringify(oldS.get(id) ?? null) != JSON.stringify(state)) {
        out.push({ type: "state", room, connectionId: id, state, seq });
      }
    }
    for (const userId of oldU) {
      if (users.has(userId)) continue;
      if (snap.k) users.add(userId);
      else out.push({ type: "userOffline", room, userId });
    }
    for (const userId of users) {
      if (!oldU.has(userId)) out.push({ type: "userOnline", room, userId });
    }
  }
  Object.assign(view, {
    members,
    states,
    users,
    seq,
    ready: true,
    resync: false,
  });
  const buffered = view.buffer;
  view.buffer = [];
  // Only what follows the snapshot without a gap: a buffered event past a
  // gap came from another stream (an instance left behind, a store before
  // its restart) and would make every later snapshot a gap again. A real
  // gap shows again at the next event.
  for (const ev of buffered) {
    if (ev[0] > seq && ev[0] <= view.seq + 1) out.push(...applyEvent(view, ev).updates);
  }
  return out;
}

/**
 * Apply one event. Before the first snapshot (or while a resync is pending)
 * the event is buffered; afterwards duplicates (`seq <= view.seq`) are
 * dropped, and a gap (`seq > view.seq + 1`) is reported instead of applied.
 * `u` events do not advance the sequence.
 *
 * @param view The view to update.
 * @param ev The event tuple from an `ev` frame.
 * @returns The updates to emit, and whether the caller must resubscribe.
 *
 * @example
 * ```ts
 * import { applyEvent, applySnapshot, createRoomView } from "@presently/presently/client";
 * const view = createRoomView("lobby");
 * applySnapshot(view, { seq: 1, present: [], states: [] });
 * const { updates } = applyEvent(view, [2, "j", "a", { name: "Ada" }]);
 * console.log(updates[0]?.type); // "join"
 * ```
 */
export function applyEvent<State, Meta extends Metadata>(
  view: RoomView<State, Meta>,
  ev: WireEvent,
): ApplyEventResult<State, Meta> {
  const [seq, kind, id, value] = ev;
  const { room, members, states, users } = view;
  const updates: PresenceUpdate<State, Meta>[] = [];
  if (!view.ready || view.resync || (kind != "u" && seq > view.seq + 1)) {
    // Dropping the oldest keeps memory bounded; the replay after the next
    // snapshot finds out whether a dropped event was actually needed.
    if (view.buffer.push(ev) > view.maxBuffer) {
      view.buffer.shift();
      view.resync = true;
    }
    if (view.ready) view.resync = true;
    return { updates, gap: view.ready };
  }
  if (kind == "u") {
    // No news for a user already shown so: one a `k` snapshot kept comes
    // online again when its member is registered again.
    if (users.has(id) != !!value) {
      if (value) users.add(id);
      else users.delete(id);
      updates.push({
        type: value ? "userOnline" : "userOffline",
        room,
        userId: id,
      });
    }
  } else if (seq > view.seq) {
    view.seq = seq;
    if (kind == "j") {
      // A member kept through a server's store reset joins again: no news.
      if (!members.has(id)) {
        updates.push({
          type: "join",
          room,
          connectionId: id,
          meta: value as Meta,
          seq,
        });
      }
      members.set(id, value as Meta);
    } else if (kind == "l") {
      // One that is not a member (a ghost a server left out of its view after
      // a store rollback, dropped now) leaves nothing: no news either.
      if (members.delete(id)) {
        states.delete(id);
        updates.push({ type: "leave", room, connectionId: id, seq });
      }
    } else if (members.has(id)) {
      // Only members have a state: one for anyone else would outlive them.
      const state = (kind == "p" ? applyMergePatch(states.get(id) ?? null, value) : value) as
        | State
        | null;
      if (state === null) {
        states.delete(id);
      } else states.set(id, state);
      updates.push({ type: "state", room, connectionId: id, state, seq });
    }
  }
  return { updates, gap: false };
}
