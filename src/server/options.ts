// Server option types and their documented defaults.

import type { Clock } from "../clock.ts";
import type { PresenceError } from "../errors.ts";
import type { Metadata } from "../protocol.ts";
import type { PresenceStore } from "../store/types.ts";

/**
 * Limits enforced per connection and per server. Every field has a default.
 *
 * @example
 * ```ts
 * import { type PresenceLimits, PresenceServer } from "@presently/presently";
 * const limits: Partial<PresenceLimits> = {
 *   maxRoomsPerConnection: 10,
 *   requestsPerSecond: 20,
 *   maxConnectionsPerUser: 5,
 * };
 * const server = new PresenceServer({ limits, userKey: "userId" });
 * console.log(server.limits.requestsPerSecond); // 20
 * await server.close();
 * ```
 */
export interface PresenceLimits {
  /** Largest inbound frame in bytes. Default 65536 (64 KiB). */
  maxFrameBytes: number;
  /** Largest state or patch in bytes of JSON. Default 16384 (16 KiB). */
  maxStateBytes: number;
  /** Deepest nesting of a state or patch. Default 16. */
  maxJsonDepth: number;
  /** Longest room name in characters. Default 256. */
  maxRoomLength: number;
  /** Rooms one connection may join. Default 100. */
  maxRoomsPerConnection: number;
  /** Presence subscriptions one connection may hold. Default 100. */
  maxSubscriptionsPerConnection: number;
  /** Sustained requests per second per connection (token bucket). Default 100. */
  requestsPerSecond: number;
  /** Token bucket size: a burst allowed above the rate. Default 200. */
  requestBurst: number;
  /** Rate-limited requests within one second that close the socket (4429). Default 1000. */
  floodCloseAfter: number;
  /** Malformed or oversized frames within 10 s that close the socket (4413). Default 1000. */
  badFramesCloseAfter: number;
  /** Open connections per server; more are refused with HTTP 503. Default 50000. */
  maxConnections: number;
  /** Open connections per remote IP. Default unlimited. */
  maxConnectionsPerIp: number;
  /** Open connections per user (`userKey`). Default unlimited. */
  maxConnectionsPerUser: number;
  /** Above this many buffered outbound bytes a subscriber is coalesced. Default 262144. */
  outboundHighWaterBytes: number;
  /** Above this many buffered outbound bytes a subscriber is closed (4409). Default 4194304. */
  maxPendingBytes: number;
  /** A subscriber coalesced for this long without draining is closed (4409). Default 10000. */
  slowConsumerTimeoutMs: number;
}

/**
 * The default limits.
 *
 * @example
 * ```ts
 * import { DEFAULT_LIMITS, PresenceServer } from "@presently/presently";
 * console.log(DEFAULT_LIMITS.maxStateBytes); // 16384
 * const server = new PresenceServer({
 *   limits: { maxStateBytes: 4 * DEFAULT_LIMITS.maxStateBytes },
 * });
 * await server.close();
 * ```
 */
export const DEFAULT_LIMITS: Readonly<PresenceLimits> = Object.freeze({
  maxFrameBytes: 64 * 1024,
  maxStateBytes: 16 * 1024,
  maxJsonDepth: 16,
  maxRoomLength: 256,
  maxRoomsPerConnection: 100,
  maxSubscriptionsPerConnection: 100,
  requestsPerSecond: 100,
  requestBurst: 200,
  floodCloseAfter: 1000,
  badFramesCloseAfter: 1000,
  maxConnections: 50_000,
  maxConnectionsPerIp: Infinity,
  maxConnectionsPerUser: Infinity,
  outboundHighWaterBytes: 256 * 1024,
  maxPendingBytes: 4 * 1024 * 1024,
  slowConsumerTimeoutMs: 10_000,
});

/**
 * Heartbeat settings.
 *
 * @example
 * ```ts
 * import { type HeartbeatOptions, PresenceServer } from "@presently/presently";
 * // Notice dead connections within 15 s instead of 30 s.
 * const heartbeat: HeartbeatOptions = { intervalMs: 5_000, timeoutMs: 15_000 };
 * const server = new PresenceServer({ heartbeat });
 * await server.close();
 * ```
 */
export interface HeartbeatOptions {
  /**
   * The server pings a connection once nothing has come from it for this
   * long (once per silence; a connection that sends requests is answered
   * instead). Default 10000.
   */
  intervalMs?: number;
  /**
   * A connection silent for this long is closed (4408). Default 30000. The
   * client takes no ping or answer for (intervalMs + timeoutMs) / 2 as a
   * dead link and resumes.
   */
  timeoutMs?: number;
}

