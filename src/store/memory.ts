// The embedded, single-process PresenceStore: Maps, a per-room seq and an expiry heap.
// Methods are async with nothing to await so every throw becomes a rejection.
// deno-lint-ignore-file require-await

import type { Metadata, PresentEntry } from "../protocol.ts";
import { PresenceError } from "../errors.ts";
import type {
  HookDelivery,
  HookEventType,
  LeaveReason,
  ListRoomsOptions,
  OwnedEntries,
  PresenceEvent,
  PresenceStore,
  RoomCount,
  RoomPage,
  RoomSnapshot,
  StateWrite,
  StoreListener,
} from "./types.ts";
import { Listeners } from "./_listeners.ts";
import { applyWrite, stateEvent } from "./_state.ts";
import { hookKey, hookTakes, hookTypes, pageSize, widenHookTypes } from "./_queries.ts";

/**
 * Options for {@linkcode MemoryPresenceStore}.
 *
 * @example
 * ```ts
 * import {
 *   MemoryPresenceStore,
 *   type MemoryPresenceStoreOptions,
 *   PresenceServer,
 * } from "@presently/presently";
 * const options: MemoryPresenceStoreOptions = {
 *   onError: (error, event) => console.warn(`A listener failed on a ${event?.type} event`, error),
 * };
 * const store = new MemoryPresenceStore(options);
 * const server = new PresenceServer({ store });
 * await server.close();
 * await store.close();
 * ```
 */
export interface MemoryPresenceStoreOptions {
  /**
   * Called when a `subscribe` listener throws. The error never reaches the
   * mutation or the other listeners. Defaults to `console.error`.
   */
  onError?: (error: unknown, event: PresenceEvent | null) => void;
}

interface Room {
  name: string;
  seq: number;
  /** Insertion order is join order. Each member holds its own state. */
  members: Map<string, Member>;
  /** Connections per user present. */
  users: Map<string, number>;
  /** Members without a user (each counts as a user of its own). */
  anonymous: number;
}

interface Member {
  room: Room;
  id: string;
  /** The instance that wrote it. */
  owner: string;
  meta: Metadata;
  user: string | null;
  /** The seq of its join. */
  seq: number;
  /**
   * Its state (`undefined`: none). Kept on the member, not in a map of
   * states per room: a map entry costs about 90 B on Bun.
   */
  value: unknown;
  /** When its state expires (`null`: it does not, or there is none). */
  expiry: Expiry | null;
}

/**
 * A state's expiry, in the expiry heap while it exists. Apart from its
 * member, which then holds one field for it (states without an expiry are
 * the usual case).
 */
interface Expiry {
  readonly member: Member;
  expiresAt: number;
  /** Position in the expiry heap. */
  slot: number;
}

/** A presence hook's queue: events by idempotency key, in arrival order. */
interface HookQueue {
  types: string;
  queue: Map<string, { event: PresenceEvent; attempt: number; dueAt: number }>;
}

interface MetaEntry {
  meta: Metadata;
  /** The instance that wrote it. */
  owner: string;
}

/** How long the last seq of a forgotten room is kept, per generation (ms). */
const FORGET_MS = 30_000;

/**
 * The default {@linkcode PresenceStore}: everything lives in this process.
 * Join, leave and state writes are O(1) (plus the size of a patch), snapshots
 * are O(members), and `sweep` is O(expired · log states) thanks to an indexed
 * min-heap of expiry times (plus a scan of all members and metadata for each
 * instance whose lease lapsed: no per-instance index is kept, to save memory
 * per connection). Events go synchronously to every `subscribe`
 * listener, whatever `watchRoom` says, since every event is local.
 *
 * @example
 * ```ts
 * import { MemoryPresenceStore } from "@presently/presently";
 * const store = new MemoryPresenceStore();
 * store.subscribe((event) => console.log(event.type, event.seq));
 * await store.join("lobby", "c1", "server-1", { name: "Ada" }, Date.now());
 * const snap = await store.snapshot("lobby", Date.now());
 * console.log(snap.present); // [{ id: "c1", meta: { name: "Ada" } }]
 * await store.close();
 * ```
 */
