/**
 * Deno adapter: mount a `PresenceServer` on `Deno.serve` or on a route of an
 * existing app. It translates sockets into the core and does nothing else.
 *
 * @example
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { presenceHandler } from "@presently/presently/deno";
 * const presence = new PresenceServer();
 * presence.trackPresence(/^.+$/);
 * const http = Deno.serve({ port: 0, onListen() {} }, presenceHandler(presence));
 * // ... and on shutdown:
 * await presence.close();
 * await http.shutdown();
 * ```
 *
 * @module
 */

import type { PresenceServer } from "../server/server.ts";
import type { SocketHandlers } from "../server/socket.ts";

/**
 * Options of `presenceHandler`.
 *
 * @example Serve a page and presence from one port
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { presenceHandler, type PresenceHandlerOptions } from "@presently/presently/deno";
 * const options: PresenceHandlerOptions = {
 *   fallback: () => new Response("<h1>Hello</h1>", { headers: { "content-type": "text/html" } }),
 * };
 * const presence = new PresenceServer();
 * const handler = presenceHandler(presence, options);
 * const response = await handler(new Request("http://localhost/"));
 * console.log(response.status, await response.text()); // 200 "<h1>Hello</h1>"
 * await presence.close();
 * ```
 */
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
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { presenceHandler } from "@presently/presently/deno";
 * import { PresenceClient } from "@presently/presently/client";
 * const presence = new PresenceServer();
 * presence.trackPresence("lobby");
 * const handler = presenceHandler(presence, { fallback: () => new Response("hi") });
 * const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
 *
 * const client = new PresenceClient(`ws://127.0.0.1:${http.addr.port}/`);
 * await client.connect();
 * console.log((await client.joinRoom("lobby")).success); // true
 * const page = await fetch(`http://127.0.0.1:${http.addr.port}/`);
 * console.log(await page.text()); // "hi"
 *
 * await client.close();
 * await presence.close();
 * await http.shutdown();
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
    let handlers: SocketHandlers | null = null;
    socket.onopen = () => {
      handlers = server.open(socket, admission.ticket); // a WebSocket is a SocketLike
    };
    socket.onmessage = (e) => handlers?.message(e.data);
    socket.onclose = (e) => handlers?.close(e.code, e.reason);
    socket.onerror = () => {}; // a close event always follows
    return response;
  };
}