/**
 * A connection as seen by guards, hooks and `onConnection`.
 *
 * @example
 * ```ts
 * import { type PresenceConnection, PresenceServer } from "@presently/presently";
 * const server = new PresenceServer({ authenticate: () => ({ userId: "ada", team: "red" }) });
 * // Only members of a team may enter its rooms.
 * const sameTeam = (connection: PresenceConnection, room: string) =>
 *   room === `team:${connection.metadata.team}`;
 * server.trackPresence(/^team:/, { guard: sameTeam });
 * server.onConnection((connection) => console.log(connection.id, connection.remoteAddr));
 * await server.close();
 * ```
 */
export interface PresenceConnection {
  /** The public connection id. */
  readonly id: string;
  /** The full (server-side) metadata, including private fields. */
  readonly metadata: Metadata;
  /** Rooms this connection has joined. */
  readonly rooms: ReadonlySet<string>;
  /** The remote address, when the adapter knows it. */
  readonly remoteAddr: string | null;
  /** The URL the socket was opened with. */
  readonly url: string;
}

/**
 * A Standard Schema (https://standardschema.dev) object, e.g. from Zod or
 * Valibot. Only the validate function is used; no dependency is taken.
 *
 * @typeParam T The validated value's type.
 *
 * @example A hand-written schema (a Zod or Valibot schema fits the same way)
 * ```ts
 * import { PresenceServer, type StandardSchemaLike } from "@presently/presently";
 * type Cursor = { x: number; y: number };
 * const cursor: StandardSchemaLike<Cursor> = {
 *   "~standard": {
 *     validate: (value) =>
 *       typeof (value as Cursor)?.x === "number" && typeof (value as Cursor)?.y === "number"
 *         ? { value: value as Cursor }
 *         : { issues: [{ message: "Expected { x, y }" }] },
 *   },
 * };
 * const server = new PresenceServer();
 * server.trackPresence(/^doc:/, { validateState: cursor });
 * await server.close();
 * ```
 */
export interface StandardSchemaLike<T = unknown> {
  /** The Standard Schema interface. */
  readonly "~standard": {
    /** Validate a value. */
    validate(
      value: unknown,
    ):
      | { value: T; issues?: undefined }
      | { issues: ReadonlyArray<{ message: string }> }
      | Promise<
        | { value: T; issues?: undefined }
        | { issues: ReadonlyArray<{ message: string }> }
      >;
  };
}

/**
 * A state validator: a function (true = valid, a string = why not) or a Standard Schema.
 *
 * @example
 * ```ts
 * import { PresenceServer, type StateValidator } from "@presently/presently";
 * const shortStatus: StateValidator = (state, room) =>
 *   (typeof state === "string" && state.length <= 32) || `Status in "${room}" is too long`;
 * const server = new PresenceServer();
 * server.trackPresence("lobby", { validateState: shortStatus });
 * await server.close();
 * ```
 */
export type StateValidator =
  | ((state: unknown, room: string) => boolean | string)
  | StandardSchemaLike;

/**
 * The state type a validator accepts: a Standard Schema's output type, or
 * the narrowed type of a type-guard function; `unknown` otherwise. Use it for
 * the client's generics so both sides share one definition.
 *
 * @typeParam V The validator: a Standard Schema, a type guard or a plain function.
 *
 * @example With a type guard
 * ```ts
 * import { type InferState, PresenceServer } from "@presently/presently";
 * import { PresenceClient } from "@presently/presently/client";
 * const isCursor = (state: unknown): state is { x: number; y: number } =>
 *   typeof state === "object" && state !== null && "x" in state && "y" in state;
 * const server = new PresenceServer();
 * server.trackPresence(/^doc:/, { validateState: isCursor });
 * const client = new PresenceClient<InferState<typeof isCursor>>("ws://127.0.0.1:8000/");
 * // client.publishPresenceState() now takes { x: number; y: number } states.
 * await server.close();
 * ```
 *
 * @example With Zod (not a dependency of Presently, so not run here)
 * ```ts ignore
 * import { z } from "zod";
 * import type { InferState } from "@presently/presently";
 * import { PresenceClient } from "@presently/presently/client";
 * const cursor = z.object({ x: z.number(), y: z.number() });
 * server.trackPresence(/^doc:/, { validateState: cursor });
 * const client = new PresenceClient<InferState<typeof cursor>>(url);
 * ```
 */
export type InferState<V> = V extends
  { readonly "~standard": { validate(value: unknown): infer R } }
  ? Extract<Awaited<R>, { value: unknown }>["value"]
  : V extends (state: unknown, ...rest: never[]) => state is infer T ? T
  : unknown;

/**
 * Options of `server.trackPresence(pattern, options)`.
 *
 * @example
 * ```ts
 * import { PresenceServer, type TrackPresenceOptions } from "@presently/presently";
 * const docs: TrackPresenceOptions = {
 *   guard: (connection, room) => room !== "doc:secret" || connection.metadata.admin === true,
 *   ttl: 60_000,
 *   validateState: (state) => typeof state === "object" || "The state must be an object",
 * };
 * const server = new PresenceServer();
 * server.trackPresence(/^doc:/, docs);
 * await server.close();
 * ```
 */
