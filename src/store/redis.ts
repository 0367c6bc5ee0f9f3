// RedisPresenceStore: presence shared by many instances through one Redis,
// with Lua scripts for atomic writes and pub/sub (plus a short log) for events.
//
// Why it is long (about 1 050 lines of code): besides the contract's methods,
// it keeps the cross-room indices of a cluster (written around the room
// scripts, settled by version), the reap protocol, and the data-loss checks
// (epochs per master, write counters per room). The scripts are in
// _redis_lua.ts, the connections in _redis_driver.ts, the event feed in
// _redis_feed.ts.

/**
 * A {@linkcode PresenceStore} in Redis, for many Presently servers (on any
 * mix of Deno and Bun) sharing presence through one Redis 6.2+.
 *
 * @example Needs a running Redis, so not run by `deno test --doc`
 * ```ts ignore
 * import { PresenceServer } from "@presently/presently";
 * import { RedisPresenceStore } from "@presently/presently/redis";
 * const store = new RedisPresenceStore({ url: "redis://127.0.0.1:6379" });
 * const server = new PresenceServer({ store });
 * // ... serve it, then on shutdown:
 * await server.close();
 * await store.close();
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
import { sleep } from "./_async.ts";
import { applyWrite, clears } from "./_state.ts";
import { hookTypes, pageSize } from "./_queries.ts";
import { toHex } from "../_hex.ts";
import { openDriver, type RedisDriver } from "./_redis_driver.ts";
import { received } from "./_redis_probe.ts";
import { RedisFeed } from "./_redis_feed.ts";
import { ROOM_SCRIPTS, type RoomScript, SLOT_SCRIPTS, type SlotScript } from "./_redis_lua.ts";

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
 * Options for {@linkcode RedisPresenceStore}.
 *
 * @example
 * ```ts
 * import type { RedisPresenceStoreOptions } from "@presently/presently/redis";
 * const options: RedisPresenceStoreOptions = {
 *   url: "redis://:secret@redis.internal:6379/0",
 *   prefix: "myapp:presence:", // the same on every instance of the app
 *   logLength: 128,
 *   onError: (error, event) => console.error(event ? "A listener threw" : "Redis is down", error),
 * };
 * console.log(options.prefix); // pass to `new RedisPresenceStore(options)`
 * ```
 */
export interface RedisPresenceStoreOptions {
  /**
   * The Redis server, as a `redis://` or `rediss://` URL (user, password and
   * database number included). Defaults to `"redis://127.0.0.1:6379"`.
   */
  url?: string;
  /**
   * Seed nodes of a Redis Cluster (`redis://` or `rediss://` URLs; the
   * credentials and TLS of the first apply to every node). With it, `url` is
   * ignored: the store discovers the cluster, follows `MOVED`/`ASK` and
   * topology changes, and uses sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis
   * 7.0+), so a room's events travel only through the shard that owns it.
   * Uses the npm `redis` package under Deno and Bun alike.
   */
  cluster?: string[];
  /**
   * Prefix of every key and channel, so several apps (or tests) can share
   * one Redis. Every instance of one app must use the same prefix. It may not
   * contain `{` or `}` (they would change which hash slot a key is in).
   * Defaults to `"presently:"`.
   */
  prefix?: string;
  /**
   * Backstop TTL of the stored keys, in ms: each write sets it, and a live
   * instance refreshes its keys every quarter of it, so only keys nobody
   * maintains any more (every instance gone for good) ever expire by it.
   * Correctness never depends on it. Defaults to 24 hours; at least 1 minute.
   */
  keyTtlMs?: number;
  /**
   * How many recent events each room keeps for catching up after a missed
   * pub/sub message (reconnect, or a subscription still being set up).
   * Defaults to 64.
   */
  logLength?: number;
  /** How long an idle room keeps that log, in ms. Defaults to 60 000. */
  logTtlMs?: number;
  /**
   * Longest pause between reconnection attempts, in ms (npm `redis` client;
   * Bun's client uses its own backoff). Defaults to 2000.
   */
  maxReconnectDelayMs?: number;
  /** How long to wait for a connection to open, in ms. Defaults to 5000. */
  connectTimeoutMs?: number;
  /**
   * Called when a `subscribe` listener throws (with its event), or when the
   * connection to Redis fails (with `null`, once per outage). Defaults to
   * `console.error`.
   */
  onError?: (error: unknown, event: PresenceEvent | null) => void;
}

interface ScriptResult {
  status: string;
  /** The events the script produced or caught up, in seq order per room. */
  events: PresenceEvent[];
}

/** A registered presence hook: its name and the event letters it takes. */
interface HookEntry {
  name: string;
  letters: string;
}

const DEFAULT_URL = "redis://127.0.0.1:6379";
const DEFAULT_PREFIX = "presently:";
const SWEEP_INSTANCES = 8;
const SWEEP_STATES = 512;
/** Rooms with due states (or due hook events) taken per index bucket and round. */
const SWEEP_ROOMS = 64;
/**
 * The indices of rooms with due states and with due hook events are split
 * into this many buckets (hash slots), so no one Redis Cluster shard holds
 * them all.
 */
const BUCKETS = 8;
/** How long a reaper keeps a lapsed instance to itself before another may retry. */
const REAP_CLAIM_MS = 30_000;
/**
 * How long this handle trusts its copy of the hook registry. `registerHook`
 * and `dropHook` wait a little longer than this before they resolve, so every
 * write that starts after they resolve sees the change.
 */
const HOOKS_FRESH_MS = 100;
/** Every generation: reaping with it removes whatever the instance owns. */
const ALL_GENERATIONS = "9007199254740991";
const PATCH_ATTEMPTS = 16;
let shaCache: Promise<Map<string, string>> | null = null;

/** Script source -> its SHA-1, for EVALSHA. */
function scriptShas(): Promise<Map<string, string>> {
  shaCache ??= (async () => {
    const out = new Map<string, string>();
    const encoder = new TextEncoder();
    for (const source of [...Object.values(ROOM_SCRIPTS), ...Object.values(SLOT_SCRIPTS)]) {
      out.set(source, toHex(await crypto.subtle.digest("SHA-1", encoder.encode(source))));
    }
    return out;
  })();
  return shaCache;
}

/**
 * `s` as a hash tag and a separator: `{s}:` when `s` can be a tag as it is,
 * else `{<hex of s>}#` (an empty name, or one with a brace, would give an
 * empty or cut tag). The separator keeps the two forms' key names apart.
 */
function tagged(s: string): string {
  if (s !== "" && !s.includes("{") && !s.includes("}")) return `{${s}}:`;
  return `{${toHex(new TextEncoder().encode(s).buffer as ArrayBuffer)}}#`;
}

/** CRC16-XMODEM of `s`'s UTF-8 bytes: Redis Cluster's key slot is this mod 16384. */
function crc16(s: string): number {
  let crc = 0;
  for (const byte of new TextEncoder().encode(s)) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc;
}

