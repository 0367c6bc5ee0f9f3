// PresenceClient: one socket with request/answer matching, a bounded request
// queue, reconnect/resume with backoff, heartbeat deadline and room sync.
//
// Why it is long: more than half of it is the public API's documentation
// (every method with a runnable example); the code is about 600 lines, kept
// in one module so the browser bundle stays within its 4 KB budget. The
// view logic is in sync.ts, the wire constants in ../constants.ts.

import {
  CLOSE_ABNORMAL,
  CLOSE_BAD_VERSION,
  CLOSE_HEARTBEAT_TIMEOUT,
  CLOSE_NORMAL,
  CLOSE_UNAUTHORIZED,
  PROTOCOL_PARAM,
} from "../constants.ts";
import { PresenceError, type PresenceErrorCode } from "../errors.ts";
import { applyMergePatch } from "../merge_patch.ts";
import type { Metadata, PresentEntry, ServerFrame, WireSnapshot } from "../protocol.ts";
import { applyEvent, applySnapshot, createRoomView, type PresenceUpdate } from "./sync.ts";
import type { Answer, Cb, Ear, Own, Req, Sub, Timer } from "./_records.ts";

/**
 * The connection status reported by {@link PresenceClient.status}:
 * `closed` (before `connect()`, after `close()`, or when reconnecting gave up)
 * → `connecting` → `open`; an abrupt loss → `reconnecting` → `open`.
 *
 * @example
 * ```ts
 * import { PresenceClient, type PresenceStatus } from "@presently/presently/client";
 * const client = new PresenceClient("wss://example.com/presence");
 * const status: PresenceStatus = client.status; // "closed"
 * ```
 */
export type PresenceStatus = "connecting" | "open" | "reconnecting" | "closed" | "unauthorized";

/**
 * Reconnect policy: exponential backoff with full jitter, the delay before
 * attempt `n` (from 0) being random in `[0, min(maxDelayMs, minDelayMs * 2^n))`.
 *
 * @example
 * ```ts
 * import type { ReconnectOptions } from "@presently/presently/client";
 * const reconnect: ReconnectOptions = { minDelayMs: 500, maxDelayMs: 30_000, maxRetries: 20 };
 * ```
 */
export interface ReconnectOptions {
  /** Base delay in ms (default 250). */
  minDelayMs?: number;
  /** Largest delay in ms (default 10000). */
  maxDelayMs?: number;
  /** Reconnect attempts in a row before giving up (default `Infinity`). */
  maxRetries?: number;
}

/**
 * Options of {@link PresenceClient}.
 *
 * @example
 * ```ts
 * import { PresenceClient, type PresenceClientOptions } from "@presently/presently/client";
 * const options: PresenceClientOptions = {
 *   protocols: ["presently", "token.abc"],
 *   requestTimeoutMs: 5_000,
 *   reconnect: { maxRetries: 10 },
 * };
 * const client = new PresenceClient("wss://example.com/presence", options);
 * ```
 */
export interface PresenceClientOptions {
  /** Reconnect policy, or `false` to never reconnect. */
  reconnect?: ReconnectOptions | false;
  /**
   * Time a request may wait for its answer, queue time included (default
   * 10000 ms). Also bounds the wait for the server's `hello` on each socket.
   */
  requestTimeoutMs?: number;
  /** Most requests held while not connected (default 1000); more resolve `queue_full`. */
  maxQueuedRequests?: number;
  /** WebSocket subprotocols, e.g. to carry an auth token. */
  protocols?: string | string[];
  /** Extra query parameters on the socket URL, e.g. a token. */
  params?: Record<string, string>;
  /** The WebSocket constructor to use (default `globalThis.WebSocket`). */
  WebSocket?: typeof WebSocket;
  /**
   * Called before every connect and reconnect; what it resolves to is used
   * for that dial, over `params` and `protocols`. A refusal after the upgrade
   * (close code 4401, e.g. `token_expired`) calls it again at once; when it
   * throws, or the server refuses twice in a row, the client stops with
   * status `"unauthorized"`. A resume keeps the connection id, so a fresh
   * token is not a rejoin.
   */
  auth?: () => AuthParams | Promise<AuthParams>;
}

/**
 * What {@link PresenceClientOptions.auth} resolves to for one dial.
 *
 * @example
 * ```ts
 * import { PresenceClient, type AuthParams } from "@presently/presently/client";
 * const fetchToken = (): Promise<string> => Promise.resolve("t0k3n");
 * const client = new PresenceClient("wss://example.com/presence", {
 *   auth: async (): Promise<AuthParams> => ({ params: { token: await fetchToken() } }),
 * });
 * ```
 */
export interface AuthParams {
  /** Query parameters for this dial (replace the `params` option). */
  params?: Record<string, string>;
  /** Subprotocols for this dial (replace the `protocols` option). */
  protocols?: string | string[];
  /**
   * Request headers for this dial. Browsers cannot set WebSocket headers;
   * Deno and Bun can.
   */
  headers?: Record<string, string>;
}

/**
 * The outcome of a request. Failures never reject: they set `error`.
 *
 * @example
 * ```ts
 * import { openPair } from "@presently/presently/testing";
 *
 * await using pair = await openPair();
 * const { client } = pair;
 *
 * // Publishing in a room this connection has not joined is refused.
 * const result = await client.publishPresenceState("lobby", { state: "away" });
 * if (!result.success) console.log(result.error?.code); // "not_member"
 * ```
 */
export interface PresenceResult {
  /** Whether the server accepted the request. */
  success: boolean;
  /** Why it failed (`code` is stable), when `success` is false. */
  error?: PresenceError;
}

