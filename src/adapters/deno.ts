/**
 * Deno adapter: mount a `PresenceServer` on `Deno.serve` or on a route of an
 * existing app. It translates sockets into the core and does nothing else.
 *
 * @example
 * ```ts ignore
 * import { PresenceServer } from "@presently/presently";
 * import { presenceHandler } from "@presently/presently/deno";
 * const presence = new PresenceServer();
 * presence.trackPresence(/^.+$/);
 * Deno.serve({ port: 8000 }, presenceHandler(presence));
 * ```
 *
 * @module
 */

import type { PresenceServer } from "../server/server.ts";
import type { SocketHandlers, SocketLike } from "../server/socket.ts";

/** Options of `presenceHandler`. */
export interface PresenceHandlerOptions {
  /** Handles requests that are not WebSocket upgrades. Default: HTTP 426. */
  fallback?: (request: Request, info?: Deno.ServeHandlerInfo) => Response | Promise<Response>;
}

/**
 * Create a `Deno.serve` handler that upgrades WebSocket requests into
 * presence connections.
 *
 * @param server The presence server.
 * @param options A fallback for ordinary HTTP requests.
 * @returns A request handler for `Deno.serve` or any router.
 *
 * @example
 * ```ts ignore
 * Deno.serve(presenceHandler(server, { fallback: () => new Response("hi") }));
 * ```
 */
export function presenceHandler(
  server: PresenceServer,
  options: PresenceHandlerOptions = {},
): (request: Request, info?: Deno.ServeHandlerInfo) => Promise<Response> {
  return async (request, info) => {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      if (options.fallback) return await options.fallback(request, info);
      return new Response("Expected a WebSocket upgrade", {
        status: 426,
        headers: { upgrade: "websocket" },
      });
    }
    const addr = info?.remoteAddr as { hostname?: string } | undefined;
    const admission = await server.admit(request, addr?.hostname ?? null);
    if (!admission.ok) {
      return new Response(admission.message, { status: admission.status });
    }
    const { socket, response } = Deno.upgradeWebSocket(request, {
      idleTimeout: 0, // liveness is the core's application-level heartbeat
      ...(admission.protocol ? { protocol: admission.protocol } : {}),
    });
    const wrapped: SocketLike = {
      send: (data) => socket.send(data),
      close: (code, reason) => socket.close(code, reason),
      get bufferedAmount() {
        return socket.bufferedAmount;
      },
    };
    let handlers: SocketHandlers | null = null;
    socket.onopen = () => {
      handlers = server.open(wrapped, admission.ticket);
    };
    socket.onmessage = (e) => handlers?.message(e.data);
    socket.onclose = (e) => handlers?.close(e.code, e.reason);
    socket.onerror = () => {}; // a close event always follows
    return response;
  };
}