export interface TrackPresenceOptions {
  /** Decides who may join, subscribe to and publish in the room. */
  guard?: (
    connection: PresenceConnection,
    room: string,
  ) => boolean | Promise<boolean>;
  /**
   * How long a member stays present without a sign of life (any frame, e.g.
   * a pong) from its connection. Default: the heartbeat `timeoutMs`. Must be at
   * least the heartbeat `intervalMs` + 1 s, so idle members are not dropped.
   */
  ttl?: number;
  /** Validates every new state (a patch is validated after merging). */
  validateState?: StateValidator;
}

/**
 * Options of `new PresenceServer(options)`.
 *
 * @example
 * ```ts
 * import { PresenceServer, type PresenceServerOptions } from "@presently/presently";
 * const options: PresenceServerOptions = {
 *   authenticate: (request) => {
 *     const user = new URL(request.url).searchParams.get("user");
 *     return user ? { userId: user, email: `${user}@example.com` } : null;
 *   },
 *   allowedOrigins: ["https://app.example.com"],
 *   privateMetadata: ["email"], // others never see the email
 *   userKey: "userId",
 *   leaveGraceMs: 10_000,
 *   onError: (error) => console.error(error.code, error.message),
 * };
 * const server = new PresenceServer(options);
 * await server.close();
 * ```
 */
export interface PresenceServerOptions {
  /** Where presence lives. Default: a new `MemoryPresenceStore`. */
  store?: PresenceStore;
  /**
   * Authenticate an upgrade request. Resolve metadata to accept (it becomes the
   * connection's metadata), or `null` (or throw) to refuse with HTTP 401.
   * Throw a `PresenceError` with code `"token_expired"` or `"unauthorized"`
   * to refuse after the upgrade instead: the socket is closed with 4401 and
   * the code as reason, which a browser can read (it cannot read an HTTP
   * 401), and a client with an `auth` callback fetches a fresh token and
   * dials again (resuming its connection id within the grace period).
   */
  authenticate?: (request: Request) => Metadata | null | Promise<Metadata | null>;
  /** Allowed `Origin` header values; others get HTTP 403. Default: any. */
  allowedOrigins?: string[];
  /**
   * Names of metadata fields other clients never see: stripped from what they
   * receive (joins, snapshots, `meta` answers, server-side queries). The
   * server, its guards and hooks still read them. Default: none.
   */
  privateMetadata?: string[];
  /**
   * A function returning the part of a connection's metadata other clients
   * may read (applied after `privateMetadata`). Default: all of it. (Before
   * 0.2 this option also took a list, of the fields made *private*: that
   * list is now `privateMetadata`, and a list here is refused.)
   */
  publicMetadata?: (meta: Metadata) => Metadata;
  /**
   * Groups connections into users for `userOnline`/`userOffline` events and
   * per-user limits: a metadata field name or a function.
   */
  userKey?: string | ((meta: Metadata) => string | null | undefined);
  /** Heartbeat settings. */
  heartbeat?: HeartbeatOptions;
  /**
   * How long an abruptly lost connection keeps its presence, waiting for a
   * resume. Default 5000; 0 disables resume.
   */
  leaveGraceMs?: number;
  /** Instance lease TTL in the store. Default 10000; renewed every third. */
  leaseTtlMs?: number;
  /**
   * Deadline of every store call: one that has not answered by then fails
   * with `store_error` (a partitioned store must not hang requests or queue
   * lease renewals). The call may still land later; what it wrote is
   * reconciled as for any failed call. Default: a quarter of `leaseTtlMs`
   * (2500 ms), so a hung renewal fails well before the lease lapses. Checked
   * at every sweep, so a call fails up to `sweepIntervalMs` after it.
   */
  storeTimeoutMs?: number;
  /** Expiry and housekeeping resolution. Default 100 ms. */
  sweepIntervalMs?: number;
  /** Throttle of `mode: "count"` updates. Default 1000 ms. */
  countIntervalMs?: number;
  /**
   * Server-side batching: each room sends at most one event frame per this
   * many ms, to all its subscribers. An event in a room that sent a frame
   * less than this long ago waits for the rest of the interval, and every
   * event that arrives meanwhile goes in the same frame; an event in a
   * quieter room goes out at once. Fewer, fuller frames cost less CPU per
   * delivery (most on Deno, which writes each frame to each socket itself)
   * for at most this much more latency. Answers, snapshots and pings are
   * never held. Default 0 (off: rooms flush every tick, as events come); at
   * most 1000.
   */
  batchIntervalMs?: number;
  /** Overrides of the default limits. */
  limits?: Partial<PresenceLimits>;
  /** Time source. Default: the system clock. */
  clock?: Clock;
  /** Receives errors that are not a client's fault (store failures, bugs). */
  onError?: (error: PresenceError) => void;
  /** This instance's id in the store. Default: a random UUID. */
  instanceId?: string;
}
