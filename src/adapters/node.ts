/**
 * Node adapter: attach a {@link PresenceServer} to a Node `http.Server`
 * through your own `ws` package. Presently takes no dependency on Node or
 * `ws`: the types below are structural, so any `ws` 8 (or a compatible
 * library) fits.
 *
 * @example Node 20+, with `npm install ws`
 * ```ts ignore
 * import http from "node:http";
 * import * as ws from "ws";
 * import { PresenceServer } from "@presently/presently";
 * import { attachPresence } from "@presently/presently/node";
 *
 * const presence = new PresenceServer();
 * presence.trackPresence(/^room:/);
 * const server = http.createServer((req, res) => res.end("ok"));
 * attachPresence(presence, server, ws, { path: "/presence" });
 * server.listen(8000);
 * ```
 *
 * @module
 */

import type { PresenceServer } from "../server/server.ts";
import type { SocketHandlers, SocketLike } from "../server/socket.ts";

/** The parts of Node's `http.IncomingMessage` the adapter reads. */
export interface NodeRequestLike {
  /** Path and query, e.g. `/presence?v=1`. */
  url?: string | undefined;
  /** Request headers, as Node gives them. */
  headers: Record<string, string | string[] | undefined>;
  /** The TCP socket, for the remote address. */
  socket: { remoteAddress?: string | undefined };
}

/** The parts of the upgrade's raw socket (`stream.Duplex`) the adapter uses. */
export interface NodeUpgradeSocketLike {
  /** Write raw bytes (an HTTP refusal). */
  write(data: string): unknown;
  /** Destroy the socket. */
  destroy(): void;
}

/** The parts of Node's `http.Server` the adapter uses. */
export interface NodeHttpServerLike {
  /** Listen for `upgrade` requests. */
  on(
    event: "upgrade",
    listener: (req: NodeRequestLike, socket: NodeUpgradeSocketLike, head: unknown) => void,
  ): unknown;
  /** Stop listening (used by the returned `detach`). */
  off?(
    event: "upgrade",
    listener: (req: NodeRequestLike, socket: NodeUpgradeSocketLike, head: unknown) => void,
  ): unknown;
}

/** The parts of a `ws` WebSocket the adapter uses: a `SocketLike` with listeners. */
export interface WsSocketLike extends SocketLike {
  /** `message`, `close` and `error` listeners. */
  on(event: string, listener: (...args: never[]) => void): unknown;
}

/** The parts of `ws`'s `WebSocketServer` the adapter uses. */
export interface WsServerLike {
  /** Complete an upgrade on a raw socket. */
  handleUpgrade(
    req: NodeRequestLike,
    socket: NodeUpgradeSocketLike,
    head: unknown,
    callback: (socket: WsSocketLike) => void,
  ): void;
}

/** The `ws` module, or anything with its `WebSocketServer` constructor. */
export interface WsModuleLike {
  /** `ws`'s `WebSocketServer`. */
  WebSocketServer: new (options: {
    noServer: true;
    maxPayload?: number;
    handleProtocols?: (protocols: Set<string>, req: NodeRequestLike) => string | false;
  }) => WsServerLike;
}

/** Options of {@link attachPresence}. */
export interface AttachPresenceOptions {
  /** Only upgrades on this path are taken (default: every upgrade). */
  path?: string;
  /** Largest incoming frame `ws` accepts, in bytes (default 1 MiB). */
  maxPayload?: number;
}

/** What {@link attachPresence} returns. */
export interface AttachedPresence {
  /** Stop taking upgrades (open sockets stay; `presence.close()` closes them). */
  detach(): void;
}

/**
 * Take the WebSocket upgrades of a Node `http.Server` for a presence server:
 * each upgrade goes through `presence.admit()` (origin, limits,
 * `authenticate`); a refusal is answered with its HTTP status, an admission
 * is completed by `ws` and attached with `presence.open()`.
 *
 * @param presence The presence server.
 * @param server The Node HTTP server (its `upgrade` event).
 * @param ws Your `ws` module (`import * as ws from "ws"`).
 * @param options `path` and `maxPayload`.
 * @returns `{ detach }`.
 */
export function attachPresence(
  presence: PresenceServer,
  server: NodeHttpServerLike,
  ws: WsModuleLike,
  options: AttachPresenceOptions = {},
): AttachedPresence {
  const chosen = new WeakMap<NodeRequestLike, string>();
  const wss = new ws.WebSocketServer({
    noServer: true,
    maxPayload: options.maxPayload ?? 1 << 20,
    handleProtocols: (_offered, req) => chosen.get(req) ?? false,
  });
  const onUpgrade = (req: NodeRequestLike, socket: NodeUpgradeSocketLike, head: unknown) => {
    void upgrade(req, socket, head);
  };
  const upgrade = async (req: NodeRequestLike, socket: NodeUpgradeSocketLike, head: unknown) => {
    const url = new URL(req.url ?? "/", `http://${first(req.headers.host) ?? "localhost"}`);
    if (options.path !== undefined && url.pathname !== options.path) return;
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) {
      if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(", ") : v);
    }
    const admission = await Promise.resolve(
      presence.admit(new Request(url, { headers }), req.socket.remoteAddress ?? null),
    ).catch(() => ({ ok: false as const, status: 503, message: "Server error" }));
    if (!admission.ok) {
      // The refusal's message (ASCII) is the reason phrase and the body.
      const { status, message } = admission;
      socket.write(
        `HTTP/1.1 ${status} ${message}\r\nConnection: close\r\n` +
          `Content-Type: text/plain\r\nContent-Length: ${message.length}\r\n\r\n${message}`,
      );
      socket.destroy();
      return;
    }
    if (admission.protocol) chosen.set(req, admission.protocol);
    const ticket = admission.ticket;
    wss.handleUpgrade(req, socket, head, (socket) => {
      const handlers: SocketHandlers = presence.open(socket, ticket); // a ws socket is a SocketLike
      socket.on(
        "message",
        ((data: { toString(): string }, isBinary: boolean) => {
          // A binary frame is a protocol error the core answers (bad_request).
          handlers.message(isBinary ? new Uint8Array(0).buffer : data.toString());
        }) as (...args: never[]) => void,
      );
      socket.on(
        "close",
        ((code: number, reason: { toString(): string }) =>
          handlers.close(code, String(reason ?? ""))) as (...args: never[]) => void,
      );
      socket.on("error", () => {}); // a close follows
    });
  };
  server.on("upgrade", onUpgrade);
  return { detach: () => void server.off?.("upgrade", onUpgrade) };
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
