// Authentication with a signed token: the server verifies it at the WebSocket
// upgrade, takes the connection's metadata from its payload, and hides the
// private fields from other clients. Runs on Deno and Bun:
//   AUTH_SECRET=<32+ bytes> deno run -A examples/auth/server.ts
//   AUTH_SECRET=<32+ bytes> bun examples/auth/server.ts
// Without AUTH_SECRET a random one is made and a sample token printed.
// Env: AUTH_SECRET, PORT (8000; 0 picks a free one), HOST (0.0.0.0).

import process from "node:process";
import {
  type Metadata,
  PresenceError,
  PresenceServer,
  type PresenceServerOptions,
} from "../../mod.ts";
import { signToken, verifyToken } from "./token.ts";
import { onShutdown, serve } from "../_serve.ts";

/** Subprotocol prefix that carries a token: `token.<token>`. */
export const TOKEN_PROTOCOL_PREFIX = "token.";

/**
 * Find the token in an upgrade request, in the order a client is most likely
 * to send it: an `Authorization: Bearer` header (server-side clients), a
 * `token.<token>` subprotocol (browsers: they cannot set headers on a
 * WebSocket), or a `?token=` query parameter (simplest, but URLs end up in
 * proxy logs).
 *
 * @param request The upgrade request.
 * @returns The token, or `null` when there is none.
 */
export function tokenFromRequest(request: Request): string | null {
  const auth = request.headers.get("authorization");
  if (auth?.toLowerCase().startsWith("bearer ")) return auth.slice(7).trim();
  const protocols = (request.headers.get("sec-websocket-protocol") ?? "").split(",");
  for (const p of protocols) {
    const value = p.trim();
    if (value.startsWith(TOKEN_PROTOCOL_PREFIX)) return value.slice(TOKEN_PROTOCOL_PREFIX.length);
  }
  return new URL(request.url).searchParams.get("token");
}

/**
 * The presence server options of this recipe: verify the token, take the
 * metadata from its payload (`sub` becomes `userId`), and keep `email` for
 * the server only.
 *
 * @param secret The token secret, at least 32 bytes.
 * @returns Options for `new PresenceServer`.
 */
export function authOptions(secret: string): PresenceServerOptions {
  return {
    // A missing or forged token: `null` refuses the upgrade with HTTP 401.
    // A genuine token past its `exp`: refused after the upgrade with close
    // code 4401 and reason "token_expired", which a browser can read; a
    // client with an `auth` callback then fetches a fresh token and resumes.
    authenticate: async (request): Promise<Metadata | null> => {
      const token = tokenFromRequest(request);
      const payload = token === null ? null : await verifyToken(token, secret);
      if (payload === null) {
        if (token !== null && (await verifyToken(token, secret, 0)) !== null) {
          throw new PresenceError("token_expired", "Token expired");
        }
        return null;
      }
      const { sub, exp: _exp, ...claims } = payload;
      return { ...claims, userId: sub };
    },
    // Other clients see { userId, name }; guards and hooks see everything.
    privateMetadata: ["email"],
    userKey: "userId",
  };
}

/**
 * A `WebSocket` class that sends `Authorization: Bearer <token>`, for
 * `PresenceClient`'s `WebSocket` option in Deno and Bun (browsers cannot set
 * headers on a WebSocket: use the subprotocol there).
 *
 * @param token The token.
 * @returns A WebSocket constructor.
 */
export function bearerWebSocket(token: string): typeof WebSocket {
  // Deno and Bun accept `{ headers, protocols }` as the second argument.
  const Base = WebSocket as unknown as new (
    url: string | URL,
    options: { headers: Record<string, string>; protocols?: string | string[] },
  ) => WebSocket;
  return class extends Base {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, {
        headers: { authorization: `Bearer ${token}` },
        ...(protocols === undefined ? {} : { protocols }),
      });
    }
  } as unknown as typeof WebSocket;
}

if (import.meta.main) {
  let secret = process.env.AUTH_SECRET ?? "";
  const demo = secret === "";
  if (demo) secret = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));
  const presence = new PresenceServer(authOptions(secret));
  presence.trackPresence(/^room:/);
  const served = await serve(presence);
  onShutdown(async () => {
    await presence.close();
    await served.close();
  });
  console.log(`Presently with token auth listening on http://localhost:${served.port}/`);
  if (demo) {
    const token = await signToken(
      {
        sub: "ada",
        name: "Ada",
        email: "ada@example.com",
        exp: Math.floor(Date.now() / 1000) + 3600,
      },
      secret,
    );
    console.log(`No AUTH_SECRET: made a random one. A token for "ada", valid 1 h:\n${token}`);
    console.log(`Try: new PresenceClient("ws://localhost:${served.port}/", {`);
    console.log(`  protocols: ["presently", "token.${token}"] })`);
  }
}
