// PresenceServer: connections, requests, rooms and housekeeping. Runtime-free:
// adapters hand it sockets through admit() + open().
//
// Why it is long (about 1 800 lines of code): the request handlers, the room
// views' loading and resync, re-registration after a store reset and the
// sweep all read and write the same connection and room state, and splitting
// them would pass that state around for no gain in clarity. What stands on
// its own lives apart: admission.ts (limits), flush.ts (fan-out timing),
// room.ts (a view), connection.ts (the lifecycle), hooks.ts, queries.ts,
// metrics.ts, in_process.ts. docs/ARCHITECTURE.md walks through the flow.

import { type Clock, systemClock, type TimerHandle } from "../clock.ts";
import { PresenceError, type PresenceErrorCode } from "../errors.ts";
import { applyMergePatch } from "../merge_patch.ts";
import {
  type ClientFrame,
  CloseCode,
  encodeCounts,
  encodeError,
  encodeHello,
  encodeMember,
  encodeOk,
  encodeSnapshot,
  type Metadata,
  okHead,
  parseClientFrame,
  type ParseLimits,
  PING_FRAME,
  snapHead,
  utf8Length,
} from "../protocol.ts";
import { MemoryPresenceStore } from "../store/memory.ts";
import type {
  LeaveReason,
  ListRoomsOptions,
  PresenceEvent,
  PresenceStore,
  RoomCount,
  RoomPage,
  RoomSnapshot,
  StateWrite,
} from "../store/types.ts";
import type { AddMemberOptions, PresenceMember, RoomDetails, StateUpdate } from "./queries.ts";
import { Connection } from "./connection.ts";
import { renderMetrics } from "./metrics.ts";
import {
  type HookHost,
  HookRunner,
  type PresenceHookHandler,
  type PresenceHookOptions,
} from "./hooks.ts";
import {
  DEFAULT_LIMITS,
  type PresenceConnection,
  type PresenceLimits,
  type PresenceServerOptions,
  type TrackPresenceOptions,
} from "./options.ts";
import { FlushScheduler } from "./flush.ts";
import { Gate, type Ticket } from "./admission.ts";
import { inProcessWebSocket } from "./in_process.ts";
import { type FanoutContext, Room, type Subscription } from "./room.ts";
import type { Admission, SocketHandlers, SocketLike } from "./socket.ts";

interface Track {
  pattern: string | RegExp;
  options: TrackPresenceOptions;
  ttl: number;
}

/**
 * Counters exposed by `server.stats()`.
 *
 * @example Log the counters as a JSON line
 * ```ts
 * import { PresenceServer, type PresenceStats } from "@presently/presently";
 * const server = new PresenceServer();
 * const stats: PresenceStats = server.stats();
 * console.log(JSON.stringify(stats)); // {"connections":0,"detached":0,"rooms":0,...}
 * await server.close();
 * ```
 */
export interface PresenceStats {
  /** Connections with an open socket. */
  connections: number;
  /** Connections inside their resume grace window. */
  detached: number;
  /** Server-owned members (`addMember`) held by this instance. */
  members: number;
  /** Rooms with a local view (members or subscribers here). */
  rooms: number;
  /** Presence subscriptions held here. */
  subscribers: number;
  /** Requests handled since start. */
  requests: number;
  /** Store events applied since start. */
  eventsIn: number;
  /** Event frames written to sockets or topics since start. */
  framesOut: number;
  /** Store events applied per second, over the last second or so. */
  eventsInPerSecond: number;
  /** Event frames written per second, over the last second or so. */
  framesOutPerSecond: number;
  /** Times a backed-up subscriber was switched to latest-wins resync. */
  coalesced: number;
  /** Sockets closed as slow consumers. */
  slowClosed: number;
  /** Mean store call latency in ms over the last 256 calls. */
  storeLatencyMs: number;
  /** Store calls that failed (timeouts included) since start. */
  storeErrors: number;
  /** Store calls that passed `storeTimeoutMs` since start. */
  storeTimeouts: number;
  /** Outbound bytes queued in open sockets, summed (`bufferedAmount`). */
  bufferedBytes: number;
}

/** The frames that write a state. */
type StateFrame = Extract<ClientFrame, { op: "state" } | { op: "clear" }>;

/** The frame a server-side state write stands for (`null`: clear). */
function stateFrame(
  room: string,
  update: { state?: unknown; patch?: unknown; expireAfter?: number | undefined } | null,
): StateFrame {
  if (update === null) return { op: "clear", id: 0, room };
  const f: StateFrame = { op: "state", id: 0, room };
  if (update.patch !== undefined) f.patch = update.patch;
  else f.state = update.state ?? null;
  if (update.expireAfter !== undefined) f.expireAfter = update.expireAfter;
  return f;
}

/**
 * The metadata of a connection admitted without `authenticate`: one frozen
 * empty object shared by all (an empty object literal is 64 bytes on Bun).
 * `setConnectionMetadata` replaces it; nothing mutates metadata in place.
 */
const NO_METADATA: Metadata = Object.freeze({});

const NOOP_HANDLERS: SocketHandlers = {
  message() {},
  close() {},
  drain() {},
};

