/**
 * Bun adapter: mount a `PresenceServer` on `Bun.serve`, with Bun's native
 * topic fan-out. It translates sockets into the core and does nothing else.
 *
 * @example
 * ```ts ignore
 * import { PresenceServer } from "@presently/presently";
 * import { bunPresence } from "@presently/presently/bun";
 * const presence = new PresenceServer();
 * presence.trackPresence(/^.+$/);
 * const p = bunPresence(presence);
 * Bun.serve({ port: 8000, fetch: p.fetch, websocket: p.websocket });
 * ```
 *
 * @module
 */

import type { PresenceServer } from "../server/server.ts";
import type { SocketHandlers, SocketLike } from "../server/socket.ts";

/** The part of Bun's `Server` this adapter uses (declared locally). */
export interface BunServerLike {
  /** Upgrade a request to a WebSocket. */
  upgrade(request: Request, options: { data: unknown; headers?: HeadersInit }): boolean;
  /** Publish to every socket subscribed to a topic. */
  publish(topic: string, data: string): number;
  /** The peer address of a request. */
  requestIP?(request: Request): { address: string } | null;
}

/** Per-socket data this adapter keeps on Bun's `ws.data`. */
export interface BunSocketData {
  /** The admission ticket. */
  ticket: unknown;
  /** The Bun server, for native publish. */
  srv: BunServerLike;
  /** The core's handlers once open. */
  handlers?: SocketHandlers;
}

/** The part of Bun's `ServerWebSocket` this adapter uses. */
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

/** The `websocket` handler object for `Bun.serve`. */
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

/** Options of `bunPresence`. */
export interface BunPresenceOptions {
  /** Handles requests that are not WebSocket upgrades in `fetch`. Default: HTTP 426. */
  fallback?: (request: Request, server: BunServerLike) => Response | Promise<Response>;
}

/** What `bunPresence` returns. */
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

function isUpgrade(request: Request): boolean {
  return request.headers.get("upgrade")?.toLowerCase() === "websocket";
}

/**
 * Create the `fetch` / `upgrade` / `websocket` trio for `Bun.serve`.
 *
 * @param server The presence server.
 * @param options A fallback for ordinary HTTP requests.
 * @returns Handlers to wire into `Bun.serve`.
 *
 * @example
 * ```ts ignore
 * const p = bunPresence(presence);
 * Bun.serve({
 *   fetch(req, srv) {
 *     if (p.upgrade(req, srv)) return;
 *     return new Response("hello");
 *   },
 *   websocket: p.websocket,
 * });
 * ```
 */
export function bunPresence(
  server: PresenceServer,
  options: BunPresenceOptions = {},
): BunPresence {
  const doUpgrade = (
    request: Request,
    srv: BunServerLike,
    ticket: unknown,
    protocol: string | undefined,
  ): boolean =>
    srv.upgrade(request, {
      data: { ticket, srv } satisfies BunSocketData,
      ...(protocol ? { headers: { "sec-websocket-protocol": protocol } } : {}),
    });
  return {
    upgrade(request, srv) {
      if (!isUpgrade(request)) return false;
      const a = server.admit(request, srv.requestIP?.(request)?.address ?? null);
      if (a instanceof Promise || !a.ok) return false;
      return doUpgrade(request, srv, a.ticket, a.protocol);
    },
    async fetch(request, srv) {
      if (!isUpgrade(request)) {
        if (options.fallback) return await options.fallback(request, srv);
        return new Response("Expected a WebSocket upgrade", { status: 426 });
      }
      const a = await server.admit(request, srv.requestIP?.(request)?.address ?? null);
      if (!a.ok) return new Response(a.message, { status: a.status });
      if (doUpgrade(request, srv, a.ticket, a.protocol)) return undefined;
      return new Response("WebSocket upgrade failed", { status: 400 });
    },
    websocket: {
      open(ws) {
        const srv = ws.data.srv;
        const socket: SocketLike = {
          send: (data) => ws.send(data),
          close: (code, reason) => ws.close(code, reason),
          get bufferedAmount() {
            return ws.getBufferedAmount();
          },
          topics: {
            subscribe: (topic) => ws.subscribe(topic),
            unsubscribe: (topic) => ws.unsubscribe(topic),
            publish: (topic, data) => void srv.publish(topic, data),
          },
        };
        ws.data.handlers = server.open(socket, ws.data.ticket);
      },
      message(ws, message) {
        ws.data.handlers?.message(message);
      },
      close(ws, code, reason) {
        ws.data.handlers?.close(code, reason);
      },
      drain(ws) {
        ws.data.handlers?.drain();
      },
      sendPings: false,
      perMessageDeflate: false,
      // Native publishes bypass the core's per-send check: cap them in Bun.
      backpressureLimit: server.limits.maxPendingBytes,
      // Over maxFrameBytes is answered too_large; far over it never gets buffered.
      maxPayloadLength: Math.max(4 * server.limits.maxFrameBytes, 1 << 20),
    },
  };
}