export class MemoryPresenceStore implements PresenceStore {
  #rooms = new Map<string, Room>();
  /**
   * Last seq of watched rooms that emptied, so a watcher's view never sees
   * seq go back. Unwatched empty rooms are forgotten: memory stays bounded
   * however many distinct room names come and go.
   */
  #idleSeq = new Map<string, number>();
  /**
   * Last seq of rooms forgotten lately (two generations of FORGET_MS): an
   * event of a room's earlier life may still be on its way to a view that
   * watches it again, and must then be older than anything new, never a
   * next seq. Bounded by how many room names churn per minute.
   */
  #forgotten = new Map<string, number>();
  #forgottenOld = new Map<string, number>();
  #forgottenSince = -Infinity;
  /** watchRoom reference counts. */
  #watched = new Map<string, number>();
  #leases = new Map<string, number>();
  /** Instances whose lease this store has recorded at least once. */
  #held = new Set<string>();
  #resets = new Listeners<string | undefined>((error) => this.#onError(error, null));
  #metadata = new Map<string, MetaEntry>();
  /** Rooms per user, with the user's connection count in each. */
  #userRooms = new Map<string, Map<string, number>>();
  #hooks = new Map<string, HookQueue>();
  /** The expiries of states, soonest first. */
  #heap: Expiry[] = [];
  #listeners = new Listeners<PresenceEvent>((error, event) => this.#onError(error, event));
  #queue: PresenceEvent[] = [];
  #emitting = false;
  #closed = false;
  #onError: (error: unknown, event: PresenceEvent | null) => void;

  /**
   * Create an empty store.
   *
   * @param options Optional error hook for throwing listeners.
   *
   * @example
   * ```ts
   * import { MemoryPresenceStore } from "@presently/presently";
   * const store = new MemoryPresenceStore({
   *   onError: (error) => console.warn("listener failed", error),
   * });
   * await store.close();
   * ```
   */
  constructor(options: MemoryPresenceStoreOptions = {}) {
    this.#onError = options.onError ??
      ((error) => console.error("A presence store listener threw:", error));
  }