/** Which index bucket a room is in (FNV-1a of its name). */
function bucketOf(room: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < room.length; i++) {
    h ^= room.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % BUCKETS;
}

/** Event type -> the letter hooks register it by. */
const LETTER = { join: "j", leave: "l", state: "s" } as const;

/**
 * A cluster answer that means "not now, same node, try again": a slot being
 * migrated with the keys of one call split between two nodes (`TRYAGAIN`),
 * or the cluster briefly without a quorum (`CLUSTERDOWN`). Nothing was run.
 */
function isTransient(error: unknown): boolean {
  return error instanceof Error &&
    (error.message.startsWith("TRYAGAIN") || error.message.startsWith("CLUSTERDOWN"));
}

/** How many times a transient cluster answer is retried (about 5 s in all). */
const TRANSIENT_RETRIES = 40;

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("NOSCRIPT");
}

function asStrings(reply: unknown): string[] {
  if (!Array.isArray(reply)) {
    throw new PresenceError(
      "store_error",
      `Unexpected Redis reply: ${JSON.stringify(reply)}`,
    );
  }
  return reply.map((x) => String(x));
}

/** `[a, b, c, d]` as `[[a, b], [c, d]]`. */
function pairs(flat: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}

function time(value: number, what: string): string {
  if (!Number.isFinite(value)) {
    throw new PresenceError(
      "bad_request",
      `Expected a finite ${what}: got ${value}`,
    );
  }
  return String(value);
}

/**
 * A {@linkcode PresenceStore} in Redis, for many server instances (on any mix
 * of Deno and Bun) sharing presence. Under Bun it uses Bun's built-in
 * `RedisClient`; elsewhere the npm `redis` package, loaded only by this
 * module. It holds two connections: one for commands, one for pub/sub.
 *
 * - Every write is one Lua script: it checks membership, writes, bumps the
 *   room's sequence number, appends the event to a short per-room log and
 *   publishes it on the room's channel, so sequence order is publish order.
 * - Events made through this handle reach its `subscribe` listeners before
 *   the write resolves; their pub/sub echo is dropped by `(room, seq)`.
 *   Other instances' events arrive over pub/sub for rooms passed to
 *   `watchRoom`. A missed message (reconnect, or a subscription still being
 *   set up) is caught up from the room's log; one older than the log shows as
 *   a sequence gap, which makes the server reload the room. While a room
 *   catches up, or after a gap in what arrived, its newer events are held
 *   back until the log filled in the older ones, so delivery stays in order.
 * - Leases: `renewLease` records the instance's expiry in a sorted set (and a
 *   key with a real TTL). `sweep` on any instance reaps each lapsed instance
 *   in one script, so its leaves are emitted exactly once. State expiry works
 *   the same way through a sorted set of expiry times; reads hide expired
 *   states before any sweep. Keyspace notifications are not used.
 * - Restarts: both connections reconnect by themselves and channels are
 *   resubscribed. When Redis comes back without this instance's data (an
 *   epoch key is gone or changed, or the instance's lease is missing), or a
 *   watched room moved on further than its log reaches, the `onReset`
 *   listeners run so the server re-registers its live presence and reloads
 *   its room views. Writes that create entries (`join`, `setMetadata`) wait
 *   while the connection is down, and after a loss until their instance's
 *   lease is renewed: one that landed first in an empty Redis would outlive
 *   a crash of its instance unreaped.
 *
 * The room is the unit of atomicity: every script touches one room's keys,
 * which share the room's hash slot, so it runs on one Redis (or a primary
 * with replicas) from 6.2 on, and on a Redis Cluster (7.0+, `cluster`).
 *
 * @example
 * ```ts ignore
 * import { PresenceServer } from "@presently/presently";
 * import { RedisPresenceStore } from "@presently/presently/redis";
 *
 * const store = new RedisPresenceStore({ url: "redis://127.0.0.1:6379" });
 * const server = new PresenceServer({ store, leaseTtlMs: 10_000 });
 * server.trackPresence(/^room:/);
 * // ... serve it with @presently/presently/deno or /bun, then:
 * await server.close();
 * await store.close();
 * ```
 */