function randomId(bytes: number): string {
  const buf = crypto.getRandomValues(new Uint8Array(bytes));
  let s = "";
  for (const b of buf) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function timingSafeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * A resume token's secret: 264 random bits. The token the client holds is
 * the connection's id, a dot, and the secret. The id finds the connection
 * (no map by token); the secret is then compared in constant time. Only the
 * secret is kept (the id is the connection's own). Server-owned and finished
 * connections hold `""`, which no token matches. 33 bytes make 44 base64
 * characters and no padding to cut off: on Bun (JSC) a cut-off copy keeps
 * the whole uncut string alive too (100 bytes per connection, not 64).
 */
function newSecret(): string {
  return randomId(33);
}
/** A store read for one subscriber, and the view's seq when it was read. */
type FreshSnapshot = RoomSnapshot & { viewSeq: number };

/** Longest a subscription waits for a store reset's settle window (ms). */
const MAX_SETTLE_WAIT_MS = 5_000;
/** Longest `batchIntervalMs` (ms): it adds to every event's latency. */
const MAX_BATCH_INTERVAL_MS = 1_000;
/** Events held for a room whose view is loading; past this, reload instead. */
const MAX_EARLY = 10_000;
/**
 * How far back (at least) a view remembers the leaves it applied, to leave a
 * rolled-back ghost out of a snapshot read after a reset: covers a Redis
 * Cluster failover (node timeout 15 s by default, plus the election).
 */
const LEFT_WINDOW_MS = 60_000;

/**
 * The presence server: tracks which connections are in which rooms, their
 * ephemeral states and metadata, and streams join/leave/state events to
 * subscribers. Runtime-free: mount it with `presenceHandler` (Deno) or
 * `bunPresence` (Bun).
 *
 * The examples of its methods are short snippets on `openPair()` from
 * `@presently/presently/testing` (a server and a client connected in
 * memory); this one is a whole setup on a real socket.
 *
 * @example
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { presenceHandler } from "@presently/presently/deno";
 * import { PresenceClient } from "@presently/presently/client";
 *
 * const presence = new PresenceServer({ userKey: "name" });
 * presence.trackPresence(/^room:/);
 * const handler = presenceHandler(presence);
 * const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
 * const client = new PresenceClient(`ws://127.0.0.1:${http.addr.port}/`);
 * await client.connect();
 *
 * await client.joinRoom("room:1");
 * console.log(await presence.getPresentConnections("room:1")); // [client.connectionId]
 *
 * await client.close();
 * await presence.close();
 * await http.shutdown();
 * ```
 */
export class PresenceServer {
  /** This server's instance id in the store. */
  readonly instanceId: string;
  readonly #store: PresenceStore;
  readonly #ownsStore: boolean;
  readonly #clock: Clock;
  readonly #limits: Readonly<PresenceLimits>;
  readonly #parseLimits: ParseLimits;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #graceMs: number;
  readonly #leaseTtlMs: number;
  readonly #storeTimeoutMs: number;
  /** Store calls that passed their deadline and have not settled yet. */
  readonly #late = new Set<Promise<unknown>>();
  /** Store calls in flight, with their deadline (checked by the sweep). */
  readonly #deadlines = new Set<{ at: number; expire: () => void }>();
  readonly #sweepMs: number;
  readonly #countMs: number;
  readonly #options: PresenceServerOptions;
  readonly #userOf: ((meta: Metadata) => string | null) | null;
  readonly #tracks: Track[] = [];
  /** The shortest presence ttl of any track: a connection silent for less expires nowhere. */
  #minTtl = Infinity;
  readonly #conns = new Map<string, Connection>();
  readonly #rooms = new Map<string, Room>();
  readonly #stale = new Set<Subscription>();
  readonly #detached = new Set<Connection>();
  readonly #gate: Gate;
  readonly #streams = new Set<ReadableStreamDefaultController<PresenceEvent>>();
  readonly #onConnect = new Set<(c: PresenceConnection) => void>();
  readonly #onDisconnect = new Set<(c: PresenceConnection) => void>();
  readonly #drains = new Set<Promise<void>>();
  readonly #fanout: FanoutContext;
  readonly #unsubscribeFeed: () => void;
  readonly #ready: Promise<void>;
  readonly #flusher: FlushScheduler;
  #sweepTimer: TimerHandle | null = null;
  #sweeping = false;
  #renewal: Promise<void> | null = null;
  /**
   * Until when the store holds our lease, as far as we know: two thirds of a
   * lease after the last renewal that succeeded was sent, leaving the last
   * third for a write to land. Entries are written only while it does: an
   * entry of an instance without a lease is never reaped, so it would
   * outlive us as a ghost. A process that stalled past it (others may have
   * reaped us) renews before it writes again.
   */
  #leaseUntil = -Infinity;
  /** Store resets noticed so far. */
  #resets = 0;
  /** The last store call failed (an outage, or reconnecting after a restart). */
  #storeFailing = false;
  /** After a store reset: until then, other instances may still be registering again. */
  #settleUntil = 0;
  /** Store writes that failed and must still happen (leaves, cleanup). */
  #retries: Array<() => Promise<void>> = [];
  #retrying = false;
  #closed = false;
  /** Server-owned members of this instance (`addMember`). */
  #members = new Set<Connection>();
  /** Presence hooks drained by this instance, by queue name. */
  #hooks = new Map<string, HookRunner>();
  #lastLiveness: number;
  /**
   * How often the liveness check runs (ms): at most a second, and at most
   * (T − I) / 4, since it also sends the pings: a client that hears no ping
   * or answer for (I + T) / 2 takes its link for dead (docs/PROTOCOL.md), so
   * the check's period plus a sweep must stay well inside (T − I) / 2.
   */
  readonly #livenessMs: number;
  #lastLease: number;
  #lastCount: number;
  #stats = {
    requests: 0,
    eventsIn: 0,
    framesOut: 0,
    coalesced: 0,
    slowClosed: 0,
    storeErrors: 0,
    storeTimeouts: 0,
  };
  #storeLatency: number[] = [];
  #rates = { at: 0, eventsIn: 0, framesOut: 0, eventsInPerSecond: 0, framesOutPerSecond: 0 };

  /**
   * Create a server. It starts its housekeeping loop at once; call `close()`
   * to stop it.
   *
   * @param options Store, authentication, heartbeat, limits and hooks.
   * @throws {PresenceError} `bad_request` when an option is out of range.
   *
   * @example
   * ```ts
   * import { MemoryPresenceStore, PresenceServer } from "@presently/presently";
   * const store = new MemoryPresenceStore();
   * const server = new PresenceServer({
   *   store,
   *   authenticate: (request) => {
   *     const token = new URL(request.url).searchParams.get("token");
   *     return token === "secret" ? { userId: "ada" } : null; // null refuses with 401
   *   },
   *   userKey: "userId",
   *   heartbeat: { intervalMs: 10_000, timeoutMs: 30_000 },
   *   limits: { maxRoomsPerConnection: 20 },
   * });
   * await server.close();
   * await store.close(); // a store passed in is not closed by the server
   * ```
   */
  constructor(options: PresenceServerOptions = {}) {
    if (Array.isArray((options as { publicMetadata?: unknown }).publicMetadata)) {
      throw new PresenceError(
        "bad_request",
        "Option publicMetadata takes a function; list the fields other clients must not see in privateMetadata (renamed in 0.2)",
      );
    }
    this.#options = options;
    this.instanceId = options.instanceId ?? crypto.randomUUID();
    this.#ownsStore = options.store === undefined;
    this.#store = options.store ?? new MemoryPresenceStore();
    this.#clock = options.clock ?? systemClock;
    this.#limits = Object.freeze({ ...DEFAULT_LIMITS, ...options.limits });
    this.#parseLimits = {
      maxFrameBytes: this.#limits.maxFrameBytes,
      maxStateBytes: this.#limits.maxStateBytes,
      maxJsonDepth: this.#limits.maxJsonDepth,
      maxRoomLength: this.#limits.maxRoomLength,
    };
    this.#intervalMs = options.heartbeat?.intervalMs ?? 10_000;
    this.#timeoutMs = options.heartbeat?.timeoutMs ?? 30_000;
    if (!(this.#intervalMs > 0 && this.#timeoutMs > this.#intervalMs)) {
      throw new PresenceError(
        "bad_request",
        "Heartbeat timeoutMs must be greater than intervalMs",
      );
    }
    this.#livenessMs = Math.min(1000, this.#intervalMs, (this.#timeoutMs - this.#intervalMs) / 4);
    this.#graceMs = options.leaveGraceMs ?? 5000;
    this.#leaseTtlMs = options.leaseTtlMs ?? 10_000;
    this.#storeTimeoutMs = options.storeTimeoutMs ?? this.#leaseTtlMs / 4;
    this.#sweepMs = options.sweepIntervalMs ?? 100;
    this.#countMs = options.countIntervalMs ?? 1000;
    const batchIntervalMs = options.batchIntervalMs ?? 0;
    if (!(batchIntervalMs >= 0 && batchIntervalMs <= MAX_BATCH_INTERVAL_MS)) {
      throw new PresenceError(
        "bad_request",
        `batchIntervalMs must be between 0 and ${MAX_BATCH_INTERVAL_MS}`,
      );
    }
    const key = options.userKey;
    this.#userOf = key === undefined
      ? null
      : typeof key === "function"
      ? (meta) => key(meta) ?? null
      : (meta) => {
        const v = meta[key];
        return typeof v === "string" || typeof v === "number" ? String(v) : null;
      };
    this.#gate = new Gate(this.#limits, options.allowedOrigins, this.#userOf);
    this.#fanout = {
      now: () => this.#clock.now(),
      highWater: this.#limits.outboundHighWaterBytes,
      maxPending: this.#limits.maxPendingBytes,
      markStale: (sub) => this.#markStale(sub),
      overflow: (conn) => this.#slowConsumer(conn),
    };
    this.#flusher = new FlushScheduler({
      clock: this.#clock,
      fanout: this.#fanout,
      batchIntervalMs,
      closed: () => this.#closed,
      sent: () => void this.#stats.framesOut++,
      failed: (e) => this.#report("internal", "Fan-out failed", e),
      flushed: (room) => this.#maybeDispose(room),
    });
    const unfeed = this.#store.subscribe((ev) => this.#onStoreEvent(ev));
    const unreset = this.#store.onReset?.((id) => {
      if (id === undefined || id === this.instanceId) this.#onStoreReset();
    });
    this.#unsubscribeFeed = () => {
      unfeed();
      unreset?.();
    };
    const now = this.#clock.now();
    this.#rates.at = now;
    this.#lastLiveness =
      this.#lastLease =
      this.#lastCount =
        now;
    this.#ready = this.#store.renewLease(this.instanceId, this.#leaseTtlMs, now)
      .then(() => void (this.#leaseUntil = now + this.#leaseTtlMs * 2 / 3), (e) => {
        this.#lastLease = -Infinity; // retry at the next sweep
        this.#report("store_error", "Lease registration failed", e);
      });
    this.#sweepTimer = this.#clock.setTimeout(() => this.#sweep(), this.#sweepMs);
  }

  /**
   * Track presence in the room named `pattern`, or in every room matching it.
   * Rooms no pattern matches are refused with `not_tracked`.
   *
   * @param pattern A room name or a RegExp over room names.
   * @param options Guard, TTL and state validation for those rooms.
   * @throws {PresenceError} `bad_request` when `ttl` is too short for the heartbeat.
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * const server = new PresenceServer();
   * server.trackPresence("lobby");
   * server.trackPresence(/^doc:\d+$/, {
   *   guard: (connection) => connection.metadata.role === "editor",
   *   ttl: 60_000,
   *   validateState: (state) => typeof state === "object" || "The state must be an object",
   * });
   * await server.close();
   * ```
   */
  trackPresence(pattern: string | RegExp, options: TrackPresenceOptions = {}): void {
    const ttl = options.ttl ?? this.#timeoutMs;
    if (!(ttl >= this.#intervalMs + 1000)) {
      throw new PresenceError(
        "bad_request",
        `Presence ttl must be at least heartbeat intervalMs + 1000: got ${ttl}`,
      );
    }
    this.#tracks.push({ pattern, options, ttl });
    this.#minTtl = Math.min(this.#minTtl, ttl);
  }

  /**
   * Call `cb` for every new connection (not for resumes).
   *
   * @param cb Receives the connection.
   * @returns A function that removes the callback.
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * import { PresenceClient } from "@presently/presently/client";
   *
   * const presence = new PresenceServer();
   * const connections: string[] = [];
   * const stop = presence.onConnection((connection) => connections.push(connection.id));
   * const WebSocket = presence.inProcessWebSocket(); // no network needed
   * const client = new PresenceClient("ws://presence/", { WebSocket });
   * await client.connect();
   *
   * console.log(connections); // [client.connectionId]
   * stop();
   *
   * await client.close();
   * await presence.close();
   * ```
   */
  onConnection(cb: (connection: PresenceConnection) => void): () => void {
    this.#onConnect.add(cb);
    return () => this.#onConnect.delete(cb);
  }

  /**
   * Call `cb` when a connection is gone for good (after any grace period).
   *
   * @param cb Receives the connection.
   * @returns A function that removes the callback.
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * import { PresenceClient } from "@presently/presently/client";
   *
   * const presence = new PresenceServer();
   * const gone = Promise.withResolvers<string>();
   * presence.onDisconnection((connection) => gone.resolve(connection.id));
   * const WebSocket = presence.inProcessWebSocket(); // no network needed
   * const client = new PresenceClient("ws://presence/", { WebSocket });
   * await client.connect();
   *
   * await client.close(); // a clean close: no grace period
   * console.log("gone:", await gone.promise);
   *
   * await presence.close();
   * ```
   */
  onDisconnection(cb: (connection: PresenceConnection) => void): () => void {
    this.#onDisconnect.add(cb);
    return () => this.#onDisconnect.delete(cb);
  }

  /**
   * Set a connection's metadata. Other clients read the public part with
   * `getConnectionMetadata`; rooms joined later carry it in their join events.
   *
   * @param connection A connection or its id (on this server).
   * @param meta The metadata object.
   * @throws {PresenceError} `not_found` when the connection is not on this server.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair({ privateMetadata: ["email"] });
   * const { presence, client } = pair;
   *
   * const id = client.connectionId!;
   * await presence.setConnectionMetadata(id, { name: "Ada", email: "ada@example.com" });
   * console.log(await client.getConnectionMetadata(id)); // { name: "Ada" }: email is private
   * ```
   */
  async setConnectionMetadata(
    connection: PresenceConnection | string,
    meta: Metadata,
  ): Promise<void> {
    const id = typeof connection === "string" ? connection : connection.id;
    const conn = this.#conns.get(id);
    if (!conn) throw new PresenceError("not_found", `Unknown connection "${id}"`);
    conn.metadata = meta;
    conn.publicMeta = this.#publicOf(meta);
    await this.#writeMetadata(conn);
  }

  /**
   * Write a connection's public metadata to the store. A failure is retried
   * in the background (with the metadata current then) and also thrown.
   */
  async #writeMetadata(conn: Connection): Promise<void> {
    try {
      if (!this.#leaseHeld()) await this.#renewNow();
      await this.#putMetadata(conn);
    } catch (e) {
      this.#report("store_error", "Metadata write failed", e);
      this.#retryLater(() => this.#putMetadata(conn));
      throw e;
    }
  }

  /**
   * Store the connection's current public metadata, again until what landed
   * is still current: a change and a re-registration may land out of order.
   */
  async #putMetadata(conn: Connection): Promise<void> {
    for (;;) {
      const meta = conn.publicMeta;
      if (conn.finished) return;
      if (!this.#leaseHeld()) await this.#renewNow();
      await this.#timed(() => this.#store.setMetadata(conn.id, this.instanceId, meta));
      if (conn.publicMeta === meta) return;
    }
  }

  /**
   * A connection's metadata: the full object for a connection on this server,
   * the public part for one on another instance, `null` when unknown.
   *
   * @param connectionId The connection id.
   * @returns The metadata or `null`.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair({ authenticate: () => ({ userId: "ada" }) });
   * const { presence, client } = pair;
   *
   * console.log(await presence.getConnectionMetadata(client.connectionId!)); // { userId: "ada" }
   * console.log(await presence.getConnectionMetadata("unknown")); // null
   * ```
   */
  async getConnectionMetadata(connectionId: string): Promise<Metadata | null> {
    const conn = this.#conns.get(connectionId);
    if (conn) return conn.metadata;
    return await this.#timed(() => this.#store.getMetadata(connectionId));
  }

  /**
   * The ids of the connections present in a room, across all instances.
   *
   * @param room The room name.
   * @returns Connection ids in join order.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { presence, client } = pair;
   *
   * await client.joinRoom("lobby");
   * console.log(await presence.getPresentConnections("lobby")); // [client.connectionId]
   * ```
   */
  async getPresentConnections(room: string): Promise<string[]> {
    const snap = await this.#timed(() => this.#store.snapshot(room, this.#clock.now()));
    return snap.present.map((p) => p.id);
  }

  /**
   * The current presence states in a room, by connection id.
   *
   * @param room The room name.
   * @returns A map of connection id to state.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { presence, client } = pair;
   *
   * await client.joinRoom("lobby");
   * await client.publishPresenceState("lobby", { state: { typing: true } });
   * const states = await presence.getPresenceStates("lobby");
   * console.log(states.get(client.connectionId!)); // { typing: true }
   * ```
   */
  async getPresenceStates(room: string): Promise<Map<string, unknown>> {
    const snap = await this.#timed(() => this.#store.snapshot(room, this.#clock.now()));
    return snap.states;
  }

  /**
   * Put a connection of this server into a room, bypassing the guard.
   *
   * @param connectionId The connection id.
   * @param room The room name (must be tracked).
   * @returns `true` when it joined, `false` when it was already present.
   * @throws {PresenceError} `not_found` or `not_tracked`.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { presence, client } = pair;
   *
   * console.log(await presence.addToRoom(client.connectionId!, "lobby")); // true
   * console.log(await presence.getPresentConnections("lobby")); // [client.connectionId]
   * ```
   */
  async addToRoom(connectionId: string, room: string): Promise<boolean> {
    const conn = this.#local(connectionId);
    if (!this.#track(room)) {
      throw new PresenceError("not_tracked", `Room "${room}" is not tracked`);
    }
    let joined = false;
    await this.#enqueueTask(conn, async () => {
      joined = (await this.#join(conn, room)).joined;
    });
    return joined;
  }

  /**
   * Close a connection of this server for good (e.g. to revoke a user): its
   * socket is closed with `code` and it leaves its rooms at once, with no
   * resume window. Unknown ids are ignored.
   *
   * @param connectionId The connection id.
   * @param code The close code. Default `4401` (unauthorized).
   * @param reason The close reason.
   * @returns `true` when the connection was found.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { presence, client } = pair;
   *
   * const closed = Promise.withResolvers<void>();
   * client.onStatus((status) => {
   *   if (status === "unauthorized") closed.resolve();
   * });
   * console.log(presence.disconnect(client.connectionId!)); // true
   * await closed.promise; // 4401: the client stops with "unauthorized", no reconnect
   * ```
   */
  disconnect(
    connectionId: string,
    code: number = CloseCode.unauthorized,
    reason = "Disconnected by the server",
  ): boolean {
    const conn = this.#conns.get(connectionId);
    if (!conn || conn.finished) return false;
    const socket = conn.socket;
    if (socket) {
      this.#detach(conn);
      try {
        socket.close(code, reason);
      } catch { /* already closed */ }
    }
    this.#finish(conn, "close");
    return true;
  }

  /**
   * Take a connection of this server out of a room.
   *
   * @param connectionId The connection id.
   * @param room The room name.
   * @returns `true` when it left, `false` when it was not present.
   * @throws {PresenceError} `not_found` when the connection is unknown.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { presence, client } = pair;
   *
   * await client.joinRoom("lobby");
   * console.log(await presence.removeFromRoom(client.connectionId!, "lobby")); // true
   * console.log(await presence.getPresentConnections("lobby")); // []
   * ```
   */
  async removeFromRoom(connectionId: string, room: string): Promise<boolean> {
    const conn = this.#local(connectionId);
    let left = false;
    await this.#enqueueTask(conn, async () => {
      left = await this.#leave(conn, room, "leave");
    });
    return left;
  }

  /**
   * How many are in a room across the whole cluster: connections, and
   * distinct users (by `userKey`; a connection without one counts as its own
   * user). Read from counters the store keeps, not from the member list.
   *
   * @param room The room name.
   * @returns `{ connections, users }`.
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * const server = new PresenceServer({ userKey: "userId" });
   * server.trackPresence("lobby");
   * await server.addMember("lobby", { metadata: { userId: "ada" } });
   * await server.addMember("lobby", { metadata: { userId: "ada" } }); // a second tab
   * await server.addMember("lobby", { metadata: { userId: "bob" } });
   * console.log(await server.count("lobby")); // { connections: 3, users: 2 }
   * await server.close();
   * ```
   */
  async count(room: string): Promise<RoomCount> {
    return await this.#timed(() => this.#store.count(room, this.#clock.now()));
  }

  /**
   * A room across the whole cluster: its members in join order with their
   * public metadata, state and user, and its counts.
   *
   * @param room The room name.
   * @returns The room's members and counts (none for an empty room).
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * const server = new PresenceServer();
   * server.trackPresence("lobby");
   * const bot = await server.addMember("lobby", { metadata: { name: "Bot" }, state: "idle" });
   * const room = await server.getRoom("lobby");
   * console.log(room.members); // [{ connectionId: bot.id, userId: null, metadata: { name: "Bot" }, state: "idle" }]
   * await server.close();
   * ```
   */
  async getRoom(room: string): Promise<RoomDetails> {
    const snap = await this.#timed(() => this.#store.snapshot(room, this.#clock.now()));
    const users = snap.users ?? new Map<string, string>();
    const members = snap.present.map((p) => ({
      connectionId: p.id,
      userId: users.get(p.id) ?? null,
      metadata: p.meta,
      state: snap.states.get(p.id) ?? null,
    }));
    const distinct = new Set(members.map((m) => m.userId ?? `\0${m.connectionId}`));
    return {
      room,
      seq: snap.seq,
      members,
      count: { connections: members.length, users: distinct.size },
    };
  }

  /**
   * The rooms with at least one member across the cluster, by name, a page
   * at a time.
   *
   * @param options `prefix`, `cursor` (from the previous page) and `limit`
   * (default 100, at most 1000).
   * @returns `{ rooms, cursor }`; `cursor` is `null` on the last page.
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * const server = new PresenceServer();
   * server.trackPresence(/^doc:/);
   * for (const room of ["doc:1", "doc:2", "doc:3"]) await server.addMember(room);
   * const page = await server.listRooms({ prefix: "doc:", limit: 2 });
   * console.log(page.rooms); // ["doc:1", "doc:2"]
   * const next = await server.listRooms({ prefix: "doc:", cursor: page.cursor! });
   * console.log(next); // { rooms: ["doc:3"], cursor: null }
   * await server.close();
   * ```
   */
  async listRooms(options: ListRoomsOptions = {}): Promise<RoomPage> {
    return await this.#timed(() => this.#store.listRooms(options));
  }

  /**
   * The rooms where a user (by `userKey`) has a connection, across the cluster.
   *
   * @param userId The user.
   * @returns Room names, ascending.
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * const server = new PresenceServer();
   * server.trackPresence(/^doc:/);
   * await server.addMember("doc:2", { userId: "ada" });
   * await server.addMember("doc:1", { userId: "ada" });
   * console.log(await server.userRooms("ada")); // ["doc:1", "doc:2"]
   * await server.close();
   * ```
   */
  async userRooms(userId: string): Promise<string[]> {
    return await this.#timed(() => this.#store.userRooms(userId));
  }

  /**
   * Add a server-owned member to a tracked room: a bot, an AI agent, a phone
   * call bridged in. Everyone sees an ordinary join (with its user, if it has
   * one), and its states like anyone's. It leaves with reason `"expired"`
   * `ttlMs` after joining unless renewed, on `remove()`, when this server
   * closes, or, should this instance die, when the others reap it.
   *
   * @param room The room (must be tracked).
   * @param options Metadata, user, state, TTL, id.
   * @returns Its handle.
   * @throws {PresenceError} `not_tracked`, `bad_request` (the id is taken),
   * `invalid_state`, `store_error`.
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * const server = new PresenceServer();
   * server.trackPresence("support");
   * const bot = await server.addMember("support", {
   *   metadata: { name: "Support bot" },
   *   state: { status: "listening" },
   *   ttlMs: null, // until removed
   * });
   * console.log(await server.getPresentConnections("support")); // [bot.id]
   * await bot.remove();
   * await server.close();
   * ```
   */
  async addMember(room: string, options: AddMemberOptions = {}): Promise<PresenceMember> {
    if (this.#closed) throw new PresenceError("closed", "The presence server is closed");
    this.#requireTrack(room);
    const id = options.id ?? `srv_${randomId(12)}`;
    if (this.#conns.has(id)) {
      throw new PresenceError("bad_request", `Connection id "${id}" is taken`);
    }
    const meta = options.metadata ?? {};
    const now = this.#clock.now();
    const ttl = options.ttlMs === undefined ? 60_000 : options.ttlMs;
    const conn = new Connection({
      id,
      secret: "",
      metadata: meta,
      publicMeta: this.#publicOf(meta),
      userId: options.userId ?? this.#userOf?.(meta) ?? null,
      socket: null,
      remoteAddr: null,
      url: "",
      now,
      burst: 0,
      credit: 0,
    });
    conn.memberExpiresAt = ttl === null ? Infinity : now + ttl;
    this.#conns.set(id, conn);
    this.#members.add(conn);
    const write = (f: StateFrame) =>
      this.#enqueueTask(conn, async () => {
        await this.#writeState(conn, f, true);
      });
    // Resolves once its leaves ran: they are queued behind the finish.
    const remove = async () => {
      this.#finish(conn, "leave");
      await this.#enqueueTask(conn, async () => {});
    };
    try {
      await this.#enqueueTask(conn, async () => {
        await this.#writeMetadata(conn);
        await this.#join(conn, room);
        if (options.state !== undefined) {
          const f = stateFrame(room, { state: options.state, expireAfter: options.expireAfter });
          await this.#writeState(conn, f, true);
        }
      });
    } catch (e) {
      await remove();
      throw e;
    }
    return {
      id,
      room,
      setState: (state, o) => write(stateFrame(room, { state, expireAfter: o?.expireAfter })),
      patch: (patch, o) => write(stateFrame(room, { patch, expireAfter: o?.expireAfter })),
      clear: () => write({ op: "clear", id: 0, room }),
      renew: (ms) => {
        const next = ms ?? ttl;
        if (!conn.finished) {
          conn.memberExpiresAt = next === null ? Infinity : this.#clock.now() + next;
        }
      },
      remove,
    };
  }

  /**
   * Set a live connection's state in a room from the server, as if the
   * connection had published it: it must be a member, and the room's
   * `validateState` applies (the room guard does not). Works for connections
   * of this server and its `addMember` members.
   *
   * @param connectionId The connection.
   * @param room The room.
   * @param update `{ state }` to replace, `{ patch }` to merge, with an
   * optional `expireAfter`; `null` clears.
   * @returns The event's sequence number, or `null` when nothing changed.
   * @throws {PresenceError} `not_found`, `not_tracked`, `not_member`, `invalid_state`.
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * const server = new PresenceServer();
   * server.trackPresence("call:7");
   * const caller = await server.addMember("call:7", { metadata: { name: "+1 555 0100" } });
   * await server.setState(caller.id, "call:7", { state: { muted: true } });
   * console.log((await server.getPresenceStates("call:7")).get(caller.id)); // { muted: true }
   * await server.setState(caller.id, "call:7", null); // cleared
   * await server.close();
   * ```
   */
  async setState(
    connectionId: string,
    room: string,
    update: StateUpdate | null,
  ): Promise<number | null> {
    const conn = this.#local(connectionId);
    const f = stateFrame(room, update);
    let seq: number | null = null;
    await this.#enqueueTask(conn, async () => {
      seq = await this.#writeState(conn, f, true);
    });
    return seq;
  }

  /**
   * Deliver every presence event of the matching rooms, across the whole
   * cluster, exactly once to one of the instances that registered this hook
   * (same `name`): the store queues each event in the same atomic step that
   * makes it, and instances claim them. A handler that throws is retried with
   * backoff and the same `key`; an instance that dies mid-delivery leaves the
   * event to another once its claim lapses (so a handler may, rarely, see a
   * key twice: make it idempotent on `key`). At `level: "user"`, only a
   * user's first connection into a room and last one out are delivered.
   *
   * @param handler Called with each event.
   * @param options Which rooms, level, queue name, retries.
   * @returns Stops this instance's deliveries (the queue stays for the others).
   * @throws {PresenceError} `bad_request` when this server already runs a
   * hook with that name.
   *
   * @example Send an email when the last person leaves
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * const server = new PresenceServer({ userKey: "userId" });
   * server.trackPresence(/^doc:/);
   * const sent: string[] = [];
   * const stop = server.onPresence(async (hook) => {
   *   if (hook.type !== "leave") return;
   *   if ((await server.count(hook.room)).connections === 0) sent.push(hook.room);
   * }, { level: "user", rooms: /^doc:/, pollMs: 10 });
   * const ada = await server.addMember("doc:1", { userId: "ada" });
   * await ada.remove();
   * while (sent.length === 0) await new Promise((r) => setTimeout(r, 10));
   * console.log(sent); // ["doc:1"]
   * stop();
   * await server.close();
   * ```
   */
  onPresence(handler: PresenceHookHandler, options: PresenceHookOptions = {}): () => void {
    if (this.#closed) throw new PresenceError("closed", "The presence server is closed");
    const host: HookHost = {
      store: this.#store,
      clock: this.#clock,
      report: (message, cause) => this.#report("hook_failed", message, cause),
      timed: (call) => this.#timed(call),
    };
    const runner = new HookRunner(host, handler, options);
    if (this.#hooks.has(runner.name)) {
      throw new PresenceError(
        "bad_request",
        `This server already runs presence hook "${runner.name}": give the other one a name`,
      );
    }
    this.#hooks.set(runner.name, runner);
    runner.start();
    return () => {
      if (this.#hooks.get(runner.name) === runner) this.#hooks.delete(runner.name);
      void runner.stop();
    };
  }

  /**
   * Every join, leave and state event this server sees (its own, and those of
   * other instances in rooms it watches), as a stream. A reader that falls
   * more than 100 000 events behind is errored rather than buffering forever.
   *
   * @returns A stream of events.
   *
   * @example Log presence changes as JSON lines
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * import { PresenceClient } from "@presently/presently/client";
   *
   * const presence = new PresenceServer();
   * presence.trackPresence("lobby");
   * const WebSocket = presence.inProcessWebSocket(); // no network needed
   * const client = new PresenceClient("ws://presence/", { WebSocket });
   * await client.connect();
   *
   * const logged = (async () => {
   *   for await (const event of presence.events()) console.log(JSON.stringify(event));
   * })();
   * await client.joinRoom("lobby"); // {"type":"join","room":"lobby",...}
   * await client.publishPresenceState("lobby", { state: true }); // {"type":"state",...}
   *
   * await client.close(); // {"type":"leave",...,"reason":"close",...}
   * await presence.close(); // ends the stream
   * await logged;
   * ```
   */
  events(): ReadableStream<PresenceEvent> {
    let ctrl: ReadableStreamDefaultController<PresenceEvent>;
    return new ReadableStream<PresenceEvent>({
      start: (c) => {
        ctrl = c;
        if (this.#closed) c.close();
        else this.#streams.add(c);
      },
      cancel: () => {
        this.#streams.delete(ctrl);
      },
    });
  }

  /**
   * The limits in force: the defaults merged with `options.limits`.
   * Adapters read them to configure the runtime (e.g. Bun's backpressure).
   *
   * @returns The frozen limits.
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * const server = new PresenceServer({ limits: { maxRoomsPerConnection: 20 } });
   * console.log(server.limits.maxRoomsPerConnection, server.limits.maxFrameBytes); // 20 65536
   * await server.close();
   * ```
   */
  get limits(): Readonly<PresenceLimits> {
    return this.#limits;
  }

  /**
   * Counters for monitoring.
   *
   * @returns A snapshot of the server's counters.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { presence, client } = pair;
   *
   * await client.joinRoom("lobby");
   * const { connections, rooms, requests } = presence.stats();
   * console.log(connections, rooms, requests); // 1 1 1
   * ```
   */
  stats(): PresenceStats {
    let subscribers = 0;
    let bufferedBytes = 0;
    for (const c of this.#conns.values()) {
      subscribers += c.subCount;
      bufferedBytes += c.socket?.bufferedAmount ?? 0;
    }
    const lat = this.#storeLatency;
    return {
      connections: this.#conns.size - this.#detached.size - this.#members.size,
      detached: this.#detached.size,
      members: this.#members.size,
      rooms: this.#rooms.size,
      subscribers,
      ...this.#stats,
      eventsInPerSecond: this.#rates.eventsInPerSecond,
      framesOutPerSecond: this.#rates.framesOutPerSecond,
      storeLatencyMs: lat.length ? lat.reduce((a, b) => a + b, 0) / lat.length : 0,
      bufferedBytes,
    };
  }

  /**
   * The counters and gauges of {@link PresenceServer.stats} as Prometheus
   * text (exposition format 0.0.4), each labelled with this instance's id.
   * Serve it as `text/plain; version=0.0.4`; the names are listed in the
   * README (Metrics) and do not change.
   *
   * @returns The exposition text.
   *
   * @example Serve /metrics next to the socket
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * const presence = new PresenceServer();
   * const res = new Response(presence.metrics(), {
   *   headers: { "content-type": "text/plain; version=0.0.4" },
   * });
   * console.log((await res.text()).includes("presently_connections")); // true
   * await presence.close();
   * ```
   */
  metrics(): string {
    return renderMetrics(this.stats(), this.instanceId);
  }

  /**
   * Close every socket and timer, release this instance's presence in the
   * store (emitting the leaves) and, when the server created its store, close it.
   *
   * @returns Resolves once everything is closed.
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * const presence = new PresenceServer();
   * // On shutdown: clients see 1001 and reconnect elsewhere; then stop serving.
   * await presence.close();
   * ```
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sweepTimer !== null) this.#clock.clearTimeout(this.#sweepTimer);
    this.#flusher.stop();
    this.#sweepTimer = null;
    for (const conn of this.#conns.values()) {
      const socket = conn.socket;
      conn.socket = null;
      try {
        socket?.close(CloseCode.goingAway, "Server closing");
      } catch { /* already closed */ }
    }
    await Promise.allSettled([...this.#drains]);
    await Promise.allSettled([...this.#hooks.values()].map((h) => h.stop()));
    this.#hooks.clear();
    await this.#ready;
    try {
      await this.#store.releaseLease(this.instanceId);
    } catch (e) {
      this.#report("store_error", "Lease release failed", e);
    }
    this.#unsubscribeFeed();
    for (const room of this.#rooms.values()) room.unwatch?.();
    for (const conn of this.#conns.values()) {
      conn.finished = true;
      if (conn.memberExpiresAt !== null) continue;
      for (const cb of this.#onDisconnect) this.#safe(() => cb(conn));
    }
    this.#members.clear();
    this.#rooms.clear();
    this.#conns.clear();
    this.#detached.clear();
    this.#stale.clear();
    for (const c of this.#streams) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
    this.#streams.clear();
    if (this.#ownsStore) await this.#store.close();
  }

  // -------------------------------------------------------------------------
  // Adapter seam

  /**
   * Decide whether an upgrade request may connect. Adapters call this before
   * upgrading; a refusal becomes an HTTP response and never reaches the core.
   *
   * @param request The upgrade request.
   * @param remoteAddr The peer address, when the adapter knows it.
   * @returns A ticket for `open`, or the status to answer with.
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * const server = new PresenceServer({ allowedOrigins: ["https://app.example.com"] });
   * const headers = { origin: "https://evil.example.com" };
   * const admission = await server.admit(new Request("http://localhost/", { headers }));
   * if (!admission.ok) {
   *   const response = new Response(admission.message, { status: admission.status });
   *   console.log(response.status); // 403
   * }
   * await server.close();
   * ```
   */
  admit(
    request: Request,
    remoteAddr: string | null = null,
  ): Admission | Promise<Admission> {
    if (this.#closed) return { ok: false, status: 503, message: "Server closing" };
    // A resume takes over a connection the limits already count.
    const resuming = this.#resumable(new URL(request.url).searchParams.get("resume")) !== null;
    const refused = this.#gate.precheck(request, remoteAddr, this.#conns.size, resuming);
    if (refused !== null) return refused;
    const auth = this.#options.authenticate;
    if (!auth) return this.#admitWith(request, remoteAddr, NO_METADATA);
    let result: Metadata | null | Promise<Metadata | null>;
    try {
      result = auth(request);
    } catch (e) {
      return this.#admitWith(request, remoteAddr, null, e);
    }
    if (result instanceof Promise) {
      return result.then(
        (meta) => this.#admitWith(request, remoteAddr, meta),
        (e) => this.#admitWith(request, remoteAddr, null, e),
      );
    }
    return this.#admitWith(request, remoteAddr, result);
  }

  #admitWith(
    request: Request,
    remoteAddr: string | null,
    meta: Metadata | null,
    thrown?: unknown,
  ): Admission {
    return this.#gate.admit(
      request,
      remoteAddr,
      meta,
      thrown,
      (token) => this.#resumable(token) !== null,
    );
  }

  /**
   * A `WebSocket` class whose sockets connect to this server in-process,
   * with no network, through the same admission and handlers the adapters
   * use (so `authenticate`, limits and guards apply). Pass it as
   * `PresenceClient`'s `WebSocket` option: a bot or a bridge in the server's
   * own process, a test, or an example. The URL's query (`?token=…`) and any
   * `headers` reach `authenticate` as the request's.
   *
   * @returns The class; every `new` of it is one connection.
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * import { PresenceClient } from "@presently/presently/client";
   * const presence = new PresenceServer();
   * presence.trackPresence("lobby");
   * const WebSocket = presence.inProcessWebSocket(); // no network needed
   * const bot = new PresenceClient("ws://presence/", { WebSocket });
   * await bot.connect();
   * await bot.joinRoom("lobby");
   * console.log(await presence.getPresentConnections("lobby")); // [bot's connection id]
   * await bot.close();
   * await presence.close();
   * ```
   */
  inProcessWebSocket(): typeof WebSocket {
    return inProcessWebSocket(this);
  }

  /**
   * Attach an upgraded socket. Returns the handlers the adapter forwards the
   * socket's events to.
   *
   * @param socket The socket, wrapped in the `SocketLike` seam.
   * @param ticketValue The ticket from `admit`.
   * @returns Handlers for message, close and drain.
   *
   * @example Write an adapter
   * ```ts
   * import { PresenceServer, type SocketLike } from "@presently/presently";
   * const server = new PresenceServer();
   * const admission = await server.admit(new Request("http://localhost/"), "127.0.0.1");
   * if (!admission.ok) throw new Error(admission.message);
   * // After the runtime upgraded the request, wrap its socket:
   * const sent: string[] = [];
   * const socket: SocketLike = {
   *   send: (data) => void sent.push(data),
   *   close() {},
   *   bufferedAmount: 0,
   * };
   * const handlers = server.open(socket, admission.ticket);
   * console.log(JSON.parse(sent[0]!).t); // "hello"
   * // ...then forward the socket's events to `handlers`:
   * handlers.close(1000, "");
   * await server.close();
   * ```
   */
  open(socket: SocketLike, ticketValue: unknown): SocketHandlers {
    const ticket = ticketValue as Ticket;
    if (this.#closed) {
      socket.close(CloseCode.goingAway, "Server closing");
      return NOOP_HANDLERS;
    }
    if (ticket.badVersion) {
      socket.close(CloseCode.badVersion, "Unsupported protocol version");
      return NOOP_HANDLERS;
    }
    if (ticket.refuse) {
      socket.close(CloseCode.unauthorized, ticket.refuse);
      return NOOP_HANDLERS;
    }
    const now = this.#clock.now();
    let conn: Connection;
    try {
      const resumed = ticket.resume ? this.#resume(ticket.resume, socket, now, ticket.meta) : null;
      // admit() checked the limits, but upgrades in flight all passed it at once.
      if (!resumed && this.#gate.overLimit(ticket, this.#conns.size)) {
        socket.close(CloseCode.tooManyConnections, "Too many connections");
        return NOOP_HANDLERS;
      }
      conn = resumed ?? this.#create(ticket, socket, now);
    } catch (e) {
      // A throwing userKey or publicMetadata must not escape into the runtime
      // (on Deno an exception in onopen ends the process).
      this.#report("internal", "Opening a connection failed", e);
      try {
        socket.close(1011, "Internal error");
      } catch { /* already closed */ }
      return NOOP_HANDLERS;
    }
    return new this.#Handlers(conn, socket);
  }

  /**
   * A connection's socket handlers: methods on a prototype (no closures per
   * connection), a class per server (no field per connection for the server).
   */
  readonly #Handlers = ((server: PresenceServer) =>
    class implements SocketHandlers {
      constructor(readonly conn: Connection, readonly socket: SocketLike) {}
      message(data: unknown): void {
        server.#onMessage(this.conn, this.socket, data);
      }
      close(code: number): void {
        server.#onClose(this.conn, this.socket, code);
      }
      drain(): void {
        server.#checkStale(this.conn);
      }
    })(this);

  #create(ticket: Ticket, socket: SocketLike, now: number): Connection {
    const meta = ticket.meta;
    const id = randomId(16);
    const conn = new Connection({
      id,
      secret: newSecret(),
      metadata: meta,
      publicMeta: this.#publicOf(meta),
      userId: this.#userOf?.(meta) ?? null,
      socket,
      remoteAddr: ticket.remoteAddr,
      url: ticket.url,
      now,
      burst: this.#limits.requestBurst,
      // Enough for a client to restore everything it may hold (join, state
      // and subscription per room) after a reconnect, past the rate limit.
      credit: 2 * this.#limits.maxRoomsPerConnection + this.#limits.maxSubscriptionsPerConnection,
    });
    this.#conns.set(id, conn);
    this.#gate.count(conn.remoteAddr, conn.userId, 1);
    this.#hello(conn, false);
    void this.#enqueueTask(conn, () => this.#writeMetadata(conn)).catch(() => {});
    for (const cb of this.#onConnect) this.#safe(() => cb(conn));
    return conn;
  }

  /** The live connection a resume token names, if any. */
  #resumable(token: string | null): Connection | null {
    if (token === null || this.#graceMs <= 0) return null;
    const dot = token.lastIndexOf(".");
    const conn = dot > 0 ? this.#conns.get(token.slice(0, dot)) : undefined;
    if (!conn || conn.finished || conn.secret === "") return null;
    return timingSafeEqual(conn.secret, token.slice(dot + 1)) ? conn : null;
  }

  #resume(token: string, socket: SocketLike, now: number, meta: Metadata): Connection | null {
    const conn = this.#resumable(token);
    if (!conn) return null;
    // A token is bound to its user: another authenticated user cannot take it over.
    const was = this.#userOf?.(conn.metadata) ?? null;
    const is = this.#userOf?.(meta) ?? null;
    if (was !== null && is !== null && was !== is) return null;
    const old = conn.socket;
    if (old) {
      // The client saw its socket die before we did: retire the old one.
      this.#detach(conn);
      try {
        old.close(CloseCode.unauthorized, "Replaced by a resumed socket");
      } catch { /* already closed */ }
    }
    conn.secret = newSecret();
    conn.socket = socket;
    conn.detachedAt = -1;
    conn.lastSeen = now;
    conn.takeDupes();
    this.#detached.delete(conn);
    this.#hello(conn, true);
    // Re-check guards, then resync every subscription with a fresh snapshot.
    void this.#enqueueTask(conn, async () => {
      for (const room of conn.roomNames()) {
        const track = this.#track(room);
        if (!track || !(await this.#allowed(track, conn, room))) {
          await this.#leave(conn, room, "leave");
        }
      }
      for (const [room, sub] of conn.subs()) {
        const track = this.#track(room);
        if (!track || !(await this.#allowed(track, conn, room))) {
          this.#dropSub(conn, room);
          continue;
        }
        if (sub.count) sub.room.countDirty = true;
        else this.#resync(sub);
      }
    });
    return conn;
  }

  #hello(conn: Connection, resumed: boolean): void {
    conn.send(
      encodeHello(
        conn.id,
        `${conn.id}.${conn.secret}`,
        [this.#intervalMs, this.#timeoutMs],
        resumed,
      ),
    );
  }

  // -------------------------------------------------------------------------
  // Inbound

  #onMessage(conn: Connection, socket: SocketLike, data: unknown): void {
    if (conn.socket !== socket || conn.finished) return;
    try {
      // Answers pile up too when a client asks but never reads: bound them
      // (reading bufferedAmount, a runtime call, only once that could be so).
      if (conn.backlogOver(this.#limits.maxPendingBytes)) {
        this.#slowConsumer(conn);
        return;
      }
      const now = this.#clock.now();
      conn.lastSeen = now;
      const parsed = parseClientFrame(data, this.#parseLimits);
      if (!parsed.ok) {
        conn.send(encodeError(parsed.id, parsed.code, parsed.message));
        if (conn.bad(now, this.#limits.badFramesCloseAfter)) {
          this.#kill(conn, CloseCode.protocolAbuse, "Too many bad frames");
        }
        return;
      }
      const frame = parsed.frame;
      // A request received before a resume and not answered then is
      // answered on this socket; the client sent it again (it cannot know
      // it arrived): drop that copy, or it would get two answers.
      if ("id" in frame && conn.dupes.delete(frame.id)) return;
      // Pongs take a token too (unanswered), so they cannot be flooded for free.
      const restore = "rs" in frame && frame.rs === true && conn.credit > 0;
      if (restore) conn.credit--;
      else if (!conn.take(now, this.#limits.requestsPerSecond, this.#limits.requestBurst)) {
        if (frame.op !== "pong") {
          conn.send(encodeError(frame.id, "rate_limited", "Request rate limit exceeded"));
        }
        if (conn.refused(now, this.#limits.floodCloseAfter)) {
          this.#kill(conn, CloseCode.flood, "Flooding");
        }
        return;
      }
      if (frame.op === "pong") return;
      conn.inbox.push(frame);
      if (!conn.busy) this.#drain(conn);
    } catch (e) {
      this.#report("internal", "Message handler failed", e);
    }
  }

  #enqueueTask(conn: Connection, task: () => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      conn.inbox.push(async () => {
        try {
          await task();
          resolve();
        } catch (e) {
          reject(e);
        }
      });
      if (!conn.busy) this.#drain(conn);
    });
  }

  #drain(conn: Connection): void {
    conn.busy = true;
    const run = (async () => {
      // `busy` must drop in the same tick as the last empty-inbox check, or a
      // frame arriving in between would never be drained.
      while (conn.inbox.length > 0 || (conn.busy = false)) {
        const task = conn.inbox.shift()!;
        if (typeof task === "function") {
          await task();
          continue;
        }
        if (conn.finished) continue;
        this.#stats.requests++;
        conn.current = task.id;
        try {
          await this.#handle(conn, task);
        } catch (e) {
          const code: PresenceErrorCode = e instanceof PresenceError ? e.code : "internal";
          if (code === "internal" || code === "store_error") {
            this.#report(code, `Request "${task.op}" failed`, e);
          }
          conn.send(encodeError(
            task.id,
            code,
            e instanceof PresenceError ? e.message : "Internal error",
          ));
        }
        conn.current = null;
      }
    })().finally(() => {
      this.#drains.delete(run);
    });
    this.#drains.add(run);
  }

  async #handle(conn: Connection, f: ClientFrame): Promise<void> {
    switch (f.op) {
      case "join": {
        const track = this.#requireTrack(f.room);
        if (!conn.inRoom(f.room) && conn.roomCount >= this.#limits.maxRoomsPerConnection) {
          throw new PresenceError(
            "too_many_rooms",
            `Connection is in ${conn.roomCount} rooms: limit is ${this.#limits.maxRoomsPerConnection}`,
          );
        }
        if (f.sub) this.#checkSubLimit(conn, f.room);
        if (!(await this.#allowed(track, conn, f.room))) throw forbidden(f.room);
        const { room } = await this.#join(conn, f.room, f.rs === true);
        const count = f.mode === "count";
        if (f.sub) {
          // Nothing may fail after the join (the client would think it did
          // not join); a join with `sub` starts a new view, which cannot go
          // back in time, so the view's snapshot always does.
          const sub = this.#subscribe(conn, room, f.users === true, count);
          conn.send(
            count
              ? encodeOk(f.id, room.counts())
              : this.#viewSnapshot(room, okHead(f.id), sub.users),
          );
        } else if (count) {
          conn.send(encodeOk(f.id, room.counts()));
        } else {
          conn.send(room.presentFrame(okHead(f.id)));
        }
        return;
      }
      case "leave": {
        const left = await this.#leave(conn, f.room, "leave");
        conn.send(encodeOk(f.id, { left }));
        return;
      }
      case "sub": {
        const track = this.#requireTrack(f.room);
        this.#checkSubLimit(conn, f.room);
        if (!(await this.#allowed(track, conn, f.room))) throw forbidden(f.room);
        let room = await this.#room(f.room);
        const count = f.mode === "count";
        let fresh = count ? null : await this.#fresher(room, f.q);
        // The view was dropped meanwhile (nobody subscribed, its last events
        // flushed): ask the new one, which must wait out a settle window as
        // any new view does (seed 1016: it answered a store read lacking a
        // live member whose instance had not registered again yet).
        while (this.#rooms.get(f.room) !== room) {
          room = await this.#room(f.room);
          fresh = count ? null : await this.#fresher(room, f.q);
        }
        const sub = this.#subscribe(conn, room, f.users === true, count);
        conn.send(
          count ? encodeOk(f.id, room.counts()) : this.#snapshotFor(okHead(f.id), room, sub, fresh),
        );
        return;
      }
      case "unsub":
        this.#dropSub(conn, f.room);
        conn.send(encodeOk(f.id));
        return;
      case "state":
      case "clear":
        conn.send(encodeOk(f.id, { seq: await this.#writeState(conn, f, false) }));
        return;
      case "meta": {
        const local = this.#conns.get(f.cid);
        const meta = local && !local.finished
          ? local.publicMeta
          : await this.#timed(() => this.#store.getMetadata(f.cid));
        conn.send(encodeOk(f.id, { meta }));
        return;
      }
    }
  }

  /**
   * Write a connection's state in a room (a client's `state`/`clear` frame,
   * or the server's own `setState`, which passes `trusted` and skips the
   * room guard). Resolves the seq of the event, or `null` when nothing changed.
   */
  async #writeState(conn: Connection, f: StateFrame, trusted: boolean): Promise<number | null> {
    const track = this.#requireTrack(f.room);
    const restore = f.op === "state" && f.rs === true;
    if (restore && conn.wroteState(f.room)) {
      // A restore of the state from before a reconnect: void once the
      // client wrote this room's state on this connection (it is newer).
      return null;
    }
    if (!conn.inRoom(f.room)) {
      if (restore && f.state !== undefined && f.state !== null) {
        // What the client holds, though its join has not landed yet: a
        // patch after that join merges onto it, and the join writes it.
        conn.setOwn(
          f.room,
          f.state,
          f.expireAfter === undefined ? null : this.#clock.now() + f.expireAfter,
        );
      }
      throw notMember(f.room);
    }
    if (!trusted && !(await this.#allowed(track, conn, f.room))) throw forbidden(f.room);
    let write: StateWrite;
    let expiresAt: number | null = null;
    let next: unknown = null;
    if (f.op === "clear" || (f.state === null && f.patch === undefined)) {
      write = { kind: "clear" };
    } else {
      write = f.patch !== undefined
        ? { kind: "patch", patch: f.patch }
        : { kind: "set", state: f.state };
      const validator = track.options.validateState;
      // A patch applies to the state this connection set, not to what the
      // store holds: after a store reset that may be nothing yet.
      const expired = (conn.ownExpiresAt(f.room) ?? Infinity) <= this.#clock.now();
      next = write.kind === "patch"
        ? applyMergePatch(expired ? null : conn.ownState(f.room) ?? null, f.patch)
        : f.state;
      // Each patch is size-checked by the parser; the merged state must be too.
      const bytes = write.kind === "patch" ? utf8Length(JSON.stringify(next) ?? "") : 0;
      if (bytes > this.#limits.maxStateBytes) {
        throw new PresenceError(
          "too_large",
          `The patched state has ${bytes} bytes: limit is ${this.#limits.maxStateBytes}`,
        );
      }
      if (validator) await validate(validator, next, f.room);
      if (f.expireAfter !== undefined) {
        expiresAt = this.#clock.now() + f.expireAfter;
      }
    }
    const now = this.#clock.now();
    if (restore) {
      // What the client holds as its state: the intent even if the store
      // write fails (a patch sent meanwhile merges onto it; it is retried).
      conn.setOwn(f.room, next, expiresAt);
    }
    // A write that times out may land later: the connection's own state
    // (what it was told it has) is written again after it.
    const late = () => this.#reconcileState(conn, f.room);
    let ev = await this.#timed(
      () => this.#store.setState(f.room, conn.id, write, expiresAt, now),
      late,
    );
    if (ev === "not_member" && conn.inRoom(f.room)) {
      // The store lost this membership (a reset, or a reap while we were
      // cut off) and re-registration has not run yet: register it now.
      if (!this.#leaseHeld()) await this.#renewNow();
      const jev = await this.#timed(() =>
        this.#store.join(f.room, conn.id, this.instanceId, conn.publicMeta, now, conn.userId)
      );
      if (jev) this.#applyLocal(jev);
      ev = await this.#timed(
        () => this.#store.setState(f.room, conn.id, write, expiresAt, now),
        late,
      );
    }
    if (ev === "not_member") throw notMember(f.room);
    if (
      ev && ev.type === "state" && write.kind === "patch" &&
      JSON.stringify(ev.state) !== JSON.stringify(next)
    ) {
      // The store merged onto another base: set what was meant.
      if (ev) this.#applyLocal(ev);
      const fix = await this.#timed(
        () => this.#store.setState(f.room, conn.id, { kind: "set", state: next }, expiresAt, now),
        late,
      );
      ev = fix === "not_member" ? null : fix;
    }
    // Remembered so a store reset or reap can restore it with its expiry.
    if (write.kind === "clear") conn.clearOwn(f.room);
    else conn.setOwn(f.room, next, expiresAt);
    if (!restore) conn.markWritten(f.room);
    if (ev) this.#applyLocal(ev);
    return ev ? ev.seq : null;
  }

  #checkSubLimit(conn: Connection, room: string): void {
    if (!conn.sub(room) && conn.subCount >= this.#limits.maxSubscriptionsPerConnection) {
      throw new PresenceError(
        "too_many_subscriptions",
        `Connection has ${conn.subCount} subscriptions: limit is ${this.#limits.maxSubscriptionsPerConnection}`,
      );
    }
  }

  // -------------------------------------------------------------------------
  // Rooms and membership

  /** Join `conn` to a room; `joined` is false when it was there already. */
  async #join(
    conn: Connection,
    name: string,
    restore = false,
  ): Promise<{ room: Room; joined: boolean }> {
    // The lease must be held when the entry is written: checked again after
    // any wait, since a store reset in between drops it.
    let room: Room;
    do {
      if (!this.#leaseHeld()) await this.#renewNow();
      room = await this.#room(name);
    } while (!this.#leaseHeld());
    if (conn.inRoom(name) || conn.finished) return { room, joined: false };
    // The view's name, not the frame's copy of it: one string for all its members.
    conn.addRoom(room.name);
    room.addLocal(conn);
    try {
      const ev = await this.#timed(() =>
        this.#store.join(
          name,
          conn.id,
          this.instanceId,
          conn.publicMeta,
          this.#clock.now(),
          conn.userId,
        )
      );
      if (ev) {
        this.#applyLocal(ev);
        // A state restored before this join landed (see the state op).
        await this.#putOwnState(conn, name).catch(() => {
          this.#reregister(conn); // the join holds; the state follows when it can
        });
      } else if (!conn.hasOwn(name)) {
        // Still a member: a leave that has not reached the store yet. A new
        // join starts without a state, so clear what that one left.
        await this.#clearStoredState(conn, name);
      }
      return { room, joined: ev !== null };
    } catch (e) {
      if (restore && !conn.finished) {
        // A restore is what the client holds: keep it as the intent, and
        // let re-registration (retried until it holds) tell the store.
        this.#report("store_error", "Restore join failed: re-registering", e);
        this.#reregister(conn);
        return { room, joined: false };
      }
      conn.removeRoom(name);
      room.removeLocal(conn);
      this.#maybeDispose(room);
      // The write may have landed (a timeout), or a re-registration may
      // have joined meanwhile: make sure the store ends without it.
      this.#ensureLeft(conn, name, "leave");
      throw e;
    }
  }

  async #leave(conn: Connection, name: string, reason: LeaveReason): Promise<boolean> {
    // Out of the room means no state there, even one only restored so far.
    conn.clearOwn(name);
    if (!conn.removeRoom(name)) return false;
    const room = this.#rooms.get(name);
    room?.removeLocal(conn);
    try {
      const ev = await this.#timed(() =>
        this.#store.leave(name, conn.id, reason, this.#clock.now())
      );
      if (ev) this.#applyLocal(ev);
      return ev !== null;
    } catch (e) {
      // The connection has left (that is its intent now); the store is told
      // again until it holds, or the member would stay as a ghost. Skipped,
      // should the connection join that room again meanwhile.
      this.#report("store_error", "Leave failed: retrying", e);
      this.#ensureLeft(conn, name, reason);
      return true;
    } finally {
      if (room) this.#maybeDispose(room);
    }
  }

  /**
   * Tell the store (again, from the sweep, until it holds) that the
   * connection is not in the room, unless it means to be in it by then.
   */
  /**
   * Make the store hold the connection's own state in a room again (set, or
   * cleared), after a state write that timed out landed late.
   */
  #reconcileState(conn: Connection, name: string): void {
    this.#retryLater(() =>
      this.#enqueueTask(conn, async () => {
        if (conn.finished || !conn.inRoom(name)) return; // ensureLeft's job
        if (conn.hasOwn(name)) await this.#putOwnState(conn, name);
        else await this.#clearStoredState(conn, name);
      })
    );
  }

  #ensureLeft(conn: Connection, name: string, reason: LeaveReason): void {
    // Through the connection's queue: ordered with its own joins, so a join
    // after this cannot be undone by it.
    this.#retryLater(() =>
      this.#enqueueTask(conn, async () => {
        if (!conn.finished && conn.inRoom(name)) return;
        const ev = await this.#timed(() =>
          this.#store.leave(name, conn.id, reason, this.#clock.now())
        );
        if (ev) this.#applyLocal(ev);
      })
    );
  }

  /**
   * A store failure inside a settle window: nobody can register again while
   * the store is unreachable, so the window lasts a lease past the failure.
   */
  #extendSettle(): void {
    const now = this.#clock.now();
    const until = now + this.#leaseTtlMs;
    if (this.#settleUntil <= now || until - this.#settleUntil < this.#sweepMs) return;
    this.#settleUntil = until;
    for (const room of this.#rooms.values()) {
      if (room.settleUntil > now) room.settleUntil = until;
    }
  }

  /** Queue a store write that failed, for the sweep to retry until it holds. */
  #retryLater(task: () => Promise<void>): void {
    this.#retries.push(task);
  }

  #runRetries(): void {
    this.#retrying = true;
    const tasks = this.#retries;
    this.#retries = [];
    void Promise.all(tasks.map(async (task) => {
      try {
        await task();
      } catch {
        this.#retries.push(task);
      }
    })).finally(() => (this.#retrying = false));
  }

  #subscribe(conn: Connection, room: Room, users: boolean, count: boolean): Subscription {
    const existing = conn.sub(room.name);
    if (existing && existing.count === count) {
      // A resubscribe is a resync request: restart from a fresh snapshot.
      existing.users = users;
      if (!count) {
        this.#flusher.flushRoom(room);
        room.setNative(existing, false);
        existing.staleSince = null;
        existing.fromSeq = room.seq;
        this.#stale.delete(existing);
      }
      return existing;
    }
    const sub: Subscription = {
      conn,
      room,
      users,
      count,
      fromSeq: room.seq,
      freshAt: -1,
      native: false,
      staleSince: null,
    };
    room.addSub(sub);
    // Switching modes: the new subscription holds the room before the old
    // one lets go, or the room would be disposed under it.
    if (existing) this.#dropSub(conn, room.name);
    conn.setSub(room.name, sub);
    return sub;
  }

  #dropSub(conn: Connection, name: string): void {
    const sub = conn.deleteSub(name);
    if (!sub) return;
    const room = sub.room;
    room.setNative(sub, false);
    room.removeSub(sub);
    this.#stale.delete(sub);
    this.#maybeDispose(room);
  }

  /**
   * The room's ready view, the one in `#rooms`: an await may let the room be
   * disposed and replaced, so callers use the result before awaiting again.
   * Rejects with `store_error` when loading fails (a later call retries).
   */
  async #room(name: string): Promise<Room> {
    for (;;) {
      let room = this.#rooms.get(name);
      if (!room) {
        room = new Room(name, this.#userOf);
        this.#rooms.set(name, room);
        room.unwatch = this.#store.watchRoom(name);
        this.#load(room);
      } else if (!room.ready && !room.loading) this.#load(room);
      if (!room.ready) await room.loading;
      if (room.ready && this.#rooms.get(name) === room) return room;
    }
  }

  /**
   * (Re)load a room's view from the store, then resync its subscribers and
   * re-register local connections the store has lost. A failed load is
   * retried with backoff while anyone here needs the room.
   */
  #load(room: Room): void {
    // Events applied to the view so far go out before anything of the
    // reload: held back (a batch interval, or a store answering within the
    // tick), they would follow the new view's snapshot, a step back in time.
    this.#flusher.flushRoom(room);
    room.ready = false;
    if (room.retry !== null) {
      this.#clock.clearTimeout(room.retry as TimerHandle);
      room.retry = null;
    }
    // Events held from before the snapshot is read cannot be newer than it:
    // one that is comes from before a store restart, and is dropped, or it
    // would be a gap after every reload.
    const before = new Set(room.early);
    const resets = this.#resets;
    room.loading = (async () => {
      try {
        const snap = await this.#timed(() => this.#store.snapshot(room.name, this.#clock.now()));
        room.loading = null;
        if (this.#rooms.get(room.name) !== room) return;
        const early = room.early.filter((ev) => !(before.has(ev) && ev.seq > snap.seq));
        room.early = [];
        room.failures = 0;
        const keep = this.#clock.now() < room.settleUntil;
        // Leaves seen in the last two leases, or the last minute if longer,
        // cover the writes a failover can lose: a Redis Cluster promotes a
        // replica only after its node timeout (15 s by default), and the lost
        // ghosts are dropped by their instance within a third of a lease of
        // noticing.
        room.load(
          snap.seq,
          snap.present,
          snap.states,
          keep,
          this.#clock.now() - Math.max(2 * this.#leaseTtlMs, LEFT_WINDOW_MS),
          snap.joined,
        );
        room.loadedAt = resets;
        // Built in a settle window without keeping: it lacks whoever is not
        // registered again yet, until the window is over.
        room.incompleteUntil = !keep && this.#settleUntil > this.#clock.now()
          ? this.#settleUntil
          : 0;
        if (!keep) room.settleUntil = 0;
        // Subscribers get the new view first, then the events that follow
        // it: applied before the resyncs, those events would be flushed
        // ahead of the snapshot, against a view (its users) the subscriber
        // does not have yet (seed 160178: a userOnline for a user it still
        // showed online, whom the reload had dropped).
        const links = [...room.links];
        for (const [, sub] of links) if (sub) this.#resync(sub);
        for (const ev of early) this.#applyToRoom(room, ev);
        if (!room.ready) return; // a gap among the early events started a reload
        room.countDirty = true;
        const present = new Set(snap.present.map((p) => p.id));
        for (const [conn] of links) {
          if (conn.inRoom(room.name) && !present.has(conn.id)) this.#reregister(conn);
        }
        if (room.reloadAgain) {
          room.reloadAgain = false;
          this.#load(room);
        }
      } catch (e) {
        room.loading = null;
        if (this.#rooms.get(room.name) !== room) throw e;
        if (!room.needed) {
          room.unwatch?.();
          this.#rooms.delete(room.name);
          this.#flusher.forget(room);
        } else if (!this.#closed) {
          const delay = Math.min(5000, 100 * 2 ** room.failures++);
          room.retry = this.#clock.setTimeout(() => {
            room.retry = null;
            if (this.#rooms.get(room.name) === room && !room.ready && !room.loading) {
              this.#load(room);
            }
          }, delay);
        }
        throw e;
      }
    })();
    room.loading.catch((e) => this.#report("store_error", "Room load failed", e));
  }

  /**
   * A client resyncing a view that saw `q` (perhaps through another instance)
   * must not get an older snapshot: it would tell it members left. When this
   * instance's view is behind `q`, or its store calls fail (the view may be
   * frozen from before a store restart, its seq not comparable), read the
   * store: the answer is a fresh snapshot, or `store_error` to retry. Only
   * this client gets it; the shared view is left to its feed, so a client
   * cannot make everyone resync. During a settle window the view is right.
   */
  async #fresher(room: Room, q: number | undefined): Promise<FreshSnapshot | null> {
    let waited = 0;
    let lagged = 0;
    for (;;) {
      // After a store reset, until every instance registered again, a view
      // not carried over from before misses their members: its snapshot
      // would tell a resyncing subscriber they left. Wait for the window to
      // end, at most MAX_SETTLE_WAIT_MS (then a retryable store_error).
      const wait = this.#settleUntil - this.#clock.now();
      if (wait > 0 && !room.kept) {
        if (waited >= MAX_SETTLE_WAIT_MS) {
          throw new PresenceError("store_error", "Presence is settling after a store reset: retry");
        }
        const ms = Math.min(wait, MAX_SETTLE_WAIT_MS - waited);
        waited += ms;
        await new Promise<void>((r) => this.#clock.setTimeout(r, ms));
        continue;
      }
      if (q === undefined) return null;
      const now = this.#clock.now();
      // A kept view is right while the store answers; if calls fail, another
      // restart may have happened that this instance has not noticed yet:
      // probe (store_error while unreachable), then decide again.
      if (room.kept && room.settleUntil > now) {
        if (room.loadedAt !== this.#resets) {
          // Not reloaded since the latest reset yet: that reload is what
          // merges the store with the members kept.
          if (room.loading) await room.loading;
          else await new Promise<void>((r) => this.#clock.setTimeout(r, 20));
          continue;
        }
        if (this.#storeFailing) {
          await this.#timed(() => this.#store.snapshot(room.name, now));
          continue;
        }
        // Its feed may lag what the client saw: let it catch up, bounded
        // (a q from before a restart, or made up, is never reached).
        if (room.seq >= q || lagged >= MAX_SETTLE_WAIT_MS) return null;
        lagged += 20;
        await new Promise<void>((r) => this.#clock.setTimeout(r, 20));
        continue;
      }
      if (room.seq >= q && !this.#storeFailing) return null;
      const resets = this.#resets;
      const before = room.seq;
      const snap = await this.#timed(() => this.#store.snapshot(room.name, now));
      // A reset noticed meanwhile: that read may miss who is registering again.
      if (this.#resets !== resets) continue;
      // The view lags the store: answer from the read.
      if (snap.seq > room.seq) return { ...snap, viewSeq: before };
      // The store is behind what the view had before the read: the view is
      // from before a restart (its seq belongs to another life).
      if (snap.seq < before) return { ...snap, viewSeq: before };
      // The view caught up during the read: it is the newer one.
      return null;
    }
  }

  /**
   * The view's snapshot frame. In a store reset's settle window it carries
   * `k`: the view may lack members whose instances have not registered them
   * again yet, or that this instance never saw (a store life it missed, the
   * restarts noticed as one), so the client keeps the members it has that
   * the snapshot lacks. The reload that ends the window resyncs every
   * subscriber with a snapshot without `k`.
   */
  #viewSnapshot(room: Room, head: string, users: boolean): string {
    if (room.settleUntil > this.#clock.now()) head += '"k":1,';
    return room.snapshotFrame(head, users);
  }

  /** The snapshot answer for a new subscription: the view's, or a fresher one. */
  #snapshotFor(head: string, room: Room, sub: Subscription, fresh: FreshSnapshot | null): string {
    // The view moved on since the read (its own events may land in the same
    // tick) and is at least as new: it answers, consistent with `fromSeq`.
    if (!fresh || (room.seq !== fresh.viewSeq && room.seq >= fresh.seq)) {
      return this.#viewSnapshot(room, head, sub.users);
    }
    // Events the view has yet to apply up to the fresh seq are in the answer.
    if (fresh.seq > room.seq) {
      sub.fromSeq = fresh.seq;
      sub.freshAt = this.#resets;
    }
    let users: Set<string> | null = null;
    if (sub.users && this.#userOf) {
      users = new Set<string>();
      for (const p of fresh.present) {
        const u = this.#userOf(p.meta);
        if (u !== null) users.add(u);
      }
    }
    const present = fresh.present.map((p) => encodeMember(p.id, p.meta));
    return encodeSnapshot(head, fresh.seq, fresh.states, users, present);
  }

  #maybeDispose(room: Room): void {
    if (!room.idle || !room.ready || this.#rooms.get(room.name) !== room) return;
    room.unwatch?.();
    this.#rooms.delete(room.name);
    this.#flusher.forget(room);
  }

  /**
   * Register a live connection's rooms and own states in the store again,
   * after the store lost them (a reset, or a reap while this instance was
   * cut off). Retried with backoff until it holds or the connection ends.
   */
  #reregister(conn: Connection, attempt = 0): void {
    if (conn.finished || this.#closed) return;
    if (conn.reregistering) {
      conn.reregisterAgain = true;
      return;
    }
    conn.reregistering = true;
    conn.reregisterAgain = false;
    const live = () => !conn.finished && !this.#closed;
    // Memberships go outside the request queue, so a request waiting there
    // (see #room) cannot hold them back; a room left meanwhile is undone.
    // Each call is retried on its own: other instances drop what is not back
    // by the end of their settle window.
    (async () => {
      await this.#persist(() => this.#renewNow(), live);
      await this.#persist(() => this.#putMetadata(conn), live);
      for (const name of conn.roomNames()) {
        if (!live()) return;
        if (!conn.inRoom(name)) continue;
        const t = this.#clock.now();
        const ev = await this.#persist(
          async () => {
            // A reset during this run drops the lease: renew before writing.
            if (!this.#leaseHeld()) await this.#renewNow();
            return await this.#store.join(
              name,
              conn.id,
              this.instanceId,
              conn.publicMeta,
              t,
              conn.userId,
            );
          },
          live,
          // A join that timed out and landed after the connection finished
          // (or left the room): undo it, after it.
          () => this.#ensureLeft(conn, name, "leave"),
        );
        if (ev) this.#applyLocal(ev);
        // Left (or finished) while the join was on its way: undo it through
        // the connection's queue, which skips the leave should the client
        // join that room again meanwhile. A leave sent here directly undid
        // such a join, made between this join landing and the leave
        // landing (seed 604311 at batch 7: a false leave).
        if (ev && (conn.finished || !conn.inRoom(name))) this.#ensureLeft(conn, name, "leave");
      }
      // Own states go through the queue, ordered with the client's own
      // writes. Not awaited: a queue held up by a waiting request must not
      // hold the next re-registration of memberships back.
      void this.#enqueueTask(conn, async () => {
        for (const name of conn.roomNames()) {
          const state = conn.ownState(name);
          if (state === undefined || !live()) continue;
          await this.#persist(
            () => this.#putOwnState(conn, name),
            () => live() && conn.ownState(name) === state,
          );
        }
      }).catch((e) => {
        this.#report("store_error", "State restore failed", e);
        this.#clock.setTimeout(() => this.#reregister(conn, attempt + 1), 50 * 2 ** attempt);
      });
    })().then(() => {
      conn.reregistering = false;
      if (conn.reregisterAgain) this.#reregister(conn);
    }, (e) => {
      conn.reregistering = false;
      this.#report("store_error", "Presence re-registration failed", e);
      if (!live()) return;
      // Capped at a quarter lease: others drop what is not back a lease
      // after the store is reachable again.
      this.#clock.setTimeout(
        () => this.#reregister(conn, attempt + 1),
        Math.min(this.#leaseTtlMs / 4, 50 * 2 ** attempt),
      );
    });
  }

  /**
   * A store call retried quickly (25 ms doubling to 250 ms, 8 tries) while
   * `live()`; the last failure is thrown. Undefined when no longer live.
   */
  async #persist<T>(
    call: () => Promise<T>,
    live: () => boolean,
    onLate?: () => void,
  ): Promise<T> {
    for (let i = 0;; i++) {
      try {
        return await this.#timed(call, onLate);
      } catch (e) {
        if (i >= 7 || !live()) throw e;
        await new Promise<void>((r) => this.#clock.setTimeout(r, Math.min(250, 25 * 2 ** i)));
      }
    }
  }

  /**
   * Write the connection's own state in a room (what it means to hold) to
   * the store, with its remaining expiry; an expired one is forgotten and cleared.
   */
  async #putOwnState(conn: Connection, name: string): Promise<void> {
    const state = conn.ownState(name);
    const expiresAt = conn.ownExpiresAt(name) ?? null;
    const now = this.#clock.now();
    if (state === undefined) return;
    if (expiresAt !== null && expiresAt <= now) {
      // Expired: the store must hold none either (a write that timed out may
      // have landed after the expiry; sim seed 124).
      conn.clearOwn(name);
      await this.#clearStoredState(conn, name);
      return;
    }
    const ev = await this.#timed(() =>
      this.#store.setState(name, conn.id, { kind: "set", state }, expiresAt, now)
    );
    if (ev && ev !== "not_member") this.#applyLocal(ev);
  }

  /** Clear the connection's state in a room in the store (its own state is none). */
  async #clearStoredState(conn: Connection, name: string): Promise<void> {
    const ev = await this.#timed(() =>
      this.#store.setState(name, conn.id, { kind: "clear" }, null, this.#clock.now())
    );
    if (ev && ev !== "not_member") this.#applyLocal(ev);
  }

  /** The store holds our lease long enough for a write to land (see `#leaseUntil`). */
  #leaseHeld(): boolean {
    return this.#clock.now() < this.#leaseUntil;
  }

  /** Renew our lease now, once for everyone waiting: registering needs it held. */
  #renewNow(): Promise<void> {
    const sent = this.#clock.now();
    this.#renewal ??= this.#timed(
      () => this.#store.renewLease(this.instanceId, this.#leaseTtlMs, sent),
      undefined,
      false,
    ).then(() => {
      this.#leaseUntil = sent + this.#leaseTtlMs * 2 / 3;
      this.#lastLease = this.#clock.now();
    }, (e) => {
      // Not known to be held; retried at the next sweep, not a third of a lease later.
      this.#leaseUntil = -Infinity;
      this.#lastLease = -Infinity;
      throw e;
    }).finally(() => (this.#renewal = null));
    return this.#renewal;
  }

  // -------------------------------------------------------------------------
  // Events and fan-out

  #onStoreEvent(ev: PresenceEvent): void {
    if (this.#closed) return;
    this.#stats.eventsIn++;
    for (const hook of this.#hooks.values()) hook.kick();
    for (const c of this.#streams) {
      if (c.desiredSize !== null && c.desiredSize < -100_000) {
        this.#streams.delete(c);
        c.error(new PresenceError("internal", "events() reader fell too far behind"));
      } else c.enqueue(ev);
    }
    this.#applyLocal(ev);
    if (ev.type === "leave") {
      // The store removed a live connection of ours that did not leave: our
      // lease lapsed while we were cut off. It means to be there: join again.
      const conn = this.#conns.get(ev.connectionId);
      if (conn && !conn.finished && conn.inRoom(ev.room)) this.#reregister(conn);
    }
  }

  /**
   * Apply an event to its room's view, if this instance has one. Every event
   * this instance makes arrives here twice, on purpose: once from the store
   * write's answer (so the writer's view never waits for a round trip), and
   * once from the store's feed (`#onStoreEvent`: the store hands a handle's
   * own events to its listeners too, and a distributed store's echo comes
   * back). The second copy is dropped by `Room.apply` as a duplicate (its
   * seq is not newer); see docs/ARCHITECTURE.md.
   */
  #applyLocal(ev: PresenceEvent): void {
    const room = this.#rooms.get(ev.room);
    if (!room) return;
    if (!room.ready) {
      // Bounded while a load keeps failing: what is dropped, a reload covers.
      if (room.early.push(ev) > MAX_EARLY) {
        room.early = [];
        room.reloadAgain = true;
      }
      return;
    }
    this.#applyToRoom(room, ev);
  }

  #applyToRoom(room: Room, ev: PresenceEvent): void {
    const result = room.apply(ev);
    if (result === "applied") {
      this.#flusher.schedule(room);
    } else if (result === "gap") {
      // Missed events from another instance: reload, then resync subscribers.
      // Until then the view is not complete: were the store to reset now, it
      // could not answer subscriptions in the settle window (seed 170055: a
      // join it missed was left out of such an answer, a false leave).
      // (`#load` flushes what the view already applied first.)
      room.kept = false;
      room.early.push(ev);
      this.#load(room);
    }
  }

  /** Send a fresh snapshot to a subscriber: latest wins, nothing replayed. */
  #resync(sub: Subscription): void {
    const room = sub.room;
    if (!room.ready || sub.count) return;
    // Answered from a store read newer than this view (and no reset since):
    // the view's snapshot would take it back in time. It catches up through
    // the events.
    if (sub.freshAt === this.#resets && sub.fromSeq > room.seq) return;
    this.#flusher.flushRoom(room);
    const frame = this.#viewSnapshot(room, snapHead(room.name), sub.users);
    sub.staleSince = null;
    this.#stale.delete(sub);
    room.setNative(sub, false);
    sub.fromSeq = room.seq;
    room.sendTo(sub, frame, this.#fanout);
  }

  #markStale(sub: Subscription): void {
    sub.room.setNative(sub, false);
    if (sub.staleSince !== null) return;
    sub.staleSince = this.#clock.now();
    this.#stale.add(sub);
    this.#stats.coalesced++;
  }

  #checkStale(conn: Connection): void {
    for (const [, sub] of conn.subs()) {
      if (sub.staleSince !== null) this.#tryCatchUp(sub, this.#clock.now());
    }
  }

  #tryCatchUp(sub: Subscription, now: number): void {
    const socket = sub.conn.socket;
    if (!socket || sub.conn.finished) return;
    if (socket.bufferedAmount <= this.#limits.outboundHighWaterBytes / 4) {
      this.#resync(sub);
    } else if (now - (sub.staleSince ?? now) > this.#limits.slowConsumerTimeoutMs) {
      this.#slowConsumer(sub.conn);
    }
  }

  #slowConsumer(conn: Connection): void {
    this.#stats.slowClosed++;
    this.#kill(conn, CloseCode.slowConsumer, "Slow consumer");
  }

  // -------------------------------------------------------------------------
  // Closing

  /** Close the socket ourselves and treat it as an abrupt loss. */
  #kill(conn: Connection, code: number, reason: string): void {
    const socket = conn.socket;
    if (!socket) return;
    try {
      socket.close(code, reason);
    } catch { /* already closed */ }
    this.#onClose(conn, socket, code, true);
  }

  #onClose(conn: Connection, socket: SocketLike, code: number, abrupt = false): void {
    if (conn.socket !== socket || conn.finished) return;
    try {
      this.#detach(conn);
      // 1005: a close frame without a status (browser `ws.close()`) is clean too.
      const clean = !abrupt &&
        (code === CloseCode.normal || code === CloseCode.goingAway || code === 1005);
      if (clean || this.#graceMs <= 0 || this.#closed) {
        this.#finish(conn, "close");
      } else {
        conn.detachedAt = this.#clock.now();
        this.#detached.add(conn);
      }
    } catch (e) {
      this.#report("internal", "Close handler failed", e);
    }
  }

  #detach(conn: Connection): void {
    for (const [, sub] of conn.subs()) {
      sub.room.setNative(sub, false);
      if (!sub.count) this.#markStale(sub);
    }
    conn.socket = null;
  }

  #finish(conn: Connection, reason: LeaveReason): void {
    if (conn.finished) return;
    this.#detached.delete(conn);
    // At once, not when the queue gets there: no resume may slip in between.
    conn.secret = "";
    void this.#enqueueTask(conn, async () => {
      if (conn.finished) return;
      conn.finished = true;
      for (const [name] of conn.subs()) this.#dropSub(conn, name);
      for (const name of conn.roomNames()) {
        try {
          await this.#leave(conn, name, reason);
        } catch (e) {
          this.#report("store_error", "Leave on disconnect failed", e);
        }
      }
      try {
        await this.#timed(() => this.#store.deleteMetadata(conn.id));
      } catch (e) {
        this.#report("store_error", "Metadata cleanup failed", e);
        this.#retryLater(() => this.#timed(() => this.#store.deleteMetadata(conn.id)));
      }
      this.#conns.delete(conn.id);
      if (conn.memberExpiresAt !== null) {
        this.#members.delete(conn);
        return;
      }
      this.#gate.count(conn.remoteAddr, conn.userId, -1);
      for (const cb of this.#onDisconnect) this.#safe(() => cb(conn));
    }).catch((e) => this.#report("internal", "Disconnect failed", e));
  }

  // -------------------------------------------------------------------------
  // Housekeeping: one loop for expiry, heartbeats, resume windows, leases.

  #sweep(): void {
    if (this.#closed) return;
    const now = this.#clock.now();
    for (const d of this.#deadlines) {
      if (d.at <= now) {
        this.#deadlines.delete(d);
        d.expire();
      }
    }
    try {
      if (!this.#sweeping) {
        this.#sweeping = true;
        this.#timed(() => this.#store.sweep(now))
          .catch((e) => this.#report("store_error", "Store sweep failed", e))
          .finally(() => (this.#sweeping = false));
      }
      if (now - this.#lastLease >= this.#leaseTtlMs / 3) {
        this.#lastLease = now;
        this.#renewNow().catch((e) => this.#report("store_error", "Lease renewal failed", e));
      }
      if (this.#retries.length > 0 && !this.#retrying) this.#runRetries();
      for (const conn of this.#detached) {
        if (now - conn.detachedAt >= this.#graceMs) this.#finish(conn, "close");
      }
      for (const member of this.#members) {
        if (now >= member.memberExpiresAt!) this.#finish(member, "expired");
      }
      for (const sub of this.#stale) this.#tryCatchUp(sub, now);
      const livenessDue = now - this.#lastLiveness >= this.#livenessMs;
      for (const room of this.#rooms.values()) {
        if (livenessDue) room.dropIdleCache();
        if (room.nativeCount > 0) this.#checkNative(room);
        if (room.settleUntil > 0 && now >= room.settleUntil && room.ready) {
          room.settleUntil = 0;
          this.#load(room);
        }
      }
      // After the rooms' native checks: the backlog bounds it reads include
      // what the rooms published to their topics.
      if (livenessDue) {
        this.#checkLiveness(now, this.#lastLiveness);
        this.#lastLiveness = now;
        const r = this.#rates;
        const secs = (now - r.at) / 1000;
        if (secs > 0) {
          r.eventsInPerSecond = (this.#stats.eventsIn - r.eventsIn) / secs;
          r.framesOutPerSecond = (this.#stats.framesOut - r.framesOut) / secs;
        }
        r.at = now;
        r.eventsIn = this.#stats.eventsIn;
        r.framesOut = this.#stats.framesOut;
      }
      if (now - this.#lastCount >= this.#countMs) {
        this.#lastCount = now;
        this.#sendCounts();
      }
    } catch (e) {
      this.#report("internal", "Sweep failed", e);
    }
    this.#sweepTimer = this.#clock.setTimeout(() => this.#sweep(), this.#sweepMs);
  }

  /**
   * The store lost data (e.g. a Redis restart) or reaped us while we were
   * cut off. Every live connection registers again from what it means to
   * be in (rooms, states, expiries), and every view reloads. Other instances
   * register theirs as they notice; until then, for one lease, members the
   * store lacks stay in the views, so nobody sees a leave for a live
   * connection. A reload at the end of that window drops who really left.
   */
  #onStoreReset(): void {
    if (this.#closed) return;
    this.#leaseUntil = -Infinity;
    this.#resets++;
    this.#lastLease = -Infinity; // renew at the next sweep
    const until = this.#settleUntil = this.#clock.now() + this.#leaseTtlMs;
    for (const room of this.#rooms.values()) {
      // Only a complete view has members to keep meanwhile: one loaded since
      // the previous reset (a view still reloading after it never saw that
      // store's life: seed 250276, two restarts 500 ms apart, missed a join
      // made in between and answered a subscription without it), and not
      // itself built (unkept) in an earlier window.
      room.kept = room.ready && room.loadedAt === this.#resets - 1 &&
        !(room.incompleteUntil > this.#clock.now());
      room.settleUntil = until;
      this.#flusher.flushRoom(room);
      if (room.loading) room.reloadAgain = true;
      else this.#load(room);
    }
    for (const conn of this.#conns.values()) this.#reregister(conn);
    // Hook registrations live with the data: register them again.
    for (const hook of this.#hooks.values()) hook.start();
    this.#dropGhosts();
  }

  /**
   * After a reset, drop what the store holds as ours but we do not: after a
   * rollback (the store came back from an older copy of its data), the
   * memberships and metadata of connections that had left. Retried by the
   * sweep until it holds.
   */
  #dropGhosts(): void {
    const store = this.#store;
    if (!store.owned) return;
    this.#retryLater(async () => {
      const { members, metadata } = await this.#timed(() => store.owned!(this.instanceId));
      for (const { room, connectionId } of members) {
        const conn = this.#conns.get(connectionId);
        if (conn) {
          if (conn.finished || !conn.inRoom(room)) this.#ensureLeft(conn, room, "close");
          continue;
        }
        const ev = await this.#timed(() =>
          store.leave(room, connectionId, "close", this.#clock.now())
        );
        if (ev) this.#applyLocal(ev);
      }
      for (const cid of metadata) {
        if (!this.#conns.has(cid)) await this.#timed(() => store.deleteMetadata(cid));
      }
    });
  }

  // Every `#livenessMs` (a second by default) over every connection, `since`
  // being the last check, so only field reads unless there is something to
  // act on: bufferedAmount (a runtime call) only once the backlog bound could
  // be over the limit, the rooms' ttls only once the connection has been
  // silent for the shortest of them.
  #checkLiveness(now: number, since: number): void {
    const maxPending = this.#limits.maxPendingBytes;
    for (const conn of this.#conns.values()) {
      if (!conn.socket || conn.finished) continue;
      if (conn.backlogOver(maxPending)) {
        this.#slowConsumer(conn);
        continue;
      }
      const silent = now - conn.lastSeen;
      if (silent > this.#timeoutMs) {
        this.#kill(conn, CloseCode.heartbeatTimeout, "Heartbeat timeout");
        continue;
      }
      // One ping per silence, once it reaches the interval. A connection
      // heard from lately sent a pong or a request, and every request is
      // answered, so it heard from us too: a busy one is never pinged. A
      // client then waits at most I + this check's period + one sweep for
      // a ping or an answer (the period is at most (T − I) / 4).
      const pingAt = conn.lastSeen + this.#intervalMs;
      if (pingAt > since && pingAt <= now) conn.send(PING_FRAME);
      if (silent <= this.#minTtl) continue;
      for (const name of conn.roomNames()) {
        const ttl = this.#track(name)?.ttl ?? this.#timeoutMs;
        if (silent > ttl) {
          void this.#enqueueTask(conn, () => this.#leave(conn, name, "expired").then(() => {}))
            .catch((e) => this.#report("store_error", "TTL leave failed", e));
        }
      }
    }
  }

  // A native subscriber's backlog grows only by what the room published to
  // its topic and what was sent to the connection itself (both counted in
  // `backlogBound`): bufferedAmount, a runtime call, is read only once that
  // bound could have crossed the watermark (reading it for every native
  // subscriber at every sweep took half the CPU of an idle Bun server with
  // 5 000 connections).
  #checkNative(room: Room): void {
    const published = room.nativeSent;
    if (published === 0) return;
    room.nativeSent = 0;
    const highWater = this.#limits.outboundHighWaterBytes;
    for (const sub of room.links.values()) {
      if (!sub?.native) continue;
      const conn = sub.conn;
      conn.countSent(published);
      if (conn.backlogOver(highWater)) this.#markStale(sub);
    }
  }

  #sendCounts(): void {
    for (const room of this.#rooms.values()) {
      if (room.countSubs.size === 0 || !room.countDirty) continue;
      room.countDirty = false;
      const frame = encodeCounts(room.name, room.counts());
      // A count not delivered (detached socket, dropped send) goes again next time.
      for (const sub of room.countSubs) if (!sub.conn.send(frame)) room.countDirty = true;
    }
  }

  // -------------------------------------------------------------------------
  // Helpers

  #track(room: string): Track | null {
    for (const t of this.#tracks) {
      if (typeof t.pattern === "string") {
        if (t.pattern === room) return t;
      } else {
        t.pattern.lastIndex = 0;
        if (t.pattern.test(room)) return t;
      }
    }
    return null;
  }

  #requireTrack(room: string): Track {
    const track = this.#track(room);
    if (!track) throw new PresenceError("not_tracked", `Room "${room}" is not tracked`);
    return track;
  }

  async #allowed(track: Track, conn: Connection, room: string): Promise<boolean> {
    const guard = track.options.guard;
    if (!guard) return true;
    try {
      return (await guard(conn, room)) === true;
    } catch (e) {
      this.#report("internal", `Guard threw for room "${room}"`, e);
      return false;
    }
  }

  #local(connectionId: string): Connection {
    const conn = this.#conns.get(connectionId);
    if (!conn || conn.finished) {
      throw new PresenceError("not_found", `Unknown connection "${connectionId}"`);
    }
    return conn;
  }

  #publicOf(meta: Metadata): Metadata {
    const hidden = this.#options.privateMetadata;
    const pick = this.#options.publicMetadata;
    let out = meta;
    if (hidden && hidden.length > 0) {
      out = {};
      for (const [k, v] of Object.entries(meta)) {
        if (!hidden.includes(k)) {
          Object.defineProperty(out, k, {
            value: v,
            enumerable: true,
            writable: true,
            configurable: true,
          });
        }
      }
    }
    return pick ? pick(out) : out;
  }

  /**
   * Every store call goes through here: latency stats, failures as
   * `store_error`, and a deadline. A call past its deadline fails, but it
   * may still land: calls made after it wait until it settles (within their
   * own deadline), so a stale write never lands after a newer one. Lease
   * renewals (`ordered` false) do not wait: a store's write fence may hold
   * a late write until our lease is renewed.
   */
  async #timed<T>(call: () => Promise<T>, onLate?: () => void, ordered = true): Promise<T> {
    const start = performance.now();
    let p: Promise<T> | undefined, expired: PresenceError | undefined;
    // Checked by the sweep (every sweepIntervalMs), not a timer per call.
    const entry = { at: this.#clock.now() + this.#storeTimeoutMs, expire: () => {} };
    const deadline = new Promise<never>((_, reject) => {
      entry.expire = () =>
        reject(expired = new PresenceError("store_error", "Store call timed out"));
    });
    deadline.catch(() => {});
    this.#deadlines.add(entry);
    try {
      if (ordered && this.#late.size > 0) {
        await Promise.race([Promise.allSettled(this.#late), deadline]);
      }
      const result = await Promise.race([p = call(), deadline]);
      this.#storeFailing = false;
      return result;
    } catch (e) {
      if (expired && e === expired && p) {
        // Landed after all: the caller's reconciliation runs (its writes
        // wait behind this one, like every call made after the deadline).
        const late: Promise<unknown> = p.then(
          () => {
            this.#late.delete(late);
            if (onLate) this.#safe(onLate);
          },
          () => this.#late.delete(late),
        );
        this.#late.add(late);
      }
      this.#storeFailing = true;
      this.#stats.storeErrors++;
      if (expired && e === expired) this.#stats.storeTimeouts++;
      this.#extendSettle();
      throw e instanceof PresenceError
        ? e
        : new PresenceError("store_error", "Store call failed", { cause: e });
    } finally {
      this.#deadlines.delete(entry);
      const lat = this.#storeLatency;
      if (lat.length >= 256) lat.shift();
      lat.push(performance.now() - start);
    }
  }

  #safe(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.#report("internal", "Callback threw", e);
    }
  }

  #report(code: PresenceErrorCode, message: string, cause: unknown): void {
    const err = cause instanceof PresenceError
      ? cause
      : new PresenceError(code, message, { cause });
    const onError = this.#options.onError;
    if (onError) {
      try {
        onError(err);
      } catch { /* a throwing hook must not take the server down */ }
    } else console.error(err);
  }
}

function forbidden(room: string): PresenceError {
  return new PresenceError("forbidden", `Guard refused room "${room}"`);
}

function notMember(room: string): PresenceError {
  return new PresenceError("not_member", `Connection has not joined room "${room}"`);
}

async function validate(
  validator: NonNullable<TrackPresenceOptions["validateState"]>,
  state: unknown,
  room: string,
): Promise<void> {
  if (typeof validator === "function") {
    const r = validator(state, room);
    if (r === true) return;
    throw new PresenceError(
      "invalid_state",
      typeof r === "string" ? r : "State refused by validateState",
    );
  }
  const result = await validator["~standard"].validate(state);
  if (result.issues) {
    const msg = result.issues.map((i) => i.message).join("; ");
    throw new PresenceError("invalid_state", `State refused: ${msg}`);
  }
}