  async renewLease(
    instanceId: string,
    ttlMs: number,
    now: number,
  ): Promise<void> {
    this.#assertOpen();
    // Held before and gone now: reaped while alive (the process stalled).
    const lost = this.#held.has(instanceId) && !this.#leases.has(instanceId);
    this.#held.add(instanceId);
    this.#leases.set(instanceId, now + ttlMs);
    if (lost) queueMicrotask(() => this.#resets.emit(instanceId));
  }

  onReset(listener: (instanceId?: string) => void): () => void {
    return this.#resets.add(listener);
  }

  async releaseLease(instanceId: string): Promise<void> {
    this.#assertOpen();
    this.#held.delete(instanceId);
    this.#reap(instanceId, "close", Date.now());
  }

  async join(
    room: string,
    connectionId: string,
    instanceId: string,
    meta: Metadata,
    now: number,
    userId: string | null = null,
  ): Promise<PresenceEvent | null> {
    this.#assertOpen();
    let record = this.#rooms.get(room);
    if (record === undefined) {
      record = this.#openRoom(room);
    } else if (record.members.has(connectionId)) {
      return null;
    }
    const user = userId ?? null;
    const member: Member = {
      room: record,
      id: connectionId,
      owner: instanceId,
      meta,
      user,
      seq: ++record.seq,
      value: undefined,
      expiry: null,
    };
    record.members.set(connectionId, member);
    const event: PresenceEvent = {
      type: "join",
      room,
      connectionId,
      seq: member.seq,
      meta,
      instance: instanceId,
      timestamp: now,
    };
    if (user === null) record.anonymous++;
    else {
      const n = record.users.get(user) ?? 0;
      record.users.set(user, n + 1);
      let rooms = this.#userRooms.get(user);
      if (rooms === undefined) this.#userRooms.set(user, rooms = new Map());
      rooms.set(room, (rooms.get(room) ?? 0) + 1);
      event.user = user;
      if (n === 0) event.firstOfUser = true;
    }
    this.#emit(event);
    return event;
  }

  async leave(
    room: string,
    connectionId: string,
    reason: LeaveReason,
    now: number,
  ): Promise<PresenceEvent | null> {
    this.#assertOpen();
    const member = this.#rooms.get(room)?.members.get(connectionId);
    if (member === undefined) return null;
    return this.#remove(member, reason, now);
  }

  async setState(
    room: string,
    connectionId: string,
    write: StateWrite,
    expiresAt: number | null,
    now: number,
  ): Promise<PresenceEvent | null | "not_member"> {
    this.#assertOpen();
    const record = this.#rooms.get(room);
    const member = record?.members.get(connectionId);
    if (record === undefined || member === undefined) return "not_member";
    if (member.expiry !== null && member.expiry.expiresAt <= now) this.#expire(member, now);
    const { value, patch } = applyWrite(write, member.value);
    if (value === null) {
      if (member.value === undefined) return null;
      this.#dropState(member);
      const event = stateEvent(room, connectionId, ++record.seq, null, now);
      this.#emit(event);
      return event;
    }
    member.value = value;
    this.#setExpiry(member, expiresAt ?? Infinity);
    const event = stateEvent(room, connectionId, ++record.seq, value, now, { patch });
    this.#emit(event);
    return event;
  }

  async snapshot(room: string, now: number): Promise<RoomSnapshot> {
    this.#assertOpen();
    const record = this.#rooms.get(room);
    if (record === undefined) {
      return {
        seq: this.#lastSeq(room),
        present: [],
        states: new Map(),
      };
    }
    const present: PresentEntry[] = [];
    const users = new Map<string, string>();
    const joined = new Map<string, number>();
    const states = new Map<string, unknown>();
    for (const member of record.members.values()) {
      present.push({ id: member.id, meta: member.meta });
      joined.set(member.id, member.seq);
      if (member.user !== null) users.set(member.id, member.user);
      const expiry = member.expiry;
      if (member.value !== undefined && (expiry === null || expiry.expiresAt > now)) {
        states.set(member.id, member.value);
      }
    }
    return { seq: record.seq, present, states, users, joined };
  }

  /**
   * What `instanceId` owns here: its memberships and the metadata it wrote.
   * O(all members and metadata): asked only after a store reset.
   */
  async owned(instanceId: string): Promise<OwnedEntries> {
    this.#assertOpen();
    return {
      members: this.#membersOf(instanceId).map((m) => ({ room: m.room.name, connectionId: m.id })),
      metadata: this.#metadataOf(instanceId),
    };
  }

  /** Connections and distinct users in a room, O(1). */
  async count(room: string, _now: number): Promise<RoomCount> {
    this.#assertOpen();
    const record = this.#rooms.get(room);
    if (record === undefined) return { connections: 0, users: 0 };
    return { connections: record.members.size, users: record.users.size + record.anonymous };
  }

  /** Non-empty rooms by name: O(rooms) per page (they are sorted each call). */
  async listRooms(options: ListRoomsOptions = {}): Promise<RoomPage> {
    this.#assertOpen();
    const prefix = options.prefix ?? "";
    const after = options.cursor ?? "";
    const limit = pageSize(options);
    const names: string[] = [];
    for (const name of this.#rooms.keys()) {
      if (name.startsWith(prefix) && (after === "" || name > after)) names.push(name);
    }
    names.sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    const rooms = names.slice(0, limit);
    return { rooms, cursor: names.length > limit ? rooms[rooms.length - 1]! : null };
  }

  /** The rooms where `userId` has a connection, ascending. */
  async userRooms(userId: string): Promise<string[]> {
    this.#assertOpen();
    const rooms = [...(this.#userRooms.get(userId)?.keys() ?? [])];
    return rooms.sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  }

  /** Queue every event of `types` for hook `name` from now on. */
  async registerHook(name: string, types: readonly HookEventType[]): Promise<void> {
    this.#assertOpen();
    const letters = hookTypes(types);
    const hook = this.#hooks.get(name);
    if (hook === undefined) this.#hooks.set(name, { types: letters, queue: new Map() });
    else hook.types = widenHookTypes(hook.types, letters);
  }

  /** Stop queueing for hook `name` and drop its queue. */
  async dropHook(name: string): Promise<void> {
    this.#assertOpen();
    this.#hooks.delete(name);
  }

  /** Claim due events of hook `name`, hidden until `now + leaseMs`. */
  async claimHooks(
    name: string,
    now: number,
    leaseMs: number,
    max: number,
  ): Promise<HookDelivery[]> {
    this.#assertOpen();
    const out: HookDelivery[] = [];
    const hook = this.#hooks.get(name);
    if (hook === undefined) return out;
    for (const [key, entry] of hook.queue) {
      if (out.length >= max) break;
      if (entry.dueAt > now) continue;
      entry.dueAt = now + leaseMs;
      entry.attempt++;
      out.push({ key, event: entry.event, attempt: entry.attempt });
    }
    return out;
  }

  /** Remove a delivered event, or make a failed one due at `retryAt`. */
  async settleHook(name: string, key: string, retryAt: number | null): Promise<void> {
    this.#assertOpen();
    const queue = this.#hooks.get(name)?.queue;
    const entry = queue?.get(key);
    if (entry === undefined) return;
    if (retryAt === null) queue!.delete(key);
    else entry.dueAt = retryAt;
  }

  async setMetadata(
    connectionId: string,
    instanceId: string,
    meta: Metadata,
  ): Promise<void> {
    this.#assertOpen();
    const existing = this.#metadata.get(connectionId);
    if (existing === undefined) this.#metadata.set(connectionId, { meta, owner: instanceId });
    else {
      existing.meta = meta;
      existing.owner = instanceId;
    }
  }

  async getMetadata(connectionId: string): Promise<Metadata | null> {
    this.#assertOpen();
    return this.#metadata.get(connectionId)?.meta ?? null;
  }

  async deleteMetadata(connectionId: string): Promise<void> {
    this.#assertOpen();
    this.#metadata.delete(connectionId);
  }

  subscribe(listener: StoreListener): () => void {
    return this.#listeners.add(listener);
  }

  watchRoom(room: string): () => void {
    this.#watched.set(room, (this.#watched.get(room) ?? 0) + 1);
    // Watched while empty: its seq holds from now on, whatever is forgotten.
    if (!this.#rooms.has(room) && !this.#idleSeq.has(room)) {
      this.#idleSeq.set(room, this.#lastSeq(room));
    }
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.#watched.get(room) ?? 1) - 1;
      if (n > 0) this.#watched.set(room, n);
      else {
        this.#watched.delete(room);
        const seq = this.#idleSeq.get(room);
        if (seq !== undefined) this.#forget(room, seq);
        this.#idleSeq.delete(room);
      }
    };
  }

  async sweep(now: number): Promise<void> {
    this.#assertOpen();
    if (now - this.#forgottenSince >= FORGET_MS) {
      this.#forgottenSince = now;
      this.#forgottenOld = this.#forgotten;
      this.#forgotten = new Map();
    }
    // Reap first: a reaped member's state goes with its leave, no extra event.
    let lapsed: string[] | undefined;
    for (const [instanceId, expiresAt] of this.#leases) {
      if (now >= expiresAt) (lapsed ??= []).push(instanceId);
    }
    if (lapsed !== undefined) {
      for (const instanceId of lapsed) this.#reap(instanceId, "instance", now);
    }
    const heap = this.#heap;
    while (heap.length > 0 && heap[0]!.expiresAt <= now) {
      this.#expire(heap[0]!.member, now);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#rooms.clear();
    this.#idleSeq.clear();
    this.#forgotten.clear();
    this.#forgottenOld.clear();
    this.#watched.clear();
    this.#leases.clear();
    this.#held.clear();
    this.#resets.clear();
    this.#metadata.clear();
    this.#userRooms.clear();
    this.#hooks.clear();
    this.#heap = [];
    this.#listeners.clear();
    this.#queue = [];
  }

  // -------------------------------------------------------------------------

  #assertOpen(): void {
    if (this.#closed) {
      throw new PresenceError("closed", "The presence store is closed");
    }
  }

  #openRoom(name: string): Room {
    const seq = this.#lastSeq(name);
    this.#idleSeq.delete(name);
    const record: Room = {
      name,
      seq,
      members: new Map(),
      users: new Map(),
      anonymous: 0,
    };
    this.#rooms.set(name, record);
    return record;
  }

  /** The seq an empty room goes on from (0 for a name never seen lately). */
  #lastSeq(name: string): number {
    return this.#idleSeq.get(name) ?? this.#forgotten.get(name) ??
      this.#forgottenOld.get(name) ?? 0;
  }