export class RedisPresenceStore implements PresenceStore {
  readonly #url: string;
  readonly #cluster: string[] | null;
  readonly #prefix: string;
  /** Prefix of the keys outside rooms that are not split into buckets. */
  readonly #g: string;
  readonly #keyTtlMs: number;
  readonly #base: string[];
  readonly #maxReconnectDelayMs: number;
  readonly #connectTimeoutMs: number;
  readonly #onError: (error: unknown, event: PresenceEvent | null) => void;
  #driver: Promise<RedisDriver> | null = null;
  /** Tail of the pending state writes per member, see `setState`. */
  #stateChains = new Map<string, Promise<void>>();
  #listeners = new Listeners<PresenceEvent>((error, event) => this.#onError(error, event));
  #resets = new Listeners<undefined>((error) => this.#report(error, null));
  readonly #feed: RedisFeed = new RedisFeed({
    closed: () => this.#closed,
    channel: (room) => `${this.#roomBase(room)}c`,
    subscribe: async (channel) => await (await this.#connect()).subscribe(channel),
    unsubscribe: async (channel) => await (await this.#connect()).unsubscribe(channel),
    catchUp: async (room, args) => asStrings(await this.#room("catchUp", room, args)),
    deliver: (event) => this.#listeners.emit(event),
    reset: () => this.#queueReset(),
    report: (error) => this.#report(error, null),
  });
  /** Instances this handle holds a lease for. */
  #leases = new Set<string>();
  /**
   * The write fence. Writes that create entries (`join`, `setMetadata`)
   * wait while the command connection is down (`#drops` moved past what the
   * last recovery checked), and after a data loss until their instance's
   * lease is renewed (`#fenced`). Otherwise a write queued while
   * reconnecting lands in a restarted Redis before the instance's lease
   * does, and should the instance crash then, no sweep ever reaps it.
   */
  #drops = 0;
  #checkedDrops = 0;
  #fenced = new Set<string>();
  /** Settles when the fence next moves (made by the first waiter). */
  #fenceMove: { moved: Promise<void>; move: () => void } | null = null;
  /** The driver once connected (for `#fence`, which asks it synchronously). */
  #live: RedisDriver | null = null;
  /**
   * Redis's clock minus this process's wall clock (ms), measured at each
   * lease renewal: every instant sent to Redis is moved onto Redis's clock,
   * so instances whose clocks are skewed agree on when leases and states
   * lapse.
   */
  #offset = 0;
  #touchedAt = new Map<string, number>();
  /**
   * The epoch id per epoch key: one key on a single Redis, one on each
   * master of a cluster (a master that comes back empty loses its own).
   */
  #epochs = new Map<string, string>();
  /**
   * The write counters last read, per instance renewed here (the renewal
   * counter, key `instance`) and per room written (key `instance\0room`):
   * each goes back only on a rollback.
   */
  #renewals = new Map<string, number>();
  /** The generation of each instance renewed here (see `RENEW`). */
  #gens = new Map<string, string>();
  /** Rooms recorded in each instance's index of rooms it has members in. */
  #indexed = new Map<string, Set<string>>();
  /** The hook registry as last read, and when that read started. */
  #hooks: HookEntry[] = [];
  #hooksAt = -Infinity;
  #hooksRead: Promise<HookEntry[]> | null = null;
  /** A rollback was seen: the next recovery treats it as lost data. */
  #rolledBack = false;
  #recovering = false;
  #retryRecover: ReturnType<typeof setTimeout> | null = null;
  /** Catch-ups scheduled after a channel moved. */
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #recoverAgain = false;
  #resetQueued = false;
  #closed = false;

  /**
   * Create a store and start connecting. Calls made before the connection is
   * up wait for it.
   *
   * @param options Server URL, key prefix, backstop TTLs, error hook.
   * @throws {PresenceError} `bad_request` when an option is out of range.
   *
   * @example
   * ```ts ignore
   * import { RedisPresenceStore } from "@presently/presently/redis";
   * const store = new RedisPresenceStore({
   *   url: "redis://:secret@redis.internal:6379/0",
   *   prefix: "myapp:presence:",
   * });
   * await store.close();
   * ```
   */
  constructor(options: RedisPresenceStoreOptions = {}) {
    this.#url = options.url ?? DEFAULT_URL;
    this.#cluster = options.cluster ?? null;
    if (this.#cluster !== null && this.#cluster.length === 0) {
      throw new PresenceError("bad_request", "Option cluster needs at least one seed node");
    }
    this.#prefix = options.prefix ?? DEFAULT_PREFIX;
    if (this.#prefix.includes("{") || this.#prefix.includes("}")) {
      throw new PresenceError(
        "bad_request",
        `Option prefix may not contain "{" or "}": got ${JSON.stringify(this.#prefix)}`,
      );
    }
    this.#g = `${this.#prefix}{@}:`;
    this.#keyTtlMs = Math.max(60_000, options.keyTtlMs ?? 86_400_000);
    const logLength = options.logLength ?? 64;
    const logTtlMs = options.logTtlMs ?? 60_000;
    if (!(Number.isInteger(logLength) && logLength >= 1)) {
      throw new PresenceError(
        "bad_request",
        `Option logLength must be a positive integer: got ${logLength}`,
      );
    }
    if (!(logTtlMs >= 1)) {
      throw new PresenceError(
        "bad_request",
        `Option logTtlMs must be at least 1: got ${logTtlMs}`,
      );
    }
    this.#base = [
      String(Math.ceil(this.#keyTtlMs)),
      String(logLength),
      String(Math.ceil(logTtlMs)),
      this.#cluster === null ? "PUBLISH" : "SPUBLISH",
    ];
    this.#maxReconnectDelayMs = options.maxReconnectDelayMs ?? 2000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.#onError = options.onError ??
      ((error, event) =>
        console.error(
          event === null
            ? "Presence store: Redis connection error:"
            : "A presence store listener threw:",
          error,
        ));
    received.set(this, this.#feed.received);
    this.#connect().catch(() => {});
  }

  async renewLease(
    instanceId: string,
    ttlMs: number,
    now: number,
  ): Promise<void> {
    const sent = Date.now();
    const g = this.#g;
    const [reply, redisNow, counter, gen] = asStrings(
      await this.#slot("renew", [
        `${g}leases`,
        `${g}lease:${instanceId}`,
        `${g}w:${instanceId}`,
        `${g}gens`,
        `${g}reaping`,
        `${g}ir:${instanceId}`,
        `${g}k:${instanceId}`,
        `${g}gen`,
      ], [
        instanceId,
        time(this.#toRedis(now) + ttlMs, "lease expiry"),
        String(Math.max(1, Math.ceil(ttlMs))),
        String(Math.ceil(this.#keyTtlMs)),
      ]),
    );
    // Redis's clock minus this process's wall clock, at the middle of the
    // round trip, changed only when it moved by more than the measurement
    // can tell (half the round trip, plus a ms of TIME's rounding): clocks
    // that agree keep offset 0. The lease written above used the previous
    // offset, which is close enough (renewals come every third of a lease).
    const rtt = Date.now() - sent;
    const measured = Number(redisNow) - (sent + rtt / 2);
    if (Math.abs(measured - this.#offset) > rtt / 2 + 1) {
      this.#offset = Math.abs(measured) > rtt / 2 + 1 ? measured : 0;
    }
    const held = this.#leases.has(instanceId);
    this.#leases.add(instanceId);
    if (this.#fenced.delete(instanceId)) this.#fenceChanged();
    this.#gens.set(instanceId, gen!);
    // A new generation: the index of its rooms may be gone with the old one.
    if (reply === "0") this.#indexed.delete(instanceId);
    if (!this.#checkCounter(instanceId, Number(counter)) && held && reply === "0") {
      this.#queueReset();
    }
    const touched = this.#touchedAt.get(instanceId);
    const wall = Date.now();
    if (touched === undefined) this.#touchedAt.set(instanceId, wall);
    else if (wall - touched >= this.#keyTtlMs / 4) {
      this.#touchedAt.set(instanceId, wall);
      await this.#touch(instanceId);
    }
  }

  async releaseLease(instanceId: string): Promise<void> {
    this.#leases.delete(instanceId);
    if (this.#fenced.delete(instanceId)) this.#fenceChanged();
    this.#touchedAt.delete(instanceId);
    const g = this.#g;
    const stamp = String(this.#toRedis(Date.now()));
    const rooms = asStrings(await this.#slot("call", [`${g}ir:${instanceId}`], ["SMEMBERS"]));
    const cids = asStrings(await this.#slot("call", [`${g}k:${instanceId}`], ["SMEMBERS"]));
    await this.#reapRooms(instanceId, ALL_GENERATIONS, rooms, "close", stamp);
    await this.#dropMetas(instanceId, ALL_GENERATIONS, cids);
    await this.#slot("finishReap", this.#reapKeys(instanceId), [instanceId, ""]);
    this.#indexed.delete(instanceId);
    this.#gens.delete(instanceId);
  }

  async join(
    room: string,
    connectionId: string,
    instanceId: string,
    meta: Metadata,
    now: number,
    userId: string | null = null,
  ): Promise<PresenceEvent | null> {
    await this.#fence(instanceId);
    await this.#feed.settled(room);
    const stamp = time(this.#toRedis(now), "time");
    const json = JSON.stringify(meta);
    // Indexed before the member exists, so a crash in between leaves no
    // member that reaping would not find.
    await this.#indexRoom(instanceId, room);
    const result = await this.#mutate("join", room, [
      connectionId,
      instanceId,
      this.#gens.get(instanceId) ?? "0",
      json,
      stamp,
      this.#feed.since(room),
      userId ?? "",
    ]);
    if (result.status !== "ok" && result.status !== "first") return null;
    const event = result.events.at(-1)!;
    const g = this.#g;
    await Promise.all([
      result.status === "first" ? this.#markIndex(`${g}R`, `${g}Rv`, room, "0") : null,
      userId !== null && event.type === "join" && event.firstOfUser
        ? this.#markSet(`${this.#userBase(userId)}r`, `${this.#userBase(userId)}rv`, room)
        : null,
    ]);
    return event;
  }

  async leave(
    room: string,
    connectionId: string,
    reason: LeaveReason,
    now: number,
  ): Promise<PresenceEvent | null> {
    await this.#feed.settled(room);
    const result = await this.#mutate("leave", room, [
      connectionId,
      reason,
      time(this.#toRedis(now), "time"),
      this.#feed.since(room),
    ]);
    return result.status === "ok" ? result.events.at(-1)! : null;
  }

  async setState(
    room: string,
    connectionId: string,
    write: StateWrite,
    expiresAt: number | null,
    now: number,
  ): Promise<PresenceEvent | null | "not_member"> {
    const at = expiresAt === null ? "" : time(this.#toRedis(expiresAt), "expiry");
    const stamp = time(this.#toRedis(now), "time");
    // One write at a time per member from this handle: keeps call order, and
    // its own patches never conflict with each other.
    const key = `${room.length}:${room}${connectionId}`;
    const previous = this.#stateChains.get(key) ?? Promise.resolve();
    const run = previous.then(() => this.#writeState(room, connectionId, write, at, stamp));
    const tail = run.then(() => {}, () => {});
    this.#stateChains.set(key, tail);
    tail.then(() => {
      if (this.#stateChains.get(key) === tail) this.#stateChains.delete(key);
    });
    return await run;
  }

  async #writeState(
    room: string,
    connectionId: string,
    write: StateWrite,
    at: string,
    stamp: string,
  ): Promise<PresenceEvent | null | "not_member"> {
    await this.#feed.settled(room);
    const clear = clears(write);
    if (clear || write.kind === "set") {
      const state = clear ? "" : JSON.stringify((write as { state: unknown }).state);
      const result = await this.#mutate("setState", room, [
        connectionId,
        clear ? "clear" : "set",
        state,
        "",
        at,
        stamp,
        "",
        this.#feed.since(room),
      ]);
      return await this.#stateOutcome(room, result, clear ? "" : at);
    }
    const patchJson = JSON.stringify((write as { patch: unknown }).patch);
    for (let attempt = 0; attempt < PATCH_ATTEMPTS; attempt++) {
      if (attempt > 0) {
        // Another instance won the race: back off a little, with jitter.
        const ms = Math.random() * Math.min(50, 2 ** attempt);
        await new Promise((resolve) => setTimeout(resolve, ms));
      }
      const read = asStrings(await this.#room("readState", room, [connectionId, stamp]));
      if (read[0] !== "1") return "not_member";
      const base = read[2] === undefined ? undefined : JSON.parse(read[2]);
      const { value } = applyWrite(write, base);
      const result = await this.#mutate("setState", room, [
        connectionId,
        "patch",
        JSON.stringify(value),
        patchJson,
        at,
        stamp,
        read[1]!,
        this.#feed.since(room),
      ]);
      if (result.status !== "conflict") return await this.#stateOutcome(room, result, at);
    }
    throw new PresenceError(
      "store_error",
      `State patch kept conflicting: room "${room}", connection "${connectionId}"`,
    );
  }

  async snapshot(room: string, now: number): Promise<RoomSnapshot> {
    const r = asStrings(await this.#room("snapshot", room, []));
    let i = 1;
    const pairs = (): string[] => {
      const n = Number(r[i++]);
      const out = r.slice(i, i + n);
      i += n;
      return out;
    };
    const owners = pairs();
    const metas = pairs();
    const states = pairs();
    const userPairs = pairs();
    const users = new Map<string, string>();
    for (let j = 0; j < userPairs.length; j += 2) users.set(userPairs[j]!, userPairs[j + 1]!);
    const metaOf = new Map<string, string>();
    for (let j = 0; j < metas.length; j += 2) {
      metaOf.set(metas[j]!, metas[j + 1]!);
    }
    const order: Array<[number, string]> = [];
    for (let j = 0; j < owners.length; j += 2) {
      const v = owners[j + 1]!;
      order.push([Number(v.slice(0, v.indexOf(":"))), owners[j]!]);
    }
    order.sort((x, y) => x[0] - y[0]);
    const joined = new Map(order.map(([seq, id]) => [id, seq]));
    const present: PresentEntry[] = order.map(([, id]) => {
      const meta = metaOf.get(id);
      return { id, meta: meta === undefined ? {} : JSON.parse(meta) };
    });
    const live = new Map<string, unknown>();
    for (let j = 0; j < states.length; j += 2) {
      const v = states[j + 1]!;
      const a = v.indexOf(":");
      const b = v.indexOf(":", a + 1);
      const at = v.slice(0, a);
      if (at === "" || Number(at) > this.#toRedis(now)) {
        live.set(states[j]!, JSON.parse(v.slice(b + 1)));
      }
    }
    return { seq: Number(r[0]), present, states: live, users, joined };
  }

  /**
   * Check a write counter of an instance this handle renews: its renewal
   * counter (key: the instance), or its counter in a room it wrote (key:
   * `instance\0room`). Replies on one connection come in order and every
   * write bumps the counter, so it only grows; one that did not means Redis
   * came back from an older copy of its data (a failover that lost the last
   * writes): every view resyncs and the server drops what it owns but does
   * not hold (`owned`). True when a rollback was found.
   */
  #checkCounter(key: string, w: number): boolean {
    const cut = key.indexOf("\0");
    const instance = cut < 0 ? key : key.slice(0, cut);
    if (!this.#leases.has(instance)) return false;
    const last = this.#renewals.get(key);
    this.#renewals.set(key, w);
    if (last === undefined || w > last) return false;
    this.#rolledBack = true;
    this.#recover();
    return true;
  }

  /** What `instanceId` owns here: its memberships and the metadata it wrote. */
  async owned(instanceId: string): Promise<OwnedEntries> {
    const g = this.#g;
    const rooms = asStrings(await this.#slot("call", [`${g}ir:${instanceId}`], ["SMEMBERS"]));
    const members: OwnedEntries["members"] = [];
    await this.#each(rooms, async (room) => {
      const ids = asStrings(await this.#room("roomOwned", room, [instanceId]));
      for (const connectionId of ids) members.push({ room, connectionId });
    });
    // The index only grows (a later write by another instance, or a delete,
    // leaves the id in it): keep the ids whose metadata this instance wrote last.
    const indexed = asStrings(await this.#slot("call", [`${g}k:${instanceId}`], ["SMEMBERS"]));
    const metadata: string[] = [];
    await this.#each(indexed, async (connectionId) => {
      const d = this.#metaKey(connectionId);
      const owner = await this.#cmd(["HGET", d, "i"], d);
      if (owner !== null && owner !== undefined && String(owner) === instanceId) {
        metadata.push(connectionId);
      }
    });
    return { members, metadata };
  }

  /** Connections and distinct users in a room: two `HLEN`s, no member list. */
  async count(room: string, _now: number): Promise<RoomCount> {
    const r = asStrings(await this.#room("count", room, []));
    return { connections: Number(r[0]), users: Number(r[1]) };
  }

  async listRooms(options: ListRoomsOptions = {}): Promise<RoomPage> {
    const limit = pageSize(options);
    const g = this.#g;
    const found: string[] = [];
    let cursor = options.cursor ?? "";
    for (;;) {
      const r = asStrings(
        await this.#slot("indexLex", [`${g}R`, `${g}Rv`], [
          options.prefix ?? "",
          cursor,
          String(limit + 1 - found.length),
        ]),
      );
      if (r.length === 0) break;
      const names = pairs(r);
      const live = await Promise.all(names.map(async ([room, seen]) => {
        const [connections] = asStrings(await this.#room("count", room, []));
        if (connections !== "0") return true;
        await this.#slot("settleIndex", [`${g}R`, `${g}Rv`], [room, seen, ""]);
        return false;
      }));
      names.forEach(([room], i) => {
        if (live[i]) found.push(room);
      });
      cursor = names.at(-1)![0];
      if (found.length > limit) break;
    }
    if (found.length > limit) return { rooms: found.slice(0, limit), cursor: found[limit - 1]! };
    return { rooms: found, cursor: null };
  }

  /** The rooms where `userId` has a connection, ascending (checked against each room). */
  async userRooms(userId: string): Promise<string[]> {
    const base = this.#userBase(userId);
    const r = asStrings(await this.#slot("indexSet", [`${base}r`, `${base}rv`], []));
    const rooms: string[] = [];
    await this.#each(pairs(r), async ([room, seen]) => {
      if (Number(await this.#room("hasUser", room, [userId])) === 1) rooms.push(room);
      else await this.#slot("settleSet", [`${base}r`, `${base}rv`], [room, seen]);
    });
    return rooms.sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  }

  async registerHook(name: string, types: readonly HookEventType[]): Promise<void> {
    const started = Date.now();
    const all = asStrings(
      await this.#slot("registerHook", [`${this.#g}hooks`], [name, hookTypes(types)]),
    );
    this.#setHooks(all, started);
    await sleep(HOOKS_FRESH_MS + 20);
  }

  /** Stop queueing for hook `name` and drop its queues. */
  async dropHook(name: string): Promise<void> {
    await this.#slot("call", [`${this.#g}hooks`], ["HDEL", name]);
    this.#hooksAt = -Infinity;
    // Writes that began before now may still queue: let them pass first.
    await sleep(HOOKS_FRESH_MS + 20);
    const hook = [{ name, letters: "" }];
    for (let k = 0; k < BUCKETS; k++) {
      const [z, v] = this.#hookIndex(name, k);
      const r = asStrings(await this.#slot("indexDue", [z, v], ["+inf", "1000000"]));
      await this.#each(pairs(r), ([room]) => this.#room("dropHookRoom", room, [], hook));
      await Promise.all([this.#cmd(["DEL", z], z), this.#cmd(["DEL", v], v)]);
    }
  }

  async claimHooks(
    name: string,
    now: number,
    leaseMs: number,
    max: number,
  ): Promise<HookDelivery[]> {
    const stamp = time(this.#toRedis(now), "time");
    const lease = time(leaseMs, "lease");
    const hook = [{ name, letters: "" }];
    const out: HookDelivery[] = [];
    for (let k = 0; k < BUCKETS && out.length < max; k++) {
      const [z, v] = this.#hookIndex(name, k);
      const r = asStrings(await this.#slot("indexDue", [z, v], [stamp, String(SWEEP_ROOMS)]));
      for (const [room, seen] of pairs(r)) {
        if (out.length >= max) break;
        const c = asStrings(
          await this.#room("claimHook", room, [stamp, lease, String(max - out.length)], hook),
        );
        await this.#slot("settleIndex", [z, v], [room, seen, c[0]!]);
        for (let i = 1; i + 2 < c.length; i += 3) {
          out.push({ key: c[i]!, attempt: Number(c[i + 1]), event: JSON.parse(c[i + 2]!) });
        }
      }
    }
    return out;
  }

  /** Remove a delivered event, or make a failed one due at `retryAt`. */
  async settleHook(name: string, key: string, retryAt: number | null): Promise<void> {
    const at = retryAt === null ? "" : time(this.#toRedis(retryAt), "retry time");
    // The key is "<room>:<seq>:<timestamp>".
    const room = key.slice(0, key.lastIndexOf(":", key.lastIndexOf(":") - 1));
    await this.#room("settleHook", room, [key, at], [{ name, letters: "" }]);
    if (at !== "") {
      const [z, v] = this.#hookIndex(name, bucketOf(room));
      await this.#markIndex(z, v, room, at);
    }
  }

  async setMetadata(
    connectionId: string,
    instanceId: string,
    meta: Metadata,
  ): Promise<void> {
    await this.#fence(instanceId);
    const k = `${this.#g}k:${instanceId}`;
    // Indexed first: a crash in between leaves nothing that reaping misses.
    await Promise.all([
      this.#cmd(["SADD", k, connectionId], k),
      this.#cmd(["PEXPIRE", k, String(this.#keyTtlMs)], k),
    ]);
    const d = this.#metaKey(connectionId);
    await Promise.all([
      this.#cmd(
        [
          "HSET",
          d,
          "i",
          instanceId,
          "g",
          this.#gens.get(instanceId) ?? "0",
          "m",
          JSON.stringify(meta),
        ],
        d,
      ),
      this.#cmd(["PEXPIRE", d, String(this.#keyTtlMs)], d),
    ]);
  }

  async getMetadata(connectionId: string): Promise<Metadata | null> {
    const d = this.#metaKey(connectionId);
    const reply = await this.#cmd(["HGET", d, "m"], d);
    return reply === null || reply === undefined ? null : JSON.parse(String(reply));
  }

  async deleteMetadata(connectionId: string): Promise<void> {
    const d = this.#metaKey(connectionId);
    await this.#cmd(["DEL", d], d);
  }

  subscribe(listener: StoreListener): () => void {
    return this.#listeners.add(listener);
  }

  watchRoom(room: string): () => void {
    return this.#feed.watch(room);
  }

  /** An instant of the caller's clock on Redis's clock. */
  #toRedis(t: number): number {
    return Math.round(t + this.#offset);
  }

  async sweep(now: number): Promise<void> {
    const stamp = time(this.#toRedis(now), "time");
    const leases = `${this.#g}leases`;
    const lapsed = asStrings(
      await this.#slot("call", [leases], [
        "ZRANGEBYSCORE",
        "-inf",
        stamp,
        "LIMIT",
        "0",
        String(SWEEP_INSTANCES + this.#leases.size),
      ]),
    );
    for (const instance of lapsed) {
      if (!this.#leases.has(instance)) await this.#reap(instance, stamp);
    }
    await Promise.all(
      Array.from({ length: BUCKETS }, (_, k) => this.#sweepStates(k, stamp)),
    );
  }

  /** Expire due states in the rooms of one bucket of the due-state index. */
  async #sweepStates(k: number, stamp: string): Promise<void> {
    const [z, v] = this.#dueIndex(k);
    for (let round = 0; round < 64; round++) {
      const r = asStrings(await this.#slot("indexDue", [z, v], [stamp, String(SWEEP_ROOMS)]));
      if (r.length === 0) return;
      await this.#each(pairs(r), async ([room, seen]) => {
        const result = await this.#mutate("expire", room, [stamp, String(SWEEP_STATES)]);
        await this.#slot("settleIndex", [z, v], [room, seen, result.status]);
      });
    }
  }

  /**
   * Reap a lapsed instance: claim it (another sweeper takes over if this one
   * dies), remove its members room by room (each room's script emits each
   * leave once), forget its metadata, then the instance itself unless a
   * newer generation of it renewed meanwhile.
   */
  async #reap(instance: string, stamp: string): Promise<void> {
    const g = this.#g;
    const claim = await this.#slot("claimReap", [
      `${g}leases`,
      `${g}reaping`,
      `${g}gens`,
      `${g}ir:${instance}`,
      `${g}k:${instance}`,
    ], [instance, stamp, String(Number(stamp) + REAP_CLAIM_MS)]);
    if (claim === null || claim === undefined) return;
    const r = asStrings(claim);
    const gen = r[0]!;
    const n = Number(r[1]);
    await this.#reapRooms(instance, gen, r.slice(2, 2 + n), "instance", stamp);
    await this.#dropMetas(instance, gen, r.slice(2 + n));
    await this.#slot("finishReap", this.#reapKeys(instance), [instance, gen]);
  }

  async #reapRooms(
    instance: string,
    gen: string,
    rooms: string[],
    reason: LeaveReason,
    stamp: string,
  ): Promise<void> {
    await this.#each(rooms, (room) => this.#mutate("reap", room, [instance, gen, reason, stamp]));
  }

  async #dropMetas(instance: string, gen: string, cids: string[]): Promise<void> {
    await this.#each(cids, (cid) => this.#slot("dropMeta", [this.#metaKey(cid)], [instance, gen]));
  }

  #reapKeys(instance: string): string[] {
    const g = this.#g;
    return [
      `${g}leases`,
      `${g}lease:${instance}`,
      `${g}reaping`,
      `${g}gens`,
      `${g}ir:${instance}`,
      `${g}k:${instance}`,
      `${g}w:${instance}`,
    ];
  }

  onReset(listener: () => void): () => void {
    return this.#resets.add(() => listener());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#fenceChanged();
    if (this.#retryRecover !== null) clearTimeout(this.#retryRecover);
    for (const timer of this.#timers) clearTimeout(timer);
    this.#listeners.clear();
    this.#resets.clear();
    this.#feed.close();
    const driver = this.#driver;
    this.#driver = null;
    this.#live = null;
    if (driver !== null) {
      try {
        await (await driver).close();
      } catch {
        // It never connected: nothing to close.
      }
    }
  }

  // -------------------------------------------------------------------------
  // Connection

  #connect(): Promise<RedisDriver> {
    if (this.#closed) {
      return Promise.reject(
        new PresenceError("closed", "The presence store is closed"),
      );
    }
    if (this.#driver !== null) return this.#driver;
    const driver = (async () => {
      const d = await openDriver({
        url: this.#url,
        cluster: this.#cluster,
        homeSlot: crc16("@") % 16384,
        maxReconnectDelayMs: this.#maxReconnectDelayMs,
        connectTimeoutMs: this.#connectTimeoutMs,
      }, {
        message: (_channel, message) => this.#feed.onMessage(message),
        reconnected: () => this.#recover(),
        lost: () => void this.#drops++,
        error: (error) => this.#report(error, null),
        channelMoved: (channel) => this.#channelMoved(channel),
      });
      try {
        this.#epochs = await this.#readEpochs(d);
      } catch (error) {
        await d.close();
        throw error;
      }
      this.#live = d;
      return d;
    })();
    this.#driver = driver;
    // A failed connect is retried by the next call.
    driver.catch((error) => {
      if (this.#driver === driver) this.#driver = null;
      this.#report(error, null);
    });
    return driver;
  }

  async #call<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (error) {
      if (error instanceof PresenceError) throw error;
      throw new PresenceError("store_error", "Redis command failed", {
        cause: error,
      });
    }
  }

  async #evalOn(
    driver: RedisDriver,
    source: string,
    keys: string[],
    args: string[],
  ): Promise<unknown> {
    const sha = (await scriptShas()).get(source)!;
    const tail = [String(keys.length), ...keys, ...args];
    return await this.#patient(async () => {
      try {
        return await driver.command(["EVALSHA", sha, ...tail], keys[0]);
      } catch (error) {
        if (!isNoScript(error)) throw error;
        return await driver.command(["EVAL", source, ...tail], keys[0]);
      }
    });
  }

  /** Run `call` again after a transient cluster answer (slot migration, no quorum). */
  async #patient<T>(call: () => Promise<T>): Promise<T> {
    for (let attempt = 0;; attempt++) {
      try {
        return await call();
      } catch (error) {
        if (!isTransient(error) || attempt >= TRANSIENT_RETRIES || this.#closed) throw error;
        await sleep(Math.min(200, 10 * 2 ** attempt));
      }
    }
  }

  /**
   * Read (or create) the epoch ids: a random id kept in a key that is gone
   * only when Redis lost its data. On a cluster, one key per master, each
   * with a hash tag that falls in that master's slots.
   */
  async #readEpochs(driver: RedisDriver): Promise<Map<string, string>> {
    const keys: string[] = [];
    if (this.#cluster === null) keys.push(`${this.#g}epoch`);
    else {
      const ranges = (await driver.command(["CLUSTER", "SLOTS"])) as Array<
        [number, number, [string, number, string?]]
      >;
      const owner = (slot: number) =>
        ranges.find(([lo, hi]) => slot >= lo && slot <= hi)?.[2]?.slice(0, 2).join(":");
      const masters = new Set(ranges.map(([, , node]) => node.slice(0, 2).join(":")));
      for (let n = 0; masters.size > 0 && n < 100_000; n++) {
        const master = owner(crc16(`@e${n}`) % 16384);
        if (master !== undefined && masters.delete(master)) {
          keys.push(`${this.#prefix}{@e${n}}:epoch`);
        }
      }
    }
    const out = new Map<string, string>();
    for (const key of keys) {
      const r = asStrings(
        await this.#call(this.#evalOn(driver, SLOT_SCRIPTS.epoch, [key], [crypto.randomUUID()])),
      );
      out.set(key, r[0]!);
    }
    return out;
  }

  /** Run a script outside the rooms; all its keys share one slot. */
  async #slot(name: SlotScript, keys: string[], args: string[]): Promise<unknown> {
    const driver = await this.#connect();
    return await this.#call(this.#evalOn(driver, SLOT_SCRIPTS[name], keys, args));
  }

  /** Run a room script on the room's keys (and the given hooks' queues there). */
  async #room(
    name: RoomScript,
    room: string,
    args: string[],
    hooks: readonly HookEntry[] = [],
  ): Promise<unknown> {
    const b = this.#roomBase(room);
    const keys = [
      `${b}q`,
      `${b}o`,
      `${b}m`,
      `${b}s`,
      `${b}l`,
      `${b}u`,
      `${b}n`,
      `${b}x`,
      `${b}w`,
      `${b}c`,
    ];
    for (const h of hooks) keys.push(`${b}h:${h.name}`, `${b}d:${h.name}`);
    const argv = [
      ...this.#base,
      String(hooks.length),
      ...hooks.map((h) => h.letters),
      room,
      ...args,
    ];
    const driver = await this.#connect();
    return await this.#call(this.#evalOn(driver, ROOM_SCRIPTS[name], keys, argv));
  }

  /** One plain command; `key` routes it on a cluster. */
  async #cmd(args: string[], key: string): Promise<unknown> {
    const driver = await this.#connect();
    return await this.#call(this.#patient(() => driver.command(args, key)));
  }

  /** Run `fn` over `items`, a few at a time. */
  async #each<T>(items: T[], fn: (item: T) => Promise<unknown>): Promise<void> {
    for (let i = 0; i < items.length; i += 32) {
      await Promise.all(items.slice(i, i + 32).map(fn));
    }
  }

  /**
   * A room script that answers `[status, stamp, ...events]`: deliver its
   * events, check the writer's counter, and mark the room in the hook
   * indices of the hooks that took one of its events.
   */
  async #mutate(name: RoomScript, room: string, args: string[]): Promise<ScriptResult> {
    const hooks = await this.#hookList();
    const reply = asStrings(await this.#room(name, room, args, hooks));
    const events: PresenceEvent[] = [];
    let waits: Array<Promise<void>> | null = null;
    if (reply[1]) {
      const i = reply[1].indexOf(":");
      this.#checkCounter(`${reply[1].slice(i + 1)}\0${room}`, Number(reply[1].slice(0, i)));
    }
    const letters = new Set<string>();
    for (let i = 2; i < reply.length; i++) {
      const event = JSON.parse(reply[i]!) as PresenceEvent;
      events.push(event);
      letters.add(LETTER[event.type]);
      const wait = this.#feed.offer(event, true);
      if (wait !== null) (waits ??= []).push(wait);
    }
    if (letters.size > 0) {
      const k = bucketOf(room);
      await Promise.all(
        hooks.filter((h) => [...letters].some((l) => h.letters.includes(l))).map((h) => {
          const [z, v] = this.#hookIndex(h.name, k);
          return this.#markIndex(z, v, room, "0");
        }),
      );
    }
    // An event held behind a catch-up still goes out before this resolves.
    if (waits !== null) await Promise.all(waits);
    return { status: reply[0]!, events };
  }

  async #stateOutcome(
    room: string,
    result: ScriptResult,
    at: string,
  ): Promise<PresenceEvent | null | "not_member"> {
    if (result.status === "not_member") return "not_member";
    if (result.status !== "ok") return null;
    if (at !== "") {
      const [z, v] = this.#dueIndex(bucketOf(room));
      await this.#markIndex(z, v, room, at);
    }
    return result.events.at(-1)!;
  }

  // -------------------------------------------------------------------------
  // Keys and indices

  /** Prefix of a room's keys: the prefix and the room's hash tag. */
  #roomBase(room: string): string {
    return this.#prefix + tagged(room);
  }