/**
 * A room or subscription that could not be restored after a reconnect,
 * passed to {@link PresenceClient.onStatus} listeners with the current status.
 * Transient failures (`rate_limited`, `store_error`, `timeout`, `internal`)
 * are retried with backoff first; this reports a final refusal, such as
 * `forbidden` from a guard that no longer admits the connection.
 *
 * @example
 * ```ts
 * import { PresenceClient, type RestoreFailure } from "@presently/presently/client";
 * const client = new PresenceClient("wss://example.com/presence");
 * client.onStatus((status, lost?: RestoreFailure) => {
 *   if (lost) console.warn(`lost "${lost.room}": ${lost.error.code}`);
 * });
 * ```
 */
export interface RestoreFailure {
  /** The room that was not restored. */
  room: string;
  /** Why: the server's refusal. */
  error: PresenceError;
}

/**
 * What {@link PresenceClient.joinRoom} resolves to.
 *
 * @example
 * ```ts
 * import { openPair } from "@presently/presently/testing";
 *
 * await using pair = await openPair();
 * const { client } = pair;
 *
 * const { success, present } = await client.joinRoom("lobby");
 * if (success) console.log(present.map((p) => p.id)); // [client.connectionId]
 * ```
 */
export interface JoinResult<State = unknown> extends PresenceResult {
  /** The connections present after joining, this one included. */
  present: PresentEntry[];
  /**
   * With a callback (`joinRoom(room, cb)`): the states in the room, from the
   * same snapshot as `present`; the callback's updates start right after it.
   */
  states?: Map<string, State> | undefined;
}

/**
 * Options of {@link PresenceClient.subscribePresence}.
 *
 * @example
 * ```ts
 * import { openPair } from "@presently/presently/testing";
 *
 * await using pair = await openPair();
 * const { client } = pair;
 *
 * const { count } = await client.subscribePresence("lobby", (u) => {
 *   if (u.type === "count") console.log(u.connections, u.users);
 * }, { mode: "count" });
 * console.log(count); // { connections: 0, users: 0 }
 * ```
 */
export interface SubscribeOptions {
  /** Also receive `userOnline`/`userOffline` updates and the online user list. */
  users?: boolean;
  /** `"count"` receives count counts instead of members (default `"full"`). */
  mode?: "full" | "count";
}

/**
 * Options of {@link PresenceClient.joinRoom} with a callback.
 *
 * @example
 * ```ts
 * import type { JoinOptions } from "@presently/presently/client";
 * const options: JoinOptions = { mode: "count" };
 * ```
 */
export interface JoinOptions {
  /** `"count"`: the callback gets count counts instead of members (default `"full"`). */
  mode?: "full" | "count";
}

/**
 * The room's view when a subscription starts.
 *
 * @example
 * ```ts
 * import { openPair } from "@presently/presently/testing";
 *
 * await using pair = await openPair();
 * const { client } = pair;
 *
 * const view = await client.subscribePresence("lobby", () => {}, { users: true });
 * console.log(view.present, [...view.states], view.users);
 * ```
 */
export interface PresenceView<State = unknown> {
  /** Present connection ids. */
  present: string[];
  /** States by connection id. */
  states: Map<string, State>;
  /** Present connections with their metadata. */
  members: PresentEntry[];
  /** Online user ids (with `users: true`). */
  users?: string[];
  /** Occupancy (with `mode: "count"`). */
  count?: { connections: number; users: number };
}

/**
 * What {@link PresenceClient.subscribePresence} resolves to: the room's view
 * (empty on failure) plus `success` / `error`.
 *
 * @example
 * ```ts
 * import { openPair } from "@presently/presently/testing";
 *
 * await using pair = await openPair();
 * const { client } = pair;
 *
 * const { success, present, error } = await client.subscribePresence("lobby", () => {});
 * console.log(success ? present : error?.code); // []
 * ```
 */
export interface SubscribeResult<State = unknown> extends PresenceResult, PresenceView<State> {}

/**
 * The first chunk of a {@link PresenceClient.presence} stream.
 *
 * @example
 * ```ts
 * import { openPair } from "@presently/presently/testing";
 *
 * await using pair = await openPair();
 * const { presence, client } = pair;
 *
 * const reader = client.presence("lobby").getReader();
 * const { value } = await reader.read();
 * if (value?.type === "sync") console.log(value.room, value.present); // "lobby" []
 * await reader.cancel();
 * ```
 */
export interface PresenceSync<State = unknown> extends PresenceView<State> {
  /** Always `"sync"`. */
  type: "sync";
  /** The room. */
  room: string;
}

/**
 * Options of {@link PresenceClient.publishPresenceState}: exactly one of
 * `state` / `patch`. `expireAfter` applies to this publish only: a publish
 * without it sets a state that does not expire.
 *
 * @example
 * ```ts
 * import type { PublishOptions } from "@presently/presently/client";
 * const typing: PublishOptions<{ typing: boolean }> = {
 *   state: { typing: true },
 *   expireAfter: 8000,
 * };
 * ```
 */
export interface PublishOptions<State = unknown> {
  /** The full new state. */
  state?: State;
  /** An RFC 7386 merge patch for the current state. */
  patch?: unknown;
  /** Clear the state after this many ms. */
  expireAfter?: number;
}

/**
 * What {@link PresenceClient.publishPresenceState} resolves to.
 *
 * @example
 * ```ts
 * import { openPair } from "@presently/presently/testing";
 *
 * await using pair = await openPair();
 * const { client } = pair;
 *
 * await client.joinRoom("lobby");
 * const { success, seq } = await client.publishPresenceState("lobby", { state: 1 });
 * console.log(success, seq); // true 2 (the join was 1)
 * ```
 */