  #forget(name: string, seq: number): void {
    this.#forgotten.set(name, seq);
  }

  /**
   * An instance's memberships, room by room in join order. A scan, not an
   * index: an index per instance costs every connection a Set entry (about
   * 100 B on Bun) for what only a reap or a reset asks.
   */
  #membersOf(instanceId: string): Member[] {
    const out: Member[] = [];
    for (const room of this.#rooms.values()) {
      for (const member of room.members.values()) if (member.owner === instanceId) out.push(member);
    }
    return out;
  }

  /** The connections whose metadata an instance wrote (a scan, as above). */
  #metadataOf(instanceId: string): string[] {
    const out: string[] = [];
    for (const [id, entry] of this.#metadata) if (entry.owner === instanceId) out.push(id);
    return out;
  }

  #remove(member: Member, reason: LeaveReason, now: number): PresenceEvent {
    const room = member.room;
    room.members.delete(member.id);
    this.#dropState(member);
    const event: PresenceEvent = {
      type: "leave",
      room: room.name,
      connectionId: member.id,
      seq: ++room.seq,
      reason,
      timestamp: now,
    };
    const user = member.user;
    if (user === null) room.anonymous--;
    else {
      event.user = user;
      const n = room.users.get(user)! - 1;
      if (n > 0) room.users.set(user, n);
      else {
        room.users.delete(user);
        event.lastOfUser = true;
      }
      const rooms = this.#userRooms.get(user)!;
      const m = rooms.get(room.name)! - 1;
      if (m > 0) rooms.set(room.name, m);
      else if (rooms.delete(room.name) && rooms.size === 0) this.#userRooms.delete(user);
    }
    if (room.members.size === 0) {
      // Keep only the seq of an empty room, so churny rooms stay cheap.
      this.#rooms.delete(room.name);
      if (this.#watched.has(room.name)) this.#idleSeq.set(room.name, room.seq);
      else this.#forget(room.name, room.seq);
    }
    this.#emit(event);
    return event;
  }

  #reap(instanceId: string, reason: LeaveReason, now: number): void {
    this.#leases.delete(instanceId);
    for (const connectionId of this.#metadataOf(instanceId)) this.#metadata.delete(connectionId);
    for (const member of this.#membersOf(instanceId)) this.#remove(member, reason, now);
  }

  #expire(member: Member, now: number): void {
    const room = member.room;
    this.#dropState(member);
    this.#emit(stateEvent(room.name, member.id, ++room.seq, null, now, { expired: true }));
  }

  #dropState(member: Member): void {
    member.value = undefined;
    this.#setExpiry(member, Infinity);
  }

  #emit(event: PresenceEvent): void {
    for (const hook of this.#hooks.values()) {
      if (hookTakes(hook.types, event)) {
        hook.queue.set(hookKey(event), { event, attempt: 0, dueAt: -Infinity });
      }
    }
    // A listener that mutates the store re-enters here: queue its events so
    // every listener still sees each room's events in seq order.
    if (this.#emitting) {
      this.#queue.push(event);
      return;
    }
    this.#emitting = true;
    try {
      this.#deliver(event);
      const queue = this.#queue;
      for (let i = 0; i < queue.length; i++) this.#deliver(queue[i]!);
      queue.length = 0;
    } finally {
      this.#emitting = false;
    }
  }

  #deliver(event: PresenceEvent): void {
    this.#listeners.emit(event);
  }

  // Indexed binary min-heap on expiresAt: every state with an expiry is in it
  // exactly once, so memory stays bounded however often states are rewritten.

  /** Set when the member's state expires (`Infinity`: never), in the heap. */
  #setExpiry(member: Member, at: number): void {
    const entry = member.expiry;
    if (entry === null) {
      if (at !== Infinity) this.#heapPush(member.expiry = { member, expiresAt: at, slot: -1 });
      return;
    }
    const old = entry.expiresAt;
    if (at === Infinity) {
      this.#heapRemove(entry);
      member.expiry = null;
    } else if (at !== old) {
      entry.expiresAt = at;
      if (at < old) this.#siftUp(entry.slot);
      else this.#siftDown(entry.slot);
    }
  }

  #heapPush(entry: Expiry): void {
    entry.slot = this.#heap.length;
    this.#heap.push(entry);
    this.#siftUp(entry.slot);
  }

  #heapRemove(entry: Expiry): void {
    const heap = this.#heap;
    const i = entry.slot;
    entry.slot = -1;
    const last = heap.pop()!;
    if (last === entry) return;
    heap[i] = last;
    last.slot = i;
    this.#siftUp(i);
    this.#siftDown(last.slot);
  }

  #siftUp(i: number): void {
    const heap = this.#heap;
    const entry = heap[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p]!;
      if (parent.expiresAt <= entry.expiresAt) break;
      heap[i] = parent;
      parent.slot = i;
      i = p;
    }
    heap[i] = entry;
    entry.slot = i;
  }

  #siftDown(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const entry = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && heap[r]!.expiresAt < heap[l]!.expiresAt) c = r;
      const child = heap[c]!;
      if (child.expiresAt >= entry.expiresAt) break;
      heap[i] = child;
      child.slot = i;
      i = c;
    }
    heap[i] = entry;
    entry.slot = i;
  }
}