  #userBase(user: string): string {
    return `${this.#prefix}u${tagged(user)}`;
  }

  #metaKey(connectionId: string): string {
    return `${this.#prefix}d${tagged(connectionId)}m`;
  }

  /** Bucket `k` of the index of rooms with due states: zset and versions. */
  #dueIndex(k: number): [string, string] {
    const b = `${this.#prefix}{@x${k}}:`;
    return [`${b}x`, `${b}xv`];
  }

  /** Bucket `k` of the index of rooms with due events of hook `name`. */
  #hookIndex(name: string, k: number): [string, string] {
    const b = `${this.#prefix}{@h${k}}:`;
    return [`${b}h:${name}`, `${b}hv:${name}`];
  }

  #nonce = 0;
  readonly #handleId = crypto.randomUUID().slice(0, 8);

  /**
   * Put `member` in an index (zset) with `score`, or move it earlier, and
   * give it a new version, after its room was written: a reader that looked
   * at the room before this write sees the version change and keeps it.
   */
  async #markIndex(z: string, v: string, member: string, score: string): Promise<void> {
    await this.#mark(["ZADD", z, "LT", score, member], v, member);
  }

  /** The same for an index that is a set. */
  async #markSet(set: string, v: string, member: string): Promise<void> {
    await this.#mark(["SADD", set, member], v, member);
  }

  /** New version of `member` in `v`, then `add` to its index; both keep their TTL. */
  async #mark(add: string[], v: string, member: string): Promise<void> {
    const index = add[1]!;
    const ttl = String(this.#keyTtlMs);
    await Promise.all([
      this.#cmd(["HSET", v, member, `${this.#handleId}.${++this.#nonce}`], v),
      this.#cmd(add, index),
      this.#cmd(["PEXPIRE", index, ttl], index),
      this.#cmd(["PEXPIRE", v, ttl], v),
    ]);
  }

  /** Record `room` in the instance's index of rooms it has members in. */
  async #indexRoom(instance: string, room: string): Promise<void> {
    let rooms = this.#indexed.get(instance);
    if (rooms?.has(room)) return;
    const key = `${this.#g}ir:${instance}`;
    await Promise.all([
      this.#cmd(["SADD", key, room], key),
      this.#cmd(["PEXPIRE", key, String(this.#keyTtlMs)], key),
    ]);
    rooms = this.#indexed.get(instance);
    if (rooms === undefined) this.#indexed.set(instance, rooms = new Set());
    rooms.add(room);
  }

  /** The hook registry, read again once it is older than `HOOKS_FRESH_MS`. */
  #hookList(): Promise<HookEntry[]> | HookEntry[] {
    const now = Date.now();
    if (now - this.#hooksAt < HOOKS_FRESH_MS) return this.#hooks;
    if (this.#hooksRead !== null && now - this.#hooksReadAt < HOOKS_FRESH_MS) {
      return this.#hooksRead;
    }
    const started = now;
    this.#hooksReadAt = started;
    const read = (async () => {
      const all = asStrings(await this.#slot("call", [`${this.#g}hooks`], ["HGETALL"]));
      return this.#setHooks(all, started);
    })();
    this.#hooksRead = read;
    read.then(() => {
      if (this.#hooksRead === read) this.#hooksRead = null;
    }, () => {
      if (this.#hooksRead === read) this.#hooksRead = null;
    });
    return read;
  }

  #hooksReadAt = -Infinity;

  #setHooks(flat: string[], started: number): HookEntry[] {
    const hooks: HookEntry[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      hooks.push({ name: flat[i]!, letters: flat[i + 1]! });
    }
    if (started >= this.#hooksAt) {
      this.#hooks = hooks;
      this.#hooksAt = started;
    }
    return hooks;
  }

  // -------------------------------------------------------------------------
  // Reconnects and resets

  /** After a reconnect: detect data loss, catch up every watched room. */
  #recover(): void {
    if (this.#closed) return;
    if (this.#recovering) {
      this.#recoverAgain = true;
      return;
    }
    this.#recovering = true;
    (async () => {
      do {
        this.#recoverAgain = false;
        const drops = this.#drops;
        const driver = await this.#connect();
        const epochs = await this.#readEpochs(driver);
        let lost = this.#rolledBack;
        for (const [key, epoch] of epochs) {
          const known = this.#epochs.get(key);
          if (known !== undefined && known !== epoch) lost = true;
        }
        for (const instance of this.#leases) {
          const score = await this.#slot("call", [`${this.#g}leases`], ["ZSCORE", instance]);
          if (score === null || score === undefined) lost = true;
        }
        // A room's shard may have come back from an older copy without any
        // write here since: compare the counters of the rooms written.
        if (!lost) {
          const rolled = await Promise.all(
            [...this.#renewals].filter(([key]) => key.includes("\0")).map(async ([key, w]) => {
              const cut = key.indexOf("\0");
              const c = await this.#room("counter", key.slice(cut + 1), [key.slice(0, cut)]);
              return Number(c) < w;
            }),
          );
          if (rolled.some(Boolean)) lost = true;
        }
        // Only now is the loss known for sure; until here a failure (a node
        // still coming back) keeps the old epochs and the rollback flag, so
        // the retry below finds the loss again.
        this.#epochs = epochs;
        if (lost) {
          this.#rolledBack = false;
          // Until the server renews them, these leases are not ours to check,
          // and their instances' writes wait at the fence.
          for (const instance of this.#leases) this.#fenced.add(instance);
          this.#leases.clear();
          this.#renewals.clear();
          this.#indexed.clear();
          this.#feed.forget();
          this.#queueReset();
        }
        // Checked on the connection that came back: writes may go on.
        if (drops > this.#checkedDrops) {
          this.#checkedDrops = drops;
          this.#fenceChanged();
        }
        const outcomes = await this.#feed.resyncAll();
        if (outcomes.some((o) => o !== "ok")) this.#queueReset();
      } while (this.#recoverAgain && !this.#closed);
    })().catch((error) => {
      if (this.#closed) return;
      this.#report(error, null);
      // Redis (or a node of it) is not all back yet: check again shortly.
      this.#retryRecover ??= setTimeout(() => {
        this.#retryRecover = null;
        this.#recover();
      }, 250);
    }).finally(() => {
      this.#recovering = false;
    });
  }

  /**
   * A watched room's slot moved to another node: its subscription follows,
   * and what was published in between is caught up from the room's log, once
   * the new subscription had time to be in place and once more later.
   */
  #channelMoved(channel: string): void {
    for (const room of this.#feed.rooms()) {
      if (`${this.#roomBase(room)}c` !== channel) continue;
      for (const ms of [300, 2_000]) {
        const timer = setTimeout(() => {
          this.#timers.delete(timer);
          if (this.#closed) return;
          this.#feed.resync(room).then((outcome) => {
            if (outcome !== "ok") this.#queueReset();
          }, (error) => this.#report(error, null));
        }, ms);
        this.#timers.add(timer);
      }
    }
  }

  /** Wait until `instance`'s entry-creating writes may go to Redis (see `#drops`). */
  async #fence(instance: string): Promise<void> {
    const live = this.#live;
    if (live !== null && !live.up() && this.#drops === this.#checkedDrops) {
      // Down, and not known yet (Bun reports no drop): the recovery after the
      // reconnect checks Redis first. The ping makes the client reconnect.
      this.#drops++;
      live.command(["PING"]).catch(() => {});
    }
    while (!this.#closed && (this.#drops > this.#checkedDrops || this.#fenced.has(instance))) {
      // Up again with no check under way (a drop reported without a
      // reconnect, or one this call found): check now rather than wait.
      if (this.#drops > this.#checkedDrops && live?.up() && !this.#recovering) this.#recover();
      if (this.#fenceMove === null) {
        let move!: () => void;
        this.#fenceMove = { moved: new Promise<void>((resolve) => (move = resolve)), move };
      }
      await this.#fenceMove.moved;
    }
  }

  /** The fence moved: its waiters look again. */
  #fenceChanged(): void {
    this.#fenceMove?.move();
    this.#fenceMove = null;
  }

  #queueReset(): void {
    if (this.#resetQueued || this.#closed) return;
    this.#resetQueued = true;
    queueMicrotask(() => {
      this.#resetQueued = false;
      this.#resets.emit(undefined);
    });
  }

  /**
   * Refresh the TTL backstop of what a live instance and its watched rooms
   * still need, and drop rooms where it has no member left from its index.
   */
  async #touch(instanceId: string): Promise<void> {
    const indexed = this.#indexed.get(instanceId) ?? new Set<string>();
    const rooms = new Set([...this.#feed.rooms(), ...indexed]);
    await this.#each([...rooms], (room) => this.#room("touch", room, []));
    const key = `${this.#g}ir:${instanceId}`;
    await this.#each([...indexed], async (room) => {
      const ids = asStrings(await this.#room("roomOwned", room, [instanceId]));
      // A join about to record the room again re-adds it before its script.
      if (ids.length === 0 && this.#indexed.get(instanceId)?.delete(room)) {
        // Its write counter there goes too: a rollback old enough to reach
        // back past a touch period is not looked for (this keeps the map
        // bounded by the rooms the instance is in).
        this.#renewals.delete(`${instanceId}\0${room}`);
        await this.#cmd(["SREM", key, room], key);
      }
    });
    const cids = asStrings(await this.#slot("call", [`${this.#g}k:${instanceId}`], ["SMEMBERS"]));
    await this.#each(cids, (cid) => {
      const d = this.#metaKey(cid);
      return this.#cmd(["PEXPIRE", d, String(this.#keyTtlMs)], d);
    });
  }

  #report(error: unknown, event: PresenceEvent | null): void {
    try {
      this.#onError(error, event);
    } catch {
      // The error hook itself failed: nothing sensible left to do.
    }
  }
}