export interface PublishResult extends PresenceResult {
  /** The room sequence of the change (`null` when nothing changed). */
  seq?: number | null;
}

const CLOSED = "Closed";

const err = (code: PresenceErrorCode, message: string): Answer => ({
  t: "err",
  code,
  message,
});
const fail = (a: Answer): PresenceError => new PresenceError(a.code!, a.message!);
const res = (a: Answer): PresenceResult =>
  a.t == "ok" ? { success: true } : { success: false, error: fail(a) };
const call = <T, U>(fn: (arg: T, more?: U) => void, arg: T, more?: U): void => {
  // A throwing callback must not break the client: report it like an event listener would.
  try {
    fn(arg, more);
  } catch (e) {
    queueMicrotask(() => {
      throw e;
    });
  }
};

/**
 * A presence client: joins rooms, subscribes to presence, publishes
 * per-connection state, and keeps all of it across reconnects.
 *
 * Error rule: a method whose result has a `success` field never rejects;
 * refusals and transport failures (`closed`, `timeout`, `queue_full`) resolve
 * `{ success: false, error }` where `error` is a {@link PresenceError} with a
 * stable `code`. {@link PresenceClient.connect} and
 * {@link PresenceClient.getConnectionMetadata} reject with a
 * {@link PresenceError} instead.
 *
 * Requests made while not connected (before `connect()` or while
 * reconnecting) are queued, up to `maxQueuedRequests`, and sent once the
 * socket is open; each times out after `requestTimeoutMs`. Requests in flight
 * when a socket dies are sent again on the next one.
 *
 * Reconnect: any end not caused by {@link PresenceClient.close} makes the
 * status `reconnecting` and retries with exponential backoff and full jitter,
 * resuming with the token from the last `hello`. Close codes 4400 and 4401
 * are not retried. After a resume the server keeps rooms, states and
 * subscriptions and sends a snapshot per subscription, applied as a diff;
 * after a fresh connection (new {@link PresenceClient.connectionId}) the
 * client rejoins its rooms, republishes its states (with what is left of
 * their `expireAfter`) and resubscribes, then sends the queue.
 *
 * Liveness: every `ping` is answered with `pong`; when no `ping` or answer
 * arrives for (`pingIntervalMs` + `timeoutMs`) / 2 (from `hello`), the
 * socket is treated as dead and replaced at once (resumed). Events do not
 * count: they do not show that the server still hears this client
 * (docs/PROTOCOL.md).
 *
 * Updates include this connection's own events; filter on
 * {@link PresenceClient.connectionId} if needed.
 *
 * @typeParam State The presence state type.
 * @typeParam Meta The connection metadata type.
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
 * const presence = new PresenceServer();
 * presence.trackPresence("lobby");
 * const handler = presenceHandler(presence);
 * const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
 * const client = new PresenceClient<{ typing: boolean }>(`ws://127.0.0.1:${http.addr.port}/`);
 * await client.connect();
 *
 * await client.joinRoom("lobby");
 * const { present } = await client.subscribePresence("lobby", (update) => {
 *   if (update.type === "join") console.log("joined", update.connectionId);
 * });
 * console.log(present); // [client.connectionId]
 * await client.publishPresenceState("lobby", { state: { typing: true }, expireAfter: 8000 });
 *
 * await client.close();
 * await presence.close();
 * await http.shutdown();
 * ```
 */
export class PresenceClient<State = unknown, Meta extends Metadata = Metadata> {
  // Internal state (short names keep the minified bundle small).
  #url: string; // URL
  #options: PresenceClientOptions;
  #ws: WebSocket | null = null;
  #status: PresenceStatus = "closed";
  #cid: string | null = null;
  #token = ""; // resume token
  #resumed = false; // last hello resumed
  #open = false; // open: hello seen on the current socket
  #ended = false; // close() called or reconnecting gave up
  #lastId = 0; // last request id
  #attempts = 0; // reconnect attempts in a row
  #deadline = 0; // liveness deadline, ms
  #lastFrame = 0; // time of the last ping, answer or hello
  #beatTimer?: Timer; // liveness timer
  #retryTimer?: Timer; // reconnect timer
  #requests = new Map<number, Req>(); // requests, queued and in flight
  #rooms = new Map<string, Own>(); // joined rooms and own state there
  #subs = new Map<string, Sub<State, Meta>>(); // subscriptions
  #holds = new Map<string, Set<unknown>>(); // who holds each joined room
  #joins = new Map<string, Promise<unknown>>(); // each room's latest joinRoom
  #dials = 0; // bumped per dial and per loss: a late auth answer is dropped
  #refused = 0; // 4401 refusals in a row
  #listeners = new Set<(s: PresenceStatus, f?: RestoreFailure) => void>(); // status listeners
  #waiters: Array<[() => void, (e: PresenceError) => void]> = []; // connect() waiters

  /**
   * Create a client. It does not connect until {@link PresenceClient.connect}.
   *
   * @param url The server's WebSocket URL; `v=1` and `params` are added to it.
   * @param options Reconnect, timeouts, queue bound, auth and WebSocket injection.
   *
   * @example
   * ```ts
   * import { PresenceClient } from "@presently/presently/client";
   * const client = new PresenceClient("wss://example.com/presence", {
   *   params: { token: "secret" },
   *   reconnect: { maxRetries: 10 },
   * });
   * ```
   */
  constructor(url: string | URL, options: PresenceClientOptions = {}) {
    this.#url = new URL(url, globalThis.document?.baseURI).href;
    this.#options = options;
  }

