// PresenceStore on Deno KV: versionstamp-checked atomic writes, a per-room event
// log, and an event feed from kv.watch plus a polling fallback.
//
// Why it is long (about 900 lines of code): every write is a read-check-
// commit loop with its own retry, and the counters, indices, leases and hook
// queues it keeps are each written in the same commit as the change they
// follow. The event feed is in _kv_feed.ts.

/**
 * A {@linkcode PresenceStore} on Deno KV, for several Presently servers
 * sharing one KV database: Deno Deploy, a KV Connect server, or one local
 * SQLite file used by several processes.
 *
 * @example
 * ```ts
 * /// <reference lib="deno.unstable" />
 * import { PresenceServer } from "@presently/presently";
 * import { KvPresenceStore } from "@presently/presently/kv";
 * const kv = await Deno.openKv(":memory:"); // on Deno Deploy: await Deno.openKv()
 * const store = new KvPresenceStore(kv);
 * const server = new PresenceServer({ store });
 * // ... serve it, then on shutdown:
 * await server.close();
 * await store.close();
 * kv.close();
 * ```
 *
 * @module
 */

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
import { KvFeed, PARALLEL, seqOf } from "./_kv_feed.ts";
import { pool, sleep } from "./_async.ts";
import { applyWrite, stateEvent } from "./_state.ts";
import { hookKey, hookTakes, hookTypes, pageSize, widenHookTypes } from "./_queries.ts";

