// The cluster-wide presence queries over HTTP, as a fetch handler that mounts
// in Deno.serve, Bun.serve, Hono or anything speaking Request/Response.

import { PresenceError } from "../errors.ts";
import type { PresenceServer } from "./server.ts";

/**
 * The query an HTTP request asks, passed to `authorize`.
 *
 * @example
 * ```ts
 * import type { PresenceQuery } from "@presently/presently";
 * const query: PresenceQuery = { kind: "count", room: "doc:1" };
 * console.log(query.kind); // "count"
 * ```
 */
export type PresenceQuery =
  | { kind: "room"; room: string }
  | { kind: "count"; room: string }
  | { kind: "rooms"; prefix: string }
  | { kind: "userRooms"; userId: string };

/**
 * Options of {@linkcode presenceHttpHandler}.
 *
 * @example
 * ```ts
 * import type { PresenceHttpOptions } from "@presently/presently";
 * const options: PresenceHttpOptions = {
 *   prefix: "/presence",
 *   authorize: (req, query) => {
 *     const token = req.headers.get("authorization");
 *     if (token === null) return null; // 401
 *     return token === "Bearer admin" || query.kind === "count"; // false: 403
 *   },
 * };
 * console.log(options.prefix); // "/presence"
 * ```
 */
export interface PresenceHttpOptions {
  /**
   * Decide each request: `true` serves it, `false` answers 403, `null`
   * answers 401 (no or bad credentials). Throwing a `PresenceError` with
   * `unauthorized` or `token_expired` answers 401 too. Required: there is no
   * open default.
   */
  authorize: (
    req: Request,
    query: PresenceQuery,
  ) => boolean | null | Promise<boolean | null>;
  /** A path prefix the routes sit under (e.g. `"/presence"`). Default none. */
  prefix?: string;
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

function error(status: number, code: string, message: string): Response {
  return json(status, { error: { code, message } });
}

/** The query of a path (relative to the prefix), or `null` when none matches. */
function route(path: string, params: URLSearchParams): PresenceQuery | null {
  const parts = path.split("/").slice(1);
  try {
    if (parts[0] === "rooms") {
      if (parts.length === 1) return { kind: "rooms", prefix: params.get("prefix") ?? "" };
      const room = decodeURIComponent(parts[1]!);
      if (parts.length === 2) return { kind: "room", room };
      if (parts.length === 3 && parts[2] === "count") return { kind: "count", room };
    }
    if (parts[0] === "users" && parts.length === 3 && parts[2] === "rooms") {
      return { kind: "userRooms", userId: decodeURIComponent(parts[1]!) };
    }
  } catch {
    return null; // a malformed escape
  }
  return null;
}

/**
 * Serve the cluster-wide presence queries as JSON (every answer comes from
 * the store, so it holds across all instances):
 *
 * | route | answer |
 * |---|---|
 * | `GET /rooms/:room` | `{ room, seq, members: [{ connectionId, userId, metadata, state }], count }` |
 * | `GET /rooms/:room/count` | `{ connections, users }` |
 * | `GET /rooms?prefix=&cursor=&limit=` | `{ rooms, cursor }` |
 * | `GET /users/:id/rooms` | `{ rooms }` |
 *
 * Room and user ids are URL-encoded path segments. Every request goes through
 * `authorize` first. Errors are `{ error: { code, message } }` with 400, 401,
 * 403, 404, 405 or 503 (the store failed).
 *
 * @param server The presence server.
 * @param options `authorize` (required) and `prefix`.
 * @returns A fetch handler.
 *
 * @example
 * ```ts
 * import { PresenceServer, presenceHttpHandler } from "@presently/presently";
 * const presence = new PresenceServer();
 * presence.trackPresence("lobby");
 * await presence.addMember("lobby", { userId: "ada" });
 * const api = presenceHttpHandler(presence, {
 *   authorize: (req) => req.headers.get("authorization") === "Bearer secret" ? true : null,
 * });
 * const ok = await api(new Request("http://x/rooms/lobby/count", { headers: { authorization: "Bearer secret" } }));
 * console.log(ok.status, await ok.json()); // 200 { connections: 1, users: 1 }
 * const refused = await api(new Request("http://x/rooms/lobby/count"));
 * console.log(refused.status); // 401
 * await presence.close();
 * ```
 */
export function presenceHttpHandler(
  server: PresenceServer,
  options: PresenceHttpOptions,
): (req: Request) => Promise<Response> {
  if (typeof options?.authorize !== "function") {
    throw new PresenceError("bad_request", "presenceHttpHandler needs an authorize function");
  }
  const prefix = (options.prefix ?? "").replace(/\/+$/, "");
  return async (req) => {
    const url = new URL(req.url);
    if (!url.pathname.startsWith(prefix + "/")) return error(404, "not_found", "No such route");
    const query = route(url.pathname.slice(prefix.length), url.searchParams);
    if (query === null) return error(404, "not_found", "No such route");
    if (req.method !== "GET" && req.method !== "HEAD") {
      const res = error(405, "bad_request", "Only GET is served");
      res.headers.set("allow", "GET, HEAD");
      return res;
    }
    try {
      const verdict = await options.authorize(req, query);
      if (verdict === null) return error(401, "unauthorized", "Credentials required");
      if (verdict !== true) return error(403, "forbidden", "Not allowed");
    } catch (e) {
      if (e instanceof PresenceError && (e.code === "unauthorized" || e.code === "token_expired")) {
        return error(401, e.code, e.message);
      }
      return error(403, "forbidden", "Not allowed");
    }
    try {
      switch (query.kind) {
        case "room":
          return json(200, await server.getRoom(query.room));
        case "count":
          return json(200, await server.count(query.room));
        case "userRooms":
          return json(200, { rooms: await server.userRooms(query.userId) });
        case "rooms": {
          const limitText = url.searchParams.get("limit");
          const limit = limitText === null ? undefined : Number(limitText);
          if (limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > 1000)) {
            return error(400, "bad_request", "limit must be an integer from 1 to 1000");
          }
          const cursor = url.searchParams.get("cursor");
          return json(
            200,
            await server.listRooms({
              prefix: query.prefix,
              ...(cursor !== null ? { cursor } : {}),
              ...(limit !== undefined ? { limit } : {}),
            }),
          );
        }
      }
    } catch (e) {
      const code = e instanceof PresenceError ? e.code : "internal";
      return error(503, code, "The presence store failed; retry");
    }
  };
}