  /**
   * The connection id from the server, `null` before the first hello or after close.
   *
   * @returns The id, or `null`.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { presence, client } = pair;
   *
   * console.log(client.connectionId); // e.g. "q3HkX0c2bB1SxZy9f8n3Rw"
   * console.log(await presence.getConnectionMetadata(client.connectionId!)); // {}
   * ```
   */
  get connectionId(): string | null {
    return this.#cid;
  }

  /**
   * The connection status.
   *
   * @returns `"connecting"`, `"open"`, `"reconnecting"` or `"closed"`.
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * import { PresenceClient } from "@presently/presently/client";
   *
   * const presence = new PresenceServer();
   * presence.trackPresence("lobby");
   * const WebSocket = presence.inProcessWebSocket(); // no network needed
   * const client = new PresenceClient("ws://presence/", { WebSocket });
   * console.log(client.status); // "closed"
   * const connecting = client.connect();
   * console.log(client.status); // "connecting"
   * await connecting;
   * console.log(client.status); // "open"
   *
   * await client.close();
   * await presence.close();
   * ```
   */
  get status(): PresenceStatus {
    return this.#status;
  }

  /**
   * Whether the last open resumed the previous connection (same id, rooms and states).
   *
   * @returns `true` after a resume, `false` after a fresh connection.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { client } = pair;
   *
   * client.onStatus((status) => {
   *   if (status === "open" && !client.resumed) console.log("new id:", client.connectionId);
   * });
   * console.log(client.resumed); // false: the first open is never a resume
   * ```
   */
  get resumed(): boolean {
    return this.#resumed;
  }

  /**
   * Watch status changes, and restores that failed for good.
   *
   * @param cb Called with each new status; called with the current status and
   * a {@link RestoreFailure} when a room or subscription could not be restored
   * after a reconnect (transient failures are retried first).
   * @returns A function that stops watching.
   *
   * @example
   * ```ts
   * import { PresenceClient } from "@presently/presently/client";
   * const client = new PresenceClient("wss://example.com/presence");
   * const stop = client.onStatus((s) => console.log(s, client.resumed));
   * stop();
   * ```
   */
  onStatus(cb: (status: PresenceStatus, lost?: RestoreFailure) => void): () => void {
    this.#listeners.add(cb);
    return () => {
      this.#listeners.delete(cb);
    };
  }