// The contract types, so this entry documents itself without the main one.
export type {
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
export type { Metadata, PresentEntry } from "../protocol.ts";

/**
 * One part of a KV key, as in `Deno.KvKeyPart`.
 *
 * @example
 * ```ts
 * /// <reference lib="deno.unstable" />
 * import { type KvLikeKeyPart, KvPresenceStore } from "@presently/presently/kv";
 * const tenant: KvLikeKeyPart = "acme";
 * const kv = await Deno.openKv(":memory:");
 * const store = new KvPresenceStore(kv, { prefix: ["presently", tenant] });
 * await store.close();
 * kv.close();
 * ```
 */
export type KvLikeKeyPart =
  | Uint8Array
  | string
  | number
  | bigint
  | boolean
  | symbol;

/**
 * A KV key, as in `Deno.KvKey`.
 *
 * @example
 * ```ts
 * /// <reference lib="deno.unstable" />
 * import { type KvLikeKey, KvPresenceStore } from "@presently/presently/kv";
 * const prefix: KvLikeKey = ["myapp", "presence"];
 * const kv = await Deno.openKv(":memory:");
 * const store = new KvPresenceStore(kv, { prefix });
 * await store.join("lobby", "c1", "server-1", {}, Date.now());
 * for await (const { key } of kv.list({ prefix })) console.log(key); // ["myapp", "presence", ...]
 * await store.close();
 * kv.close();
 * ```
 */
export type KvLikeKey = readonly KvLikeKeyPart[];

/**
 * A KV entry that may be absent (`versionstamp: null`), as in `Deno.KvEntryMaybe`.
 *
 * @example
 * ```ts
 * /// <reference lib="deno.unstable" />
 * import type { KvLike, KvLikeEntryMaybe } from "@presently/presently/kv";
 * const kv: KvLike & { close(): void } = await Deno.openKv(":memory:");
 * const entry: KvLikeEntryMaybe = await kv.get(["presently", "nothing"]);
 * console.log(entry.value, entry.versionstamp); // null null
 * kv.close();
 * ```
 */
export interface KvLikeEntryMaybe {
  /** The key that was read. */
  key: KvLikeKey;
  /** The value, `null` when absent. */
  value: unknown;
  /** The versionstamp of the last write, `null` when absent. */
  versionstamp: string | null;
}

/**
 * A KV entry that exists, as yielded by `list`.
 *
 * @example
 * ```ts
 * /// <reference lib="deno.unstable" />
 * import { type KvLikeEntry, KvPresenceStore } from "@presently/presently/kv";
 * const kv = await Deno.openKv(":memory:");
 * const store = new KvPresenceStore(kv);
 * await store.setMetadata("c1", "server-1", { name: "Ada" });
 * const entries: KvLikeEntry[] = await Array.fromAsync(kv.list({ prefix: ["presently"] }));
 * console.log(entries.length > 0); // true: the store's keys live under its prefix
 * await store.close();
 * kv.close();
 * ```
 */
export interface KvLikeEntry {
  /** The entry's key. */
  key: KvLikeKey;
  /** The entry's value. */
  value: unknown;
  /** The versionstamp of the last write. */
  versionstamp: string;
}

/**
 * The part of `Deno.AtomicOperation` this store uses.
 *
 * @example
 * ```ts
 * /// <reference lib="deno.unstable" />
 * import type { KvLike, KvLikeAtomic } from "@presently/presently/kv";
 * const kv: KvLike & { close(): void } = await Deno.openKv(":memory:");
 * const op: KvLikeAtomic = kv.atomic()
 *   .check({ key: ["counter"], versionstamp: null }) // only if absent
 *   .set(["counter"], 1, { expireIn: 60_000 });
 * console.log((await op.commit()).ok); // true
 * kv.close();
 * ```
 */
export interface KvLikeAtomic {
  /** Fail the commit unless each key still has the given versionstamp. */
  check(
    ...checks: { key: KvLikeKey; versionstamp: string | null }[]
  ): KvLikeAtomic;
  /** Set a key, optionally deleted by the backend after `expireIn` ms. */
  set(
    key: KvLikeKey,
    value: unknown,
    options?: { expireIn?: number },
  ): KvLikeAtomic;
  /** Delete a key. */
  delete(key: KvLikeKey): KvLikeAtomic;
  /** Commit; `ok: false` when a check failed. */
  commit(): Promise<{ ok: boolean; versionstamp?: string }>;
}

/**
 * The part of `Deno.Kv` this store uses, declared structurally so the store
 * type-checks without Deno's unstable types. A `Deno.Kv` from `Deno.openKv()`
 * fits as is; so does any client with the same API.
 *
 * @example
 * ```ts
 * /// <reference lib="deno.unstable" />
 * import { type KvLike, KvPresenceStore } from "@presently/presently/kv";
 * const denoKv = await Deno.openKv(":memory:");
 * const kv: KvLike = denoKv; // a Deno.Kv fits as is
 * const store = new KvPresenceStore(kv);
 * await store.close();
 * denoKv.close();
 * ```
 */
export interface KvLike {
  /** Read one key (strongly consistent). */
  get(key: KvLikeKey): Promise<KvLikeEntryMaybe>;
  /** Read up to 10 keys in one consistent snapshot. */
  getMany(keys: readonly KvLikeKey[]): Promise<readonly KvLikeEntryMaybe[]>;
  /** List entries in key order. */
  list(
    selector:
      | { prefix: KvLikeKey }
      | { prefix: KvLikeKey; start: KvLikeKey }
      | { prefix: KvLikeKey; end: KvLikeKey }
      | { start: KvLikeKey; end: KvLikeKey },
    options?: { limit?: number; batchSize?: number },
  ): AsyncIterable<KvLikeEntry>;
  /** Start an atomic operation. */
  atomic(): KvLikeAtomic;
  /** Stream the values of up to 10 keys, now and whenever they change. */
  watch?(
    keys: readonly KvLikeKey[],
  ): ReadableStream<readonly KvLikeEntryMaybe[]>;
}

/**
 * Options for {@linkcode KvPresenceStore}.
 *
 * @example
 * ```ts
 * /// <reference lib="deno.unstable" />
 * import { PresenceServer } from "@presently/presently";
 * import { KvPresenceStore, type KvPresenceStoreOptions } from "@presently/presently/kv";
 * const options: KvPresenceStoreOptions = {
 *   prefix: ["myapp", "presence"],
 *   pollIntervalMs: 100, // processes sharing a local file see each other within ~100 ms
 *   watch: "auto",
 *   logTtlMs: 600_000,
 *   onError: (error) => console.error("presence store:", error),
 * };
 * const kv = await Deno.openKv(":memory:");
 * const store = new KvPresenceStore(kv, options);
 * const server = new PresenceServer({ store });
 * await server.close();
 * await store.close();
 * kv.close();
 * ```
 */
export interface KvPresenceStoreOptions {
  /**
   * Prefix of every key the store writes, so several apps (or tests) can
   * share one database. Defaults to `["presently"]`.
   */
  prefix?: readonly KvLikeKeyPart[];
  /**
   * How often, in ms, to read the sequence number of every watched room and
   * fetch the events other instances logged since. This is what carries
   * events between processes sharing a local KV file, where `kv.watch` does
   * not fire across processes; their propagation latency is about this
   * interval. Each poll reads 10 rooms per KV call. `0` turns polling off
   * (only sensible with `watch`, on Deno Deploy or KV Connect). Defaults to
   * `250`.
   */
  pollIntervalMs?: number;
  /**
   * Use `kv.watch` on each watched room's sequence key for low-latency
   * delivery where it works across instances (Deno Deploy, KV Connect, and
   * handles in one process). `"auto"` (the default) uses it when the KV
   * handle has `watch`; `true` requires it; `false` relies on polling alone.
   * Watch and polling run side by side; duplicates are dropped by sequence.
   */
  watch?: "auto" | boolean;
  /**
   * How long, in ms, a room's event log keeps an event (the KV `expireIn`
   * backstop on log entries and on expiring states). An instance that falls
   * further behind than this reloads the room from a snapshot. Defaults to
   * `300_000` (5 minutes).
   */
  logTtlMs?: number;
  /**
   * Called when a `subscribe` listener throws (with the event) or a
   * background poll or watch fails (without one). Defaults to `console.error`.
   */
  onError?: (error: unknown, event: PresenceEvent | null) => void;
}

interface MemberValue {
  /** Sequence number of the join: snapshots list members in join order. */
  seq: number;
  instance: string;
  /** JSON text, so `__proto__` keys survive. */
  meta: string;
  /** The member's user, when it has one. */
  user?: string;
}

/** A room's counters: connections, and distinct users (anonymous count one each). */
interface CountValue {
  c: number;
  u: number;
}

/** One event in a hook's queue. */
interface HookValue {
  event: string;
  attempt: number;
  dueAt: number;
}

interface StateValue {
  /** JSON text. */
  value: string;
  /** ms since the epoch; `null` when the state does not expire. */
  expiresAt: number | null;
}

interface LeaseValue {
  expiresAt: number;
  /** Set while a survivor reaps the lapsed instance. */
  reaper?: string;
  reapUntil?: number;
}

interface MetaValue {
  meta: string;
  instance: string;
}

interface Check {
  key: KvLikeKey;
  versionstamp: string | null;
}

const RETRY = Symbol("retry");
const LOST = Symbol("lost");
const MAX_ATTEMPTS = 200;
const SNAPSHOT_BATCH = 1000;
const SNAPSHOT_ATTEMPTS = 20;
/** How long a survivor's claim on reaping a lapsed instance lasts. */
const REAP_CLAIM_MS = 30_000;

/** SQLite's write lock was held by another connection (local files only). */
function isBusy(error: unknown): boolean {
  return error instanceof Error &&
    /database is locked|SQLITE_BUSY/i.test(error.message);
}

/**
 * A {@linkcode PresenceStore} on Deno KV, shared by every Presently server
 * that opens the same database: Deno Deploy (`await Deno.openKv()`), a KV
 * Connect URL, or one local file used by several processes.
 *
 * Every mutation is one atomic commit, checked against the versionstamps it
 * read (retried on conflict), that also bumps the room's sequence number and
 * appends the event to the room's log. Other instances receive events from
 * that log: through `kv.watch` where it crosses instances, and by polling
 * each watched room every `pollIntervalMs` where it does not (processes on
 * one local file). States store `expiresAt` and are filtered on read; KV's
 * own `expireIn` is only a backstop, since expired KV entries stay readable
 * for up to a minute. Each instance holds a lease; `sweep` on a survivor
 * claims a lapsed lease atomically and removes that instance's entries.
 *
 * The store never closes the KV handle it is given: the caller owns it.
 *
 * @example
 * ```ts
 * /// <reference lib="deno.unstable" />
 * import { PresenceServer } from "@presently/presently";
 * import { KvPresenceStore } from "@presently/presently/kv";
 *
 * // Several processes on one machine share a file; use its path instead of ":memory:".
 * const kv = await Deno.openKv(":memory:");
 * const store = new KvPresenceStore(kv, { pollIntervalMs: 100 });
 * const server = new PresenceServer({ store });
 * server.trackPresence(/^doc:/);
 * // ... on shutdown:
 * await server.close();
 * await store.close();
 * kv.close();
 * ```
 */
export class KvPresenceStore implements PresenceStore {
  readonly #kv: KvLike;
  readonly #p: readonly KvLikeKeyPart[];
  readonly #pollMs: number;
  readonly #useWatch: boolean;
  readonly #logTtlMs: number;
  readonly #onError: (error: unknown, event: PresenceEvent | null) => void;
  /** Marks this handle's claims on lapsed leases. */
  readonly #id = crypto.randomUUID();
  /** Instances whose lease this handle renewed, to notice being reaped. */
  readonly #held = new Set<string>();
  readonly #resets = new Listeners<undefined>((error) => this.#report(error));
  #listeners = new Listeners<PresenceEvent>((error, event) => this.#onError(error, event));
  readonly #feed: KvFeed;
  #closed = false;

  /**
   * Create a store over an open KV handle.
   *
   * @param kv The KV database, e.g. from `await Deno.openKv()`. Not closed by
   *   the store.
   * @param options Key prefix, polling interval, watch mode, log TTL and
   *   error hook.
   * @throws {PresenceError} `bad_request` when an option is out of range, or
   *   when `watch: true` and the handle has no `watch`.
   *
   * @example
   * ```ts
   * /// <reference lib="deno.unstable" />
   * import { KvPresenceStore } from "@presently/presently/kv";
   * const kv = await Deno.openKv(":memory:");
   * const store = new KvPresenceStore(kv, { prefix: ["myapp", "presence"] });
   * await store.close();
   * kv.close();
   * ```
   */
  constructor(kv: KvLike, options: KvPresenceStoreOptions = {}) {
    this.#kv = kv;
    this.#p = [...(options.prefix ?? ["presently"])];
    this.#pollMs = options.pollIntervalMs ?? 250;
    if (!(this.#pollMs >= 0 && Number.isFinite(this.#pollMs))) {
      throw new PresenceError(
        "bad_request",
        `KV pollIntervalMs must be a finite number >= 0: got ${this.#pollMs}`,
      );
    }
    this.#logTtlMs = options.logTtlMs ?? 300_000;
    if (!(this.#logTtlMs >= 1000 && Number.isFinite(this.#logTtlMs))) {
      throw new PresenceError(
        "bad_request",
        `KV logTtlMs must be at least 1000: got ${this.#logTtlMs}`,
      );
    }
    const watch = options.watch ?? "auto";
    const canWatch = typeof kv.watch === "function";
    if (watch === true && !canWatch) {
      throw new PresenceError(
        "bad_request",
        "KV watch was required but the KV handle has no watch()",
      );
    }
    this.#useWatch = watch !== false && canWatch;
    this.#feed = new KvFeed(
      this.#kv,
      {
        closed: () => this.#closed,
        seqKey: (room) => this.#seqKey(room),
        logKey: (room, seq) => this.#logKey(room, seq),
        deliver: (event) => this.#listeners.emit(event),
        report: (error) => this.#report(error),
      },
      this.#pollMs,
      this.#useWatch,
    );
    this.#onError = options.onError ??
      ((error) => console.error("KvPresenceStore:", error));
  }

  // -- keys ------------------------------------------------------------------

  #room(room: string): KvLikeKey {
    return [...this.#p, "room", room];
  }
  #seqKey(room: string): KvLikeKey {
    return [...this.#p, "room", room, "seq"];
  }
  #memberKey(room: string, cid: string): KvLikeKey {
    return [...this.#p, "room", room, "m", cid];
  }
  #stateKey(room: string, cid: string): KvLikeKey {
    return [...this.#p, "room", room, "s", cid];
  }
  #logKey(room: string, seq: number): KvLikeKey {
    return [...this.#p, "log", room, seq];
  }
  #expKey(at: number, room: string, cid: string): KvLikeKey {
    return [...this.#p, "exp", at, room, cid];
  }
  #ownKey(instance: string, room: string, cid: string): KvLikeKey {
    return [...this.#p, "own", instance, room, cid];
  }
  #metaKey(cid: string): KvLikeKey {
    return [...this.#p, "meta", cid];
  }
  #ownMetaKey(instance: string, cid: string): KvLikeKey {
    return [...this.#p, "ownmeta", instance, cid];
  }
  #leaseKey(instance: string): KvLikeKey {
    return [...this.#p, "lease", instance];
  }
  /** The lease-expiry index: sweeps read only the leases that are due. */
  #leaseDueKey(at: number, instance: string): KvLikeKey {
    return [...this.#p, "leasedue", at, instance];
  }
  #countKey(room: string): KvLikeKey {
    return [...this.#p, "room", room, "n"];
  }
  /** The user's connections in the room (mirrored under "user" for userRooms). */
  #roomUserKey(room: string, user: string): KvLikeKey {
    return [...this.#p, "room", room, "u", user];
  }
  #userRoomKey(user: string, room: string): KvLikeKey {
    return [...this.#p, "user", user, room];
  }
  #roomsKey(room: string): KvLikeKey {
    return [...this.#p, "rooms", room];
  }
  #hooksKey(): KvLikeKey {
    return [...this.#p, "hooks"];
  }
  #hookKey(name: string, key: string): KvLikeKey {
    return [...this.#p, "hq", name, key];
  }
  #hookDueKey(name: string, at: number, key: string): KvLikeKey {
    return [...this.#p, "hd", name, at, key];
  }

  // -- leases ----------------------------------------------------------------

  async renewLease(
    instanceId: string,
    ttlMs: number,
    now: number,
  ): Promise<void> {
    this.#assertOpen();
    const key = this.#leaseKey(instanceId);
    const lost = await this.#retry("renewLease", async () => {
      const entry = await this.#kv.get(key);
      const lease = entry.value as LeaseValue | null;
      const value: LeaseValue = { expiresAt: now + ttlMs };
      const op = this.#kv.atomic().check(entry).set(key, value)
        .set(this.#leaseDueKey(value.expiresAt, instanceId), true);
      if (lease !== null && lease.expiresAt !== value.expiresAt) {
        op.delete(this.#leaseDueKey(lease.expiresAt, instanceId));
      }
      const res = await this.#commit(op);
      if (!res.ok) return RETRY;
      return this.#held.has(instanceId) &&
        (lease === null || lease.reaper !== undefined);
    });
    this.#held.add(instanceId);
    if (lost) queueMicrotask(() => this.#resets.emit(undefined));
  }

  async releaseLease(instanceId: string): Promise<void> {
    this.#assertOpen();
    this.#held.delete(instanceId);
    await this.#reap(instanceId, "close", Date.now(), null);
    const key = this.#leaseKey(instanceId);
    await this.#retry("releaseLease", async () => {
      const entry = await this.#kv.get(key);
      const lease = entry.value as LeaseValue | null;
      const op = this.#kv.atomic().check(entry).delete(key);
      if (lease !== null) op.delete(this.#leaseDueKey(lease.expiresAt, instanceId));
      const res = await this.#commit(op);
      return res.ok ? undefined : RETRY;
    });
  }

  onReset(listener: () => void): () => void {
    return this.#resets.add(() => listener());
  }

  // -- membership and state --------------------------------------------------

  async join(
    room: string,
    connectionId: string,
    instanceId: string,
    meta: Metadata,
    now: number,
    userId: string | null = null,
  ): Promise<PresenceEvent | null> {
    this.#assertOpen();
    const seqKey = this.#seqKey(room);
    const memberKey = this.#memberKey(room, connectionId);
    const countKey = this.#countKey(room);
    const metaText = JSON.stringify(meta);
    const user = userId ?? null;
    const keys = [seqKey, memberKey, countKey, this.#hooksKey()];
    if (user !== null) keys.push(this.#roomUserKey(room, user));
    return await this.#retry("join", async () => {
      const [seqE, memberE, countE, hooksE, userE] = await this.#kv.getMany(keys);
      if (memberE!.versionstamp !== null) return null;
      const seq = seqOf(seqE) + 1;
      const event: PresenceEvent = {
        type: "join",
        room,
        connectionId,
        seq,
        meta,
        instance: instanceId,
        timestamp: now,
      };
      const member: MemberValue = { seq, instance: instanceId, meta: metaText };
      const count = (countE!.value as CountValue | null) ?? { c: 0, u: 0 };
      const op = this.#kv.atomic()
        .check(seqE!, memberE!, countE!, hooksE!)
        .set(seqKey, seq)
        .set(this.#ownKey(instanceId, room, connectionId), true);
      let newUser = true;
      if (user !== null) {
        const n = (userE!.value as number | null) ?? 0;
        newUser = n === 0;
        member.user = event.user = user;
        if (newUser) event.firstOfUser = true;
        op.check(userE!)
          .set(this.#roomUserKey(room, user), n + 1)
          .set(this.#userRoomKey(user, room), n + 1);
      }
      op.set(memberKey, member)
        .set(countKey, { c: count.c + 1, u: count.u + (newUser ? 1 : 0) });
      if (count.c === 0) op.set(this.#roomsKey(room), true);
      this.#log(op, event, hooksE!);
      if (!(await this.#commit(op)).ok) return RETRY;
      await this.#feed.publish(room, [event]);
      return event;
    });
  }

  async leave(
    room: string,
    connectionId: string,
    reason: LeaveReason,
    now: number,
  ): Promise<PresenceEvent | null> {
    this.#assertOpen();
    const result = await this.#remove(room, connectionId, reason, now, null);
    return result === LOST ? null : result;
  }

  /**
   * Remove a member in one commit. With `guard`, only a member owned by
   * `guard.instance` is removed, and only while the reaper's claim on that
   * instance's lease holds (`LOST` otherwise).
   */
  async #remove(
    room: string,
    cid: string,
    reason: LeaveReason,
    now: number,
    guard: { instance: string; lease: Check | null } | null,
  ): Promise<PresenceEvent | null | typeof LOST> {
    const seqKey = this.#seqKey(room);
    const memberKey = this.#memberKey(room, cid);
    const stateKey = this.#stateKey(room, cid);
    const countKey = this.#countKey(room);
    return await this.#retry("leave", async () => {
      const [seqE, memberE, stateE, countE, hooksE] = await this.#kv.getMany([
        seqKey,
        memberKey,
        stateKey,
        countKey,
        this.#hooksKey(),
      ]);
      const member = memberE!.value as MemberValue | null;
      const lease = guard?.lease ?? null;
      if (member === null || (guard && member.instance !== guard.instance)) {
        if (guard === null) return null;
        // A stale ownership index entry: the member left or moved.
        const op = this.#kv.atomic().check(memberE!)
          .delete(this.#ownKey(guard.instance, room, cid));
        if (lease) op.check(lease);
        if ((await this.#commit(op)).ok) return null;
        return await this.#conflict(lease);
      }
      const seq = seqOf(seqE) + 1;
      const event: PresenceEvent = {
        type: "leave",
        room,
        connectionId: cid,
        seq,
        reason,
        timestamp: now,
      };
      const op = this.#kv.atomic()
        .check(seqE!, memberE!, stateE!, countE!, hooksE!)
        .set(seqKey, seq)
        .delete(memberKey)
        .delete(this.#ownKey(member.instance, room, cid))
        .delete(stateKey);
      if (lease) op.check(lease);
      const count = (countE!.value as CountValue | null) ?? { c: 1, u: 1 };
      let lastOfUser = true;
      if (member.user !== undefined) {
        const user = member.user;
        // Checked with the rest: a stale read fails the commit.
        const userE = await this.#kv.get(this.#roomUserKey(room, user));
        const n = ((userE.value as number | null) ?? 1) - 1;
        lastOfUser = n <= 0;
        event.user = user;
        if (lastOfUser) event.lastOfUser = true;
        op.check(userE);
        if (lastOfUser) {
          op.delete(this.#roomUserKey(room, user)).delete(this.#userRoomKey(user, room));
        } else {
          op.set(this.#roomUserKey(room, user), n).set(this.#userRoomKey(user, room), n);
        }
      }
      if (count.c <= 1) op.delete(countKey).delete(this.#roomsKey(room));
      else op.set(countKey, { c: count.c - 1, u: count.u - (lastOfUser ? 1 : 0) });
      const state = stateE!.value as StateValue | null;
      if (state !== null && state.expiresAt !== null) {
        op.delete(this.#expKey(state.expiresAt, room, cid));
      }
      this.#log(op, event, hooksE!);
      if (!(await this.#commit(op)).ok) return await this.#conflict(lease);
      await this.#feed.publish(room, [event]);
      return event;
    });
  }

  /** After a failed commit: `LOST` when the lease claim moved, else retry. */
  async #conflict(lease: Check | null): Promise<typeof RETRY | typeof LOST> {
    if (lease === null) return RETRY;
    const now = await this.#kv.get(lease.key);
    return now.versionstamp === lease.versionstamp ? RETRY : LOST;
  }

  async setState(
    room: string,
    connectionId: string,
    write: StateWrite,
    expiresAt: number | null,
    now: number,
  ): Promise<PresenceEvent | null | "not_member"> {
    this.#assertOpen();
    const seqKey = this.#seqKey(room);
    const memberKey = this.#memberKey(room, connectionId);
    const stateKey = this.#stateKey(room, connectionId);
    return await this.#retry("setState", async () => {
      const [seqE, memberE, stateE, hooksE] = await this.#kv.getMany([
        seqKey,
        memberKey,
        stateKey,
        this.#hooksKey(),
      ]);
      if (memberE!.versionstamp === null) return "not_member";
      let seq = seqOf(seqE);
      const events: PresenceEvent[] = [];
      const op = this.#kv.atomic().check(seqE!, memberE!, stateE!, hooksE!);
      const old = stateE!.value as StateValue | null;
      let current: unknown = undefined;
      if (old !== null) {
        if (old.expiresAt !== null && old.expiresAt <= now) {
          events.push(stateEvent(room, connectionId, ++seq, null, now, { expired: true }));
        } else current = JSON.parse(old.value);
      }

      const { value, patch } = applyWrite(write, current);
      const oldExp = old?.expiresAt ?? null;
      if (value === null) {
        if (old === null) return null;
        if (current !== undefined) events.push(stateEvent(room, connectionId, ++seq, null, now));
        op.delete(stateKey);
        if (oldExp !== null) {
          op.delete(this.#expKey(oldExp, room, connectionId));
        }
      } else {
        const stored: StateValue = { value: JSON.stringify(value), expiresAt };
        if (expiresAt === null) op.set(stateKey, stored);
        else {
          const expireIn = this.#backstop(expiresAt, now);
          op.set(stateKey, stored, { expireIn });
          op.set(this.#expKey(expiresAt, room, connectionId), true, {
            expireIn,
          });
        }
        if (oldExp !== null && oldExp !== expiresAt) {
          op.delete(this.#expKey(oldExp, room, connectionId));
        }
        events.push(stateEvent(room, connectionId, ++seq, value, now, { patch }));
      }
      op.set(seqKey, seq);
      for (const event of events) this.#log(op, event, hooksE!);
      if (!(await this.#commit(op)).ok) return RETRY;
      await this.#feed.publish(room, events);
      // Clearing a state that had just expired announces only the expiry.
      return current === undefined && (value === null || value === undefined)
        ? null
        : events[events.length - 1]!;
    });
  }

  async snapshot(room: string, now: number): Promise<RoomSnapshot> {
    this.#assertOpen();
    const prefix = this.#room(room);
    const tagAt = prefix.length;
    let before: KvLikeEntryMaybe | null = null;
    for (let attempt = 1;; attempt++) {
      let seqE: KvLikeEntry | null = null;
      const members: KvLikeEntry[] = [];
      const states: KvLikeEntry[] = [];
      let n = 0;
      for await (
        const e of this.#kv.list({ prefix }, { batchSize: SNAPSHOT_BATCH })
      ) {
        n++;
        const tag = e.key[tagAt];
        if (tag === "seq") seqE = e;
        else if (tag === "m") members.push(e);
        else if (tag === "s") states.push(e);
      }
      // One batch is one consistent read. Across batches, the sequence key
      // (listed last) proves nothing changed since `before` was read.
      const consistent = n < SNAPSHOT_BATCH ||
        (before !== null &&
          before.versionstamp === (seqE?.versionstamp ?? null));
      if (!consistent && attempt < SNAPSHOT_ATTEMPTS) {
        before = await this.#kv.get(this.#seqKey(room));
        continue;
      }
      const ordered = members.map((e) => ({
        id: e.key[tagAt + 1] as string,
        value: e.value as MemberValue,
      })).sort((x, y) => x.value.seq - y.value.seq);
      const present: PresentEntry[] = ordered.map((m) => ({
        id: m.id,
        meta: JSON.parse(m.value.meta) as Metadata,
      }));
      const users = new Map<string, string>();
      const joined = new Map<string, number>();
      for (const m of ordered) {
        joined.set(m.id, m.value.seq);
        if (m.value.user !== undefined) users.set(m.id, m.value.user);
      }
      const map = new Map<string, unknown>();
      for (const e of states) {
        const state = e.value as StateValue;
        if (state.expiresAt === null || state.expiresAt > now) {
          map.set(e.key[tagAt + 1] as string, JSON.parse(state.value));
        }
      }
      return { seq: seqOf(seqE ?? undefined), present, states: map, users, joined };
    }
  }

  /** What `instanceId` owns here: its memberships and the metadata it wrote. */
  async owned(instanceId: string): Promise<OwnedEntries> {
    this.#assertOpen();
    const members: OwnedEntries["members"] = [];
    for await (const e of this.#kv.list({ prefix: [...this.#p, "own", instanceId] })) {
      const n = e.key.length;
      members.push({ room: e.key[n - 2] as string, connectionId: e.key[n - 1] as string });
    }
    const metadata: string[] = [];
    for await (const e of this.#kv.list({ prefix: [...this.#p, "ownmeta", instanceId] })) {
      metadata.push(e.key[e.key.length - 1] as string);
    }
    return { members, metadata };
  }

  /** Connections and distinct users in a room: one read of its counters. */
  async count(room: string, _now: number): Promise<RoomCount> {
    this.#assertOpen();
    const count = (await this.#kv.get(this.#countKey(room))).value as CountValue | null;
    return { connections: count?.c ?? 0, users: count?.u ?? 0 };
  }

  /** Non-empty rooms by name, from an index kept by joins and leaves. */
  async listRooms(options: ListRoomsOptions = {}): Promise<RoomPage> {
    this.#assertOpen();
    const prefix = options.prefix ?? "";
    const limit = pageSize(options);
    const base = [...this.#p, "rooms"];
    const from = options.cursor !== undefined ? options.cursor + "\0" : prefix;
    const rooms: string[] = [];
    const selector = from === "" ? { prefix: base } : { prefix: base, start: [...base, from] };
    for await (const e of this.#kv.list(selector, { batchSize: limit + 1 })) {
      const name = e.key[e.key.length - 1] as string;
      if (!name.startsWith(prefix)) break; // sorted: past the prefix
      if (rooms.length === limit) return { rooms, cursor: rooms[limit - 1]! };
      rooms.push(name);
    }
    return { rooms, cursor: null };
  }

  /** The rooms where `userId` has a connection, ascending. */
  async userRooms(userId: string): Promise<string[]> {
    this.#assertOpen();
    const rooms: string[] = [];
    for await (const e of this.#kv.list({ prefix: [...this.#p, "user", userId] })) {
      rooms.push(e.key[e.key.length - 1] as string);
    }
    return rooms;
  }

  /** Queue every event of `types` for hook `name`, in the same commit as each write. */
  async registerHook(name: string, types: readonly HookEventType[]): Promise<void> {
    this.#assertOpen();
    const letters = hookTypes(types);
    await this.#retry("registerHook", async () => {
      const entry = await this.#kv.get(this.#hooksKey());
      const registry = { ...(entry.value as Record<string, string> | null) };
      registry[name] = widenHookTypes(registry[name] ?? "", letters);
      const op = this.#kv.atomic().check(entry).set(this.#hooksKey(), registry);
      return (await this.#commit(op)).ok ? undefined : RETRY;
    });
  }

  /** Stop queueing for hook `name` and drop its queue. */
  async dropHook(name: string): Promise<void> {
    this.#assertOpen();
    await this.#retry("dropHook", async () => {
      const entry = await this.#kv.get(this.#hooksKey());
      const registry = { ...(entry.value as Record<string, string> | null) };
      delete registry[name];
      const op = this.#kv.atomic().check(entry).set(this.#hooksKey(), registry);
      return (await this.#commit(op)).ok ? undefined : RETRY;
    });
    for (const part of ["hq", "hd"]) {
      const keys: KvLikeKey[] = [];
      for await (const e of this.#kv.list({ prefix: [...this.#p, part, name] })) keys.push(e.key);
      for (let i = 0; i < keys.length; i += 500) {
        const op = this.#kv.atomic();
        for (const key of keys.slice(i, i + 500)) op.delete(key);
        await this.#commit(op);
      }
    }
  }

  /** Claim due events of hook `name`, each in its own checked commit. */
  async claimHooks(
    name: string,
    now: number,
    leaseMs: number,
    max: number,
  ): Promise<HookDelivery[]> {
    this.#assertOpen();
    const out: HookDelivery[] = [];
    const due = this.#kv.list(
      { start: [...this.#p, "hd", name], end: [...this.#p, "hd", name, now, true] },
      { limit: max },
    );
    for await (const d of due) {
      const at = d.key[d.key.length - 2] as number;
      const key = d.key[d.key.length - 1] as string;
      const entry = await this.#kv.get(this.#hookKey(name, key));
      const value = entry.value as HookValue | null;
      const op = this.#kv.atomic().check(entry, { key: d.key, versionstamp: d.versionstamp })
        .delete(d.key);
      if (value === null || value.dueAt !== at) {
        await this.#commit(op); // a stale index entry
        continue;
      }
      const next: HookValue = { ...value, attempt: value.attempt + 1, dueAt: now + leaseMs };
      op.set(this.#hookKey(name, key), next).set(this.#hookDueKey(name, next.dueAt, key), true);
      // Lost to another claimer: it is theirs.
      if ((await this.#commit(op)).ok) {
        out.push({ key, attempt: next.attempt, event: JSON.parse(value.event) });
      }
    }
    return out;
  }

  /** Remove a delivered event, or make a failed one due at `retryAt`. */
  async settleHook(name: string, key: string, retryAt: number | null): Promise<void> {
    this.#assertOpen();
    await this.#retry("settleHook", async () => {
      const entry = await this.#kv.get(this.#hookKey(name, key));
      const value = entry.value as HookValue | null;
      if (value === null) return undefined;
      const op = this.#kv.atomic().check(entry).delete(this.#hookDueKey(name, value.dueAt, key));
      if (retryAt === null) op.delete(this.#hookKey(name, key));
      else {
        op.set(this.#hookKey(name, key), { ...value, dueAt: retryAt })
          .set(this.#hookDueKey(name, retryAt, key), true);
      }
      return (await this.#commit(op)).ok ? undefined : RETRY;
    });
  }

  // -- metadata ----------------------------------------------------------------

  async setMetadata(
    connectionId: string,
    instanceId: string,
    meta: Metadata,
  ): Promise<void> {
    this.#assertOpen();
    const key = this.#metaKey(connectionId);
    const value: MetaValue = {
      meta: JSON.stringify(meta),
      instance: instanceId,
    };
    await this.#retry("setMetadata", async () => {
      const entry = await this.#kv.get(key);
      const old = entry.value as MetaValue | null;
      const op = this.#kv.atomic().check(entry).set(key, value)
        .set(this.#ownMetaKey(instanceId, connectionId), true);
      if (old !== null && old.instance !== instanceId) {
        op.delete(this.#ownMetaKey(old.instance, connectionId));
      }
      return (await this.#commit(op)).ok ? undefined : RETRY;
    });
  }

  async getMetadata(connectionId: string): Promise<Metadata | null> {
    this.#assertOpen();
    const entry = await this.#kv.get(this.#metaKey(connectionId));
    const value = entry.value as MetaValue | null;
    return value === null ? null : JSON.parse(value.meta) as Metadata;
  }

  async deleteMetadata(connectionId: string): Promise<void> {
    this.#assertOpen();
    const key = this.#metaKey(connectionId);
    await this.#retry("deleteMetadata", async () => {
      const entry = await this.#kv.get(key);
      const old = entry.value as MetaValue | null;
      if (old === null) return undefined;
      const op = this.#kv.atomic().check(entry).delete(key)
        .delete(this.#ownMetaKey(old.instance, connectionId));
      return (await this.#commit(op)).ok ? undefined : RETRY;
    });
  }

  // -- the event feed ----------------------------------------------------------

  subscribe(listener: StoreListener): () => void {
    return this.#listeners.add(listener);
  }

  watchRoom(room: string): () => void {
    if (this.#closed) return () => {};
    return this.#feed.watch(room);
  }

  // -- sweeping ----------------------------------------------------------------

  async sweep(now: number): Promise<void> {
    this.#assertOpen();
    // Only the due leases, from the expiry index: an idle sweep is one empty
    // range read, however many instances there are.
    const prefix = [...this.#p, "leasedue"];
    const due: KvLikeEntry[] = [];
    for await (const e of this.#kv.list({ prefix, end: [...prefix, now, true] })) due.push(e);
    for (const d of due) {
      const instance = d.key[d.key.length - 1] as string;
      const at = d.key[d.key.length - 2] as number;
      if (this.#held.has(instance)) continue; // see below
      const entry = await this.#kv.get(this.#leaseKey(instance));
      const lease = entry.value as LeaseValue | null;
      if (lease === null || lease.expiresAt !== at) {
        // A stale index entry: the lease was renewed or released meanwhile.
        await this.#commit(this.#kv.atomic().check(entry).delete(d.key));
        continue;
      }
      if (now < lease.expiresAt) continue;
      // This handle renews that lease: the instance lives here, merely late
      // (e.g. after a stall), and renews next; reaping it would only flap.
      if (this.#held.has(instance)) continue;
      if (lease.reaper !== undefined && now < (lease.reapUntil ?? 0)) continue;
      const claim: LeaseValue = {
        expiresAt: lease.expiresAt,
        reaper: this.#id,
        reapUntil: now + REAP_CLAIM_MS,
      };
      const res = await this.#commit(
        this.#kv.atomic().check(entry).set(entry.key, claim),
      );
      if (!res.ok || res.versionstamp === undefined) continue;
      const claimed: Check = { key: entry.key, versionstamp: res.versionstamp };
      if (await this.#reap(instance, "instance", now, claimed)) {
        await this.#commit(this.#kv.atomic().check(claimed).delete(entry.key).delete(d.key));
      }
    }
    await this.#expireStates(now);
  }

  async #expireStates(now: number): Promise<void> {
    const prefix = [...this.#p, "exp"];
    for (;;) {
      const due: KvLikeEntry[] = [];
      // `true` sorts after every string, so `end` keeps expiresAt === now.
      for await (
        const e of this.#kv.list({ prefix, end: [...prefix, now, true] }, {
          limit: 256,
        })
      ) due.push(e);
      for (const entry of due) {
        const n = entry.key.length;
        await this.#expireOne(
          entry.key[n - 2] as string,
          entry.key[n - 1] as string,
          entry.key[n - 3] as number,
          now,
        );
      }
      if (due.length < 256) return;
    }
  }

  async #expireOne(
    room: string,
    cid: string,
    at: number,
    now: number,
  ): Promise<void> {
    const seqKey = this.#seqKey(room);
    const stateKey = this.#stateKey(room, cid);
    const expKey = this.#expKey(at, room, cid);
    await this.#retry("sweep", async () => {
      const [seqE, stateE, hooksE] = await this.#kv.getMany([seqKey, stateKey, this.#hooksKey()]);
      const state = stateE!.value as StateValue | null;
      if (state === null || state.expiresAt !== at) {
        // A stale index entry: the state was rewritten, cleared or dropped.
        const op = this.#kv.atomic().check(stateE!).delete(expKey);
        return (await this.#commit(op)).ok ? undefined : RETRY;
      }
      const event = stateEvent(room, cid, seqOf(seqE) + 1, null, now, { expired: true });
      const op = this.#kv.atomic().check(seqE!, stateE!, hooksE!)
        .set(seqKey, event.seq)
        .delete(stateKey)
        .delete(expKey);
      this.#log(op, event, hooksE!);
      if (!(await this.#commit(op)).ok) return RETRY;
      await this.#feed.publish(room, [event]);
      return undefined;
    });
  }

  /**
   * Remove everything `instance` owns. With a lease claim, stops (returning
   * `false`) as soon as the instance renews its lease.
   */
  async #reap(
    instance: string,
    reason: LeaveReason,
    now: number,
    lease: Check | null,
  ): Promise<boolean> {
    const byRoom = new Map<string, string[]>();
    for await (
      const e of this.#kv.list({ prefix: [...this.#p, "own", instance] })
    ) {
      const n = e.key.length;
      const room = e.key[n - 2] as string;
      const list = byRoom.get(room);
      if (list) list.push(e.key[n - 1] as string);
      else byRoom.set(room, [e.key[n - 1] as string]);
    }
    let lost = false;
    // Rooms in parallel; one room's leaves in order, as they share its seq.
    await pool([...byRoom], PARALLEL, async ([room, cids]) => {
      for (const cid of cids) {
        if (lost) return;
        const guard = { instance, lease };
        if ((await this.#remove(room, cid, reason, now, guard)) === LOST) {
          lost = true;
        }
      }
    });
    if (lost) return false;

    const metas: string[] = [];
    for await (
      const e of this.#kv.list({ prefix: [...this.#p, "ownmeta", instance] })
    ) metas.push(e.key[e.key.length - 1] as string);
    for (const cid of metas) {
      const key = this.#metaKey(cid);
      const result = await this.#retry("reap metadata", async () => {
        const entry = await this.#kv.get(key);
        const op = this.#kv.atomic().check(entry)
          .delete(this.#ownMetaKey(instance, cid));
        if ((entry.value as MetaValue | null)?.instance === instance) {
          op.delete(key);
        }
        if (lease) op.check(lease);
        return (await this.#commit(op)).ok ? undefined : await this.#conflict(lease);
      });
      if (result === LOST) return false;
    }
    return true;
  }

  // -- lifecycle ---------------------------------------------------------------

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#feed.close();
    this.#listeners.clear();
    this.#resets.clear();
  }

  // -- helpers -----------------------------------------------------------------

  #assertOpen(): void {
    if (this.#closed) {
      throw new PresenceError("closed", "The presence store is closed");
    }
  }

  /** Log the event, and queue it for every hook of the registry read with the write. */
  #log(op: KvLikeAtomic, event: PresenceEvent, hooks: KvLikeEntryMaybe): void {
    const text = JSON.stringify(event);
    op.set(this.#logKey(event.room, event.seq), text, { expireIn: this.#logTtlMs });
    const registry = hooks.value as Record<string, string> | null;
    if (registry === null) return;
    for (const [name, letters] of Object.entries(registry)) {
      if (!hookTakes(letters, event)) continue;
      const key = hookKey(event);
      const value: HookValue = { event: text, attempt: 0, dueAt: 0 };
      op.set(this.#hookKey(name, key), value).set(this.#hookDueKey(name, 0, key), true);
    }
  }

  /** `expireIn` for an expiring state: its lifetime plus the log's TTL. */
  #backstop(expiresAt: number, now: number): number {
    const left = expiresAt - now;
    return Math.max(0, Number.isFinite(left) ? left : 0) + this.#logTtlMs;
  }

  /** Commit, treating SQLite's "database is locked" as a conflict. */
  async #commit(
    op: KvLikeAtomic,
  ): Promise<{ ok: boolean; versionstamp?: string }> {
    try {
      return await op.commit();
    } catch (error) {
      if (isBusy(error)) return { ok: false };
      throw error;
    }
  }

  async #retry<T>(
    what: string,
    attempt: () => Promise<T | typeof RETRY>,
  ): Promise<T> {
    for (let i = 0;; i++) {
      this.#assertOpen();
      let result: T | typeof RETRY;
      try {
        result = await attempt();
      } catch (error) {
        // Processes sharing one local file contend for SQLite's write lock.
        if (!isBusy(error)) throw error;
        result = RETRY;
      }
      if (result !== RETRY) return result;
      if (i + 1 >= MAX_ATTEMPTS) {
        throw new PresenceError(
          "store_error",
          `KV write kept conflicting: "${what}" gave up after ${MAX_ATTEMPTS} attempts`,
        );
      }
      // Jittered backoff so contending instances spread out.
      await sleep(Math.random() * Math.min(2 ** i, 50));
    }
  }

  #report(error: unknown, event: PresenceEvent | null = null): void {
    try {
      this.#onError(error, event);
    } catch {
      // The error hook itself failed: nothing sensible left to do.
    }
  }
}
