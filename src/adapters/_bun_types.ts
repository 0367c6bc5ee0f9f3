// Structural types for the parts of Bun the adapter uses, declared locally so
// neither Deno's tooling nor JSR needs Bun's own types.

import type { SocketHandlers } from "../server/socket.ts";

/**
 * The part of Bun's `Server` this adapter uses (declared locally).
 *
 * @example A stub server for tests
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { bunPresence, type BunServerLike } from "@presently/presently/bun";
 * // Bun's `Server` fits as is; outside Bun, a stub is enough to test a fallback.
 * const stub: BunServerLike = { upgrade: () => false, publish: () => 0 };
 * const presence = new PresenceServer();
 * const response = await bunPresence(presence).fetch(new Request("http://localhost/"), stub);
 * console.log(response?.status); // 426: not a WebSocket upgrade
 * await presence.close();
 * ```
 */
export interface BunServerLike {
  /** Upgrade a request to a WebSocket. */
  upgrade(request: Request, options: { data: unknown; headers?: HeadersInit }): boolean;
  /** Publish to every socket subscribed to a topic. */
  publish(topic: string, data: string): number;
  /** The peer address of a request. */
  requestIP?(request: Request): { address: string } | null;
}

/**
 * Per-socket data this adapter keeps on Bun's `ws.data`.
 *
 * @example
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { bunPresence, type BunServerLike, type BunSocketData } from "@presently/presently/bun";
 * const presence = new PresenceServer();
 * let data: BunSocketData | undefined;
 * const stub: BunServerLike = {
 *   upgrade: (_request, options) => {
 *     data = options.data as BunSocketData; // what Bun then exposes as `ws.data`
 *     return true;
 *   },
 *   publish: () => 0,
 * };
 * const request = new Request("http://localhost/", { headers: { upgrade: "websocket" } });
 * await bunPresence(presence).fetch(request, stub);
 * console.log(data?.srv === stub, data?.handlers); // true undefined (set once open)
 * await presence.close();
 * ```
 */
export interface BunSocketData {
  /** The admission ticket. */
  ticket: unknown;
  /** The Bun server, for native publish. */
  srv: BunServerLike;
  /** The core's handlers once open. */
  handlers?: SocketHandlers;
}

/**
 * The part of Bun's `ServerWebSocket` this adapter uses.
 *
 * @example A stand-in socket for tests
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { bunPresence, type BunSocketLike } from "@presently/presently/bun";
 * const presence = new PresenceServer();
 * const { websocket } = bunPresence(presence);
 * const admission = await presence.admit(new Request("http://localhost/"));
 * if (!admission.ok) throw new Error(admission.message);
 * // A stand-in for Bun's ServerWebSocket, e.g. in a unit test:
 * const sent: string[] = [];
 * const ws: BunSocketLike = {
 *   data: { ticket: admission.ticket, srv: { upgrade: () => true, publish: () => 0 } },
 *   send: (data) => sent.push(data),
 *   close() {},
 *   getBufferedAmount: () => 0,
 *   subscribe() {},
 *   unsubscribe() {},
 * };
 * websocket.open(ws);
 * console.log(JSON.parse(sent[0]!).t); // "hello"
 * websocket.close(ws, 1000, "");
 * await presence.close();
 * ```
 */
export interface BunSocketLike {
  /** The adapter's per-socket data. */
  data: BunSocketData;
  /** Send text: -1 queued, 0 dropped, > 0 bytes sent. */
  send(data: string): number;
  /** Close the socket. */
  close(code?: number, reason?: string): void;
  /** Bytes buffered for sending. */
  getBufferedAmount(): number;
  /** Subscribe to a topic. */
  subscribe(topic: string): void;
  /** Unsubscribe from a topic. */
  unsubscribe(topic: string): void;
}

/**
 * The `websocket` handler object for `Bun.serve`.
 *
 * @example
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { bunPresence } from "@presently/presently/bun";
 * const presence = new PresenceServer({ limits: { maxPendingBytes: 1 << 20 } });
 * const { websocket } = bunPresence(presence); // pass as `websocket` to Bun.serve
 * console.log(websocket.backpressureLimit, websocket.sendPings); // 1048576 false
 * await presence.close();
 * ```
 */
export interface BunWebSocketHandler {
  /** A socket opened. */
  open(ws: BunSocketLike): void;
  /** A message arrived. */
  message(ws: BunSocketLike, message: string | Uint8Array): void;
  /** A socket closed. */
  close(ws: BunSocketLike, code: number, reason: string): void;
  /** A socket's send buffer drained. */
  drain(ws: BunSocketLike): void;
  /** Bun's built-in pings are off: the core has its own heartbeat. */
  sendPings: boolean;
  /** Disabled: presence frames are small and latency matters. */
  perMessageDeflate: boolean;
  /** Bytes Bun queues per socket (topic publishes included): `maxPendingBytes`. */
  backpressureLimit: number;
  /** Largest frame Bun accepts before closing with 1009. */
  maxPayloadLength: number;
}

/**
 * Options of `bunPresence`.
 *
 * @example
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { bunPresence, type BunPresenceOptions } from "@presently/presently/bun";
 * const options: BunPresenceOptions = { fallback: () => new Response("Hello") };
 * const presence = new PresenceServer();
 * const p = bunPresence(presence, options); // then Bun.serve({ fetch: p.fetch, ... })
 * const stub = { upgrade: () => false, publish: () => 0 };
 * const response = await p.fetch(new Request("http://localhost/"), stub);
 * console.log(await response?.text()); // "Hello"
 * await presence.close();
 * ```
 */
export interface BunPresenceOptions {
  /** Handles requests that are not WebSocket upgrades in `fetch`. Default: HTTP 426. */
  fallback?: (request: Request, server: BunServerLike) => Response | Promise<Response>;
}

/**
 * What `bunPresence` returns.
 *
 * @example
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { type BunPresence, bunPresence } from "@presently/presently/bun";
 * const presence = new PresenceServer({ authenticate: () => null });
 * const p: BunPresence = bunPresence(presence);
 * const stub = { upgrade: () => true, publish: () => 0 };
 * const request = new Request("http://localhost/", { headers: { upgrade: "websocket" } });
 * console.log((await p.fetch(request, stub))?.status); // 401: refused by authenticate
 * console.log(p.upgrade(request, stub)); // false: refusals need `fetch` to answer them
 * await presence.close();
 * ```
 */
export interface BunPresence {
  /**
   * Upgrade `request` if it is a WebSocket request and is admitted
   * synchronously (no `authenticate`, or a synchronous one). Returns false
   * otherwise, including when refused. Use `fetch` to answer refusals with
   * 401/403 and to support an async `authenticate`.
   */
  upgrade(request: Request, server: BunServerLike): boolean;
  /** A complete `fetch` handler: upgrades, refusals, then `fallback`. */
  fetch(request: Request, server: BunServerLike): Promise<Response | undefined>;
  /** Pass as `websocket` to `Bun.serve`. */
  websocket: BunWebSocketHandler;
}