  /**
   * Open the socket, or wait for the one being opened.
   *
   * @returns Resolves on the server's `hello`.
   * @throws {PresenceError} `unauthorized` when the server closes with 4401,
   * `closed` when the socket closes before `hello` or `close()` is called.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { client } = pair;
   *
   * console.log(client.status, client.connectionId); // "open" and the id
   * ```
   */
  connect(): Promise<void> {
    return this.#open ? Promise.resolve() : new Promise((resolve, reject) => {
      this.#waiters.push([resolve, reject]);
      if (this.#status == "closed" || this.#status == "unauthorized") {
        this.#ended = false;
        this.#setStatus("connecting");
        this.#dial();
      }
    });
  }

  /**
   * Close cleanly (code 1000): the server leaves all rooms at once. No
   * reconnect follows; queued and pending requests resolve with `closed`.
   *
   * @returns Resolves when the socket has closed.
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * import { PresenceClient } from "@presently/presently/client";
   *
   * const presence = new PresenceServer();
   * presence.trackPresence("lobby");
   * const WebSocket = presence.inProcessWebSocket(); // no network needed
   * const client = new PresenceClient("ws://presence/", { WebSocket });
   * await client.connect();
   * await client.joinRoom("lobby");
   *
   * await client.close(); // leaves "lobby" at once
   * console.log(client.status); // "closed"
   *
   * await presence.close();
   * ```
   */
  close(): Promise<void> {
    const ws = this.#ws;
    this.#rooms.clear();
    this.#subs.clear();
    this.#finish("closed");
    return new Promise((resolve) => {
      if (!ws || ws.readyState > 1) return resolve();
      const t = setTimeout(resolve, this.#options.requestTimeoutMs ?? 1e4);
      ws.onclose = () => {
        clearTimeout(t);
        resolve();
      };
      ws.close(CLOSE_NORMAL);
    });
  }

  /**
   * Join a room. With `onUpdate` it also subscribes to the room's presence in
   * the same request, so `present` (and `states`) and the updates after them
   * start from one snapshot: nobody who joins meanwhile is missed. If it is
   * refused, neither happened.
   *
   * @param room The room name.
   * @param onUpdate Optional presence callback, as for {@link PresenceClient.subscribePresence}.
   * @returns `{ success, present, states? }` (`states` with `onUpdate`); never rejects.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { client } = pair;
   *
   * const { success, present, error } = await client.joinRoom("lobby");
   * console.log(success ? present.length : error?.code); // 1
   *
   * // Join and subscribe in one step:
   * await client.joinRoom("lobby", (update) => console.log(update.type));
   * ```
   */
  joinRoom(
    room: string,
    onUpdate?: (update: PresenceUpdate<State, Meta>) => void,
    options: JoinOptions = {},
  ): Promise<JoinResult<State>> {
    const j = this.#joins, p = this.#join(room, onUpdate, options, j.get(room));
    j.set(room, p);
    return p;
  }

  async #join(
    room: string,
    onUpdate: Cb<State, Meta> | undefined,
    options: JoinOptions,
    prior?: Promise<unknown>,
  ): Promise<JoinResult<State>> {
    const h = this.#holds, hold = onUpdate ?? 0;
    // Another holder's join settles first: then this one knows if the room is joined.
    if (h.get(room)?.size) await prior;
    const held = h.get(room) ?? new Set();
    h.set(room, held.add(hold));
    let present: unknown, error: PresenceError | undefined, states;
    // With a callback and no subscription yet: one request that joins and
    // subscribes, so the view and the updates after it start from the same
    // snapshot. Otherwise a join (unless joined) and a listener on the
    // room's shared subscription.
    const both = onUpdate && !this.#subs.has(room), had = this.#rooms.has(room);
    // Into the restore list once the server has joined (not if left
    // meanwhile): a reconnect while the subscription is still asked joins
    // the new connection too.
    const list = () => {
      if (h.get(room)?.has(hold) && !this.#rooms.has(room)) this.#rooms.set(room, undefined);
    };
    if (!both && !(onUpdate && had)) {
      const a = await this.#request({ op: "join", room });
      if (a.t == "err") error = fail(a);
      else list();
      present = a.present;
    }
    if (onUpdate && !error) {
      ({ members: present, states, error } = await this.subscribePresence(
        room,
        onUpdate,
        options,
        both,
      ));
    }
    if (error) {
      held.delete(hold);
      // A call that fails lists nothing, and undoes a join it made above
      // (its subscription failed): the server would keep it joined.
      if (!had && this.#rooms.delete(room)) this.#request({ op: "leave", room });
      return { success: false, present: [], error };
    }
    list();
    return { success: true, present: present as PresentEntry[], states };
  }

  /**
   * Leave a room. Also drops this client's subscription to it and its own
   * state there. A refused leave (e.g. `rate_limited`) keeps the room: the
   * connection is still in it, and a reconnect restores it.
   *
   * @param room The room name.
   * @returns `{ success }`; never rejects.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { client } = pair;
   *
   * await client.joinRoom("lobby");
   * const { success } = await client.leaveRoom("lobby");
   * console.log(success); // true
   * ```
   */
  async leaveRoom(
    room: string,
    onUpdate?: (update: PresenceUpdate<State, Meta>) => void,
  ): Promise<PresenceResult> {
    const h = this.#holds.get(room);
    if (onUpdate) h?.delete(onUpdate);
    if (this.#subs.has(room)) void this.unsubscribePresence(room, onUpdate);
    // Other holders (another listener, a plain join) keep the room joined.
    if (onUpdate && h?.size) return { success: true };
    this.#holds.delete(room);
    this.#joins.delete(room);
    // Out of the restore list at once, so no restore can follow the leave;
    // back in if refused (e.g. rate_limited): still in the room.
    const r = this.#rooms, own = r.get(room), had = r.delete(room);
    const a = await this.#request({ op: "leave", room });
    if (a.t == "err" && had && !r.has(room)) r.set(room, own);
    return res(a);
  }

  /**
   * Subscribe to a room's presence. Resolves with the room's view; `cb` then
   * gets every change after it, this connection's own events included. Missed
   * events (a sequence gap) are repaired with a fresh snapshot, delivered to
   * `cb` as a diff. Subscribing again to the same room replaces `cb`.
   *
   * @param room The room name.
   * @param cb Called with each {@link PresenceUpdate}.
   * @param options `users: true` for user online/offline; `mode: "count"` for counts only.
   * @returns `{ success, present, states, members }`; never rejects.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { client } = pair;
   *
   * const { present, states } = await client.subscribePresence("lobby", (u) => {
   *   if (u.type === "state") console.log(u.connectionId, u.state);
   * });
   * console.log(present, states.size); // [] 0
   * ```
   */
  async subscribePresence(
    room: string,
    cb: (update: PresenceUpdate<State, Meta>) => void,
    options: SubscribeOptions = {},
    /** @internal A join with `sub`, from joinRoom. */
    join?: boolean,
  ): Promise<SubscribeResult<State>> {
    const s = this.#subs, ear: Ear = { options }, o = options;
    let sub = s.get(room);
    if (!sub) s.set(room, sub = { view: createRoomView(room), listeners: new Map(), covers: {} });
    const w = sub.covers, { listeners: ls, view: v } = sub, count = o.mode == "count";
    ls.set(cb, ear);
    // Widen the server subscription when this listener needs more of it: a
    // count listener on a full subscription counts users from the view.
    if (!sub.latest || (!count && w.mode) || (o.users || count && !w.mode) && !w.users) {
      let full, users, cnt;
      for (const { options: o } of ls.values()) {
        o.mode == "count" ? cnt = 1 : (full = 1, users ||= o.users);
      }
      sub.covers = full ? users || cnt ? { users: true } : {} : { mode: "count" };
      sub.latest = this.#subscribe(sub, join);
    }
    const a = await sub.latest;
    const view: PresenceView<State> = { present: [], states: new Map(), members: [] };
    if (a.t == "err" && s.get(room) == sub) {
      ls.delete(cb);
      if (!ls.size) s.delete(room);
    }
    if (ls.get(cb) != ear) {
      return { success: false, ...view, error: fail(a.t == "err" ? a : err("closed", CLOSED)) };
    }
    ear.ready = true;
    if (count) view.count = sub.covers.mode ? sub.count! : this.#count(sub);
    else {
      for (const [id, meta] of v.members) {
        view.present.push(id);
        view.members.push({ id, meta });
      }
      view.states = new Map(v.states);
      if (o.users) view.users = [...v.users];
    }
    return { success: true, ...view };
  }

  /**
   * Stop receiving a room's presence updates.
   *
   * @param room The room name.
   * @returns `{ success }`; never rejects.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { client } = pair;
   *
   * await client.subscribePresence("lobby", (u) => console.log(u.type));
   * const { success } = await client.unsubscribePresence("lobby");
   * console.log(success); // true
   * ```
   */
  async unsubscribePresence(
    room: string,
    cb?: (update: PresenceUpdate<State, Meta>) => void,
  ): Promise<PresenceResult> {
    const s = this.#subs, sub = s.get(room);
    if (cb) sub?.listeners.delete(cb);
    if (cb && sub?.listeners.size) return { success: true };
    s.delete(room);
    return res(await this.#request({ op: "unsub", room }));
  }

  /**
   * Set this connection's state in a room (it must have joined). The client
   * remembers it, merged, and republishes it after a reconnect that did not
   * resume, with what is left of `expireAfter`.
   *
   * @param room The room name.
   * @param options Exactly one of `state` / `patch`, and optional `expireAfter` (ms).
   * @returns `{ success, seq }`; never rejects.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { presence, client } = pair;
   *
   * await client.joinRoom("lobby");
   * await client.publishPresenceState("lobby", { state: { status: "typing" }, expireAfter: 8000 });
   * await client.publishPresenceState("lobby", { patch: { status: "idle" } });
   * console.log(await presence.getPresenceStates("lobby")); // Map { id => { status: "idle" } }
   * ```
   */
  async publishPresenceState(
    room: string,
    options: PublishOptions<State>,
  ): Promise<PublishResult> {
    const at = Date.now();
    const a = await this.#request({ op: "state", room, ...options });
    if (a.t == "err") return res(a);
    if (this.#rooms.has(room)) {
      const prev = this.#rooms.get(room);
      const { patch, expireAfter: ms } = options;
      this.#rooms.set(room, {
        state: patch === undefined ? options.state : applyMergePatch(
          prev && prev.expiresAt > at ? prev.state : null,
          patch,
        ),
        expiresAt: ms ? at + ms : Infinity,
      });
    }
    return { success: true, seq: a.seq as number | null };
  }

  /**
   * Clear this connection's state in a room.
   *
   * @param room The room name.
   * @returns `{ success }`; never rejects.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { client } = pair;
   *
   * await client.joinRoom("lobby");
   * await client.publishPresenceState("lobby", { state: { status: "typing" } });
   * const { success } = await client.clearPresenceState("lobby");
   * console.log(success); // true
   * ```
   */
  async clearPresenceState(room: string): Promise<PresenceResult> {
    const a = await this.#request({ op: "clear", room });
    if (a.t == "ok" && this.#rooms.has(room)) this.#rooms.set(room, undefined);
    return res(a);
  }

  /**
   * Read another connection's public metadata (set by the server).
   *
   * @param connectionId The connection id.
   * @returns The metadata, or `null` when the connection is unknown.
   * @throws {PresenceError} When the request fails (`closed`, `timeout`, a refusal).
   *
   * @example
   * ```ts
   * import { PresenceServer } from "@presently/presently";
   * import { presenceHandler } from "@presently/presently/deno";
   * import { PresenceClient } from "@presently/presently/client";
   *
   * const presence = new PresenceServer({ authenticate: () => ({ userId: "ada" }) });
   * presence.trackPresence("lobby");
   * const handler = presenceHandler(presence);
   * const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
   * const url = `ws://127.0.0.1:${http.addr.port}/`;
   * const client = new PresenceClient<unknown, { userId: string }>(url);
   * await client.connect();
   *
   * const meta = await client.getConnectionMetadata(client.connectionId!);
   * console.log(meta?.userId); // "ada"
   *
   * await client.close();
   * await presence.close();
   * await http.shutdown();
   * ```
   */
  async getConnectionMetadata(connectionId: string): Promise<Meta | null> {
    const a = await this.#request({ op: "meta", cid: connectionId });
    if (a.t == "err") throw fail(a);
    return (a.meta ?? null) as Meta | null;
  }

  /**
   * A room's presence as a stream: subscribes when read, the first chunk is a
   * {@link PresenceSync} with the room's view, then every update follows.
   * Cancelling the stream unsubscribes; it ends when the client closes. A
   * refused subscription errors the stream with a {@link PresenceError}.
   *
   * @param room The room name.
   * @param options As for {@link PresenceClient.subscribePresence}.
   * @returns A stream of the sync chunk and updates.
   *
   * @example
   * ```ts
   * import { openPair } from "@presently/presently/testing";
   *
   * await using pair = await openPair();
   * const { presence, client } = pair;
   *
   * for await (const chunk of client.presence("lobby")) {
   *   if (chunk.type === "sync") console.log(chunk.present); // []
   *   else console.log(chunk.type);
   *   break; // cancels the stream, which unsubscribes
   * }
   * ```
   */
  presence(
    room: string,
    options?: SubscribeOptions,
  ): ReadableStream<PresenceUpdate<State, Meta> | PresenceSync<State>> {
    let off: (() => void) | undefined, gone = false, cb: Cb<State, Meta>;
    return new ReadableStream({
      start: async (c) => {
        const { success, error, ...view } = await this.subscribePresence(
          room,
          cb = (u) => c.enqueue(u),
          options,
        );
        if (gone) return;
        if (!success) return c.error(error);
        off = this.onStatus(() => {
          if (this.#ended) {
            off!();
            c.close();
          }
        });
        c.enqueue({ type: "sync", room, ...view });
      },
      cancel: () => {
        gone = true;
        off?.();
        void this.unsubscribePresence(room, cb);
      },
    });
  }

  /** Set the status and tell the listeners (a restore's refusal too, status unchanged). */
  #setStatus(s: PresenceStatus, lost?: RestoreFailure): void {
    if (this.#status != s || lost) {
      this.#status = s;
      for (const cb of this.#listeners) call(cb, s, lost);
    }
  }

  /** Send a request now, or queue it until the socket is open. */
  #request(f: Record<string, unknown>): Promise<Answer> {
    return new Promise((r) => {
      const o = this.#options, p = this.#requests;
      if (this.#ended) return r(err("closed", CLOSED));
      if (!this.#open && p.size >= (o.maxQueuedRequests ?? 1e3)) {
        return r(err("queue_full", "Queue full"));
      }
      // Ids stay within 1 .. 2^31-1 as the protocol requires.
      const id = this.#lastId = this.#lastId % 0x7fffffff + 1;
      const timer = setTimeout(
        () => q.settle(err("timeout", "Timed out")),
        o.requestTimeoutMs ?? 1e4,
      );
      const q: Req = {
        frame: { ...f, id },
        settle: (a) => {
          clearTimeout(timer);
          p.delete(id);
          r(a);
        },
      };
      p.set(id, q);
      if (this.#open) this.#send(q);
    });
  }

  /** Send a request on the current socket. */
  #send(q: Req): void {
    (q.socket = this.#ws!).send(JSON.stringify(q.frame));
  }

  /** Send a `sub` for a subscription (first time or resync). */
  /**
   * Send a restore: marked `rs`, retried while the failure is transient and
   * `live()` holds (a state waits for its join), and a final refusal is told
   * to the status listeners.
   */
  async #restore(f: Record<string, unknown>, live?: () => boolean): Promise<Answer> {
    for (let i = 0, a: Answer;; i++) {
      if (i) {
        await new Promise((r) => setTimeout(r, 50 << i % 8));
        // The room may have been left, or the subscription dropped, meanwhile.
        if (live && !live()) return a!;
      }
      a = await this.#request({ ...f, rs: 1 });
      if (a.t == "ok" || this.#ended) return a;
      // Transient: rate_limited, store_error, timeout, internal, and
      // not_member (a state restore waits for its join).
      if (!/^(ra|st|ti|in|not_m)/.test(a.code!)) {
        this.#setStatus(this.#status, { room: f.room as string, error: fail(a) });
        return a;
      }
    }
  }

  /** Send a `sub` (a join with `sub` when `j`) for the subscription's listeners, and apply the answer. */
  async #subscribe(sub: Sub<State, Meta>, j?: boolean): Promise<Answer> {
    const { view: v, covers: o } = sub, room = v.room, was = sub.synced;
    sub.pending = true;
    // `q`: the sequence this view has seen, so a lagging instance catches up first.
    const f = { op: j ? "join" : "sub", sub: j, room, ...o, q: v.seq };
    // A resync is retried (unless the subscription went, or was widened by
    // a request of its own); a first subscribe answers its caller.
    const live = () => this.#subs.get(room) == sub && sub.covers == o;
    const a = await (was ? this.#restore(f, live) : this.#request(f));
    sub.pending = false;
    if (a.t == "ok") {
      sub.synced = true;
      if (o.mode) {
        sub.count = { connections: a.c as number, users: a.u as number };
        this.#emit(sub, [{ type: "count", room, ...sub.count }]);
      } else {
        this.#emit(sub, applySnapshot(v, a as unknown as WireSnapshot));
        if (v.resync) this.#resync(sub);
      }
    }
    return a;
  }

  /** A full subscription's count, for its count listeners. */
  #count({ view: v }: Sub<State, Meta>): { connections: number; users: number } {
    return { connections: v.members.size, users: v.users.size };
  }

  /** Resubscribe for a fresh snapshot unless one is on its way. */
  #resync(sub: Sub<State, Meta>): void {
    if (!sub.pending && this.#subs.get(sub.view.room) == sub) void this.#subscribe(sub);
  }

  /** Tell the listeners that have their view: `u` updates only to `users: true` ones; counts to count ones. */
  #emit(sub: Sub<State, Meta>, ups: PresenceUpdate<State, Meta>[]): void {
    // Counts from the view only when a count listener made it carry users.
    if (sub.covers.users && sub.view.ready) {
      ups = [...ups, { type: "count", room: sub.view.room, ...this.#count(sub) }];
    }
    for (const u of ups) {
      // A count is told when it changed (a widening or resync may not).
      if (u.type == "count") {
        const k = u.connections + "," + u.users;
        if (k == sub.told) continue;
        sub.told = k;
      }
      for (const [cb, { options: o, ready }] of sub.listeners) {
        if (
          ready && this.#subs.get(sub.view.room) == sub &&
          (o.mode == "count"
            ? u.type == "count"
            : u.type != "count" && (o.users || u.type[0] != "u"))
        ) call(cb, u);
      }
    }
  }

  /** Open a socket (first connect or reconnect), asking `auth` first. */
  async #dial(): Promise<void> {
    const o = this.#options, u = new URL(this.#url), q = u.searchParams, n = ++this.#dials;
    // Until hello, the request timeout bounds the wait (auth included).
    this.#lastFrame = Date.now();
    this.#beat(this.#deadline = o.requestTimeoutMs ?? 1e4);
    let x: AuthParams = o, got;
    if (o.auth) {
      try {
        got = await o.auth();
      } catch { /* refused: below */ }
      // A dial given up meanwhile (deadline, close) drops its late answer.
      if (n != this.#dials || this.#ended) return;
      if (!got) return this.#finish("unauthorized");
      x = { ...o, ...got };
    }
    for (const [k, v] of Object.entries(x.params ?? {})) q.set(k, v);
    q.set("v", PROTOCOL_PARAM);
    if (this.#token) q.set("resume", this.#token);
    try {
      const WS = o.WebSocket ?? WebSocket, p = x.protocols, headers = x.headers;
      // `headers`: Deno's and Bun's WebSocket take them in an options object.
      const ws = this.#ws = new WS(u, headers ? { protocols: p, headers } as never : p);
      ws.onmessage = (e) => ws == this.#ws && this.#message(e.data);
      ws.onclose = (e) => ws == this.#ws && this.#lost(e.code);
    } catch {
      this.#lost(CLOSE_ABNORMAL);
    }
  }

  /** (Re)arm the liveness deadline. */
  #beat(ms: number): void {
    clearTimeout(this.#beatTimer);
    this.#beatTimer = setTimeout(() => {
      const idle = Date.now() - this.#lastFrame, ws = this.#ws;
      if (idle < this.#deadline) return this.#beat(this.#deadline - idle);
      // Dead: do not wait for a close handshake that may never come.
      this.#lost(CLOSE_HEARTBEAT_TIMEOUT);
      ws?.close(CLOSE_HEARTBEAT_TIMEOUT);
    }, ms);
  }

  /** The current socket ended without close(). */
  #lost(code: number): void {
    const o = this.#options, r = o.reconnect || null, cid = this.#cid;
    // A refusal after the upgrade (4401, e.g. token_expired) with `auth`:
    // dial again at once with a fresh answer; a second in a row is final.
    const again = code == CLOSE_UNAUTHORIZED && o.auth && !this.#refused++;
    this.#dials++;
    this.#ws = null;
    this.#open = false;
    clearTimeout(this.#beatTimer);
    if (
      !again && (!cid || o.reconnect == false || code == CLOSE_BAD_VERSION ||
        code == CLOSE_UNAUTHORIZED ||
        this.#attempts >= (r?.maxRetries as number)) // `>= undefined` is false: no limit
    ) return this.#finish(code == CLOSE_UNAUTHORIZED ? "unauthorized" : "closed");
    this.#retryTimer = setTimeout(
      () => this.#dial(),
      again ? 0 : Math.random() *
        Math.min(r?.maxDelayMs ?? 1e4, (r?.minDelayMs ?? 250) * 2 ** this.#attempts++),
    );
    if (cid) this.#setStatus("reconnecting");
  }

  /** Terminal: fail everything waiting, status "closed". */
  #finish(code: PresenceErrorCode): void {
    this.#ended = true;
    this.#open = false;
    this.#ws = null;
    this.#cid = null;
    this.#token = "";
    clearTimeout(this.#beatTimer);
    clearTimeout(this.#retryTimer);
    for (const q of this.#requests.values()) q.settle(err("closed", CLOSED));
    for (const w of this.#waiters.splice(0)) w[1](new PresenceError(code, CLOSED));
    this.#setStatus(code == "unauthorized" ? code : "closed");
  }

  /** Handle one inbound frame; never throws. */
  #message(data: unknown): void {
    try {
      const f = JSON.parse(data as string) as ServerFrame;
      const sub = this.#subs.get((f as { r: string }).r);
      switch (f.t) {
        case "hello":
          return this.#hello(f);
        case "ping":
          this.#lastFrame = Date.now();
          return this.#ws!.send('{"op":"pong"}');
        case "ok":
        case "err": {
          this.#lastFrame = Date.now();
          return this.#requests.get(f.id!)?.settle(f as Answer);
        }
        case "ev":
          if (sub && !sub.covers.mode) {
            for (const e of f.e) {
              const { updates, gap } = applyEvent(sub.view, e);
              this.#emit(sub, updates);
              if (gap) this.#resync(sub);
            }
          }
          return;
        case "snap":
          if (sub?.synced && !sub.covers.mode) {
            this.#emit(sub, applySnapshot(sub.view, f));
            if (sub.view.resync) this.#resync(sub);
          }
          return;
        case "cnt":
          if (sub?.covers.mode) {
            this.#emit(sub, [{
              type: "count",
              room: f.r,
              ...(sub.count = { connections: f.c, users: f.u }),
            }]);
          }
      }
    } catch { /* a malformed frame is ignored */ }
  }

  /** A socket is open: restore what a fresh connection lost, flush the queue. */
  #hello(f: Extract<ServerFrame, { t: "hello" }>): void {
    const now = this.#lastFrame = Date.now();
    this.#cid = f.cid;
    this.#token = f.token;
    this.#resumed = f.resumed;
    this.#attempts = this.#refused = 0;
    this.#open = true;
    // The server pings within I + (T − I) / 4 + a sweep of our silence and
    // closes us T after it last heard us: no ping or answer for (I + T) / 2
    // is a dead link. (Waiting for T of silence, events included, could
    // resume past the server's grace window: a leave for a live client.)
    // (Without a valid `hb`, about a day: no liveness check.)
    this.#beat(this.#deadline = (f.hb[0] + f.hb[1]) / 2 || 1e8);
    if (!f.resumed) {
      // A new connection: restore rooms, own states and subscriptions first.
      for (const [room, own] of this.#rooms) {
        // A refusal is told to the status listeners; the room stays listed,
        // so the next reconnect tries again (and tells again).
        void this.#restore({ op: "join", room }, () => this.#rooms.has(room));
        // An own state that expired while away is not restored (and a
        // later patch starts from nothing, as publishPresenceState knows).
        const left = own ? own.expiresAt - now : 0;
        if (left > 0) {
          void this.#restore(
            {
              op: "state",
              room,
              state: own!.state,
              expireAfter: left < Infinity ? left : undefined,
            },
            () => this.#rooms.get(room) == own,
          );
        }
      }
      for (const sub of this.#subs.values()) {
        if (sub.synced) {
          sub.view.resync = true;
          this.#resync(sub);
        }
      }
    }
    for (const q of this.#requests.values()) if (q.socket != this.#ws) this.#send(q);
    for (const w of this.#waiters.splice(0)) w[0]();
    this.#setStatus("open");
  }
}
