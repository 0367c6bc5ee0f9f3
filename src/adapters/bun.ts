/**
 * Bun adapter: mount a `PresenceServer` on `Bun.serve`, with Bun's native
 * topic fan-out. It translates sockets into the core and does nothing else.
 *
 * @example Under Bun (not run by `deno test --doc`)
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
import type { SocketHandlers, SocketLike, TopicPublisher } from "../server/socket.ts";
import type {
  BunPresence,
  BunPresenceOptions,
  BunServerLike,
  BunSocketData,
  BunSocketLike,
} from "./_bun_types.ts";

export type {
  BunPresence,
  BunPresenceOptions,
  BunServerLike,
  BunSocketData,
  BunSocketLike,
  BunWebSocketHandler,
} from "./_bun_types.ts";

/**
 * A Bun socket as the core sees it, and its `ws.data`: one object per
 * connection, its methods on the prototype (no closures per connection),
 * doubling as its own topic publisher.
 */
class BunSocket implements SocketLike, TopicPublisher, BunSocketData {
  handlers?: SocketHandlers;
  ws!: BunSocketLike;
  constructor(public ticket: unknown, readonly srv: BunServerLike) {}
  get topics(): TopicPublisher {
    return this;
  }
  send(data: string): number {
    return this.ws.send(data);
  }
  close(code?: number, reason?: string): void {
    this.ws.close(code, reason);
  }
  get bufferedAmount(): number {
    return this.ws.getBufferedAmount();
  }
  subscribe(topic: string): void {
    this.ws.subscribe(topic);
  }
  unsubscribe(topic: string): void {
    this.ws.unsubscribe(topic);
  }
  publish(topic: string, data: string): void {
    this.srv.publish(topic, data);
  }
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
 * @example Under Bun (not run by `deno test --doc`)
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
 *
 * @example Outside Bun, with a stub server (as in unit tests)
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { bunPresence } from "@presently/presently/bun";
 * const presence = new PresenceServer();
 * const p = bunPresence(presence, { fallback: () => new Response("hi") });
 * const stub = { upgrade: () => false, publish: () => 0 };
 * const response = await p.fetch(new Request("http://localhost/"), stub);
 * console.log(await response?.text()); // "hi"
 * await presence.close();
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
      data: new BunSocket(ticket, srv),
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
        const data = ws.data;
        // Data made elsewhere (not by upgrade) gets a socket of its own.
        const socket = data instanceof BunSocket ? data : new BunSocket(undefined, data.srv);
        socket.ws = ws;
        data.handlers = server.open(socket, data.ticket);
        data.ticket = undefined; // spent: not kept for the socket's life
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
