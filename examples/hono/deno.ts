// Hono on Deno: Presently mounted on /presence next to ordinary routes.
//   deno run -A examples/hono/deno.ts          (PORT, default 8000)
// In your app: import from "jsr:@presently/presently" and "jsr:@presently/presently/deno",
// and Hono from "npm:hono" (or "jsr:@hono/hono").

import { Hono } from "hono";
import { presenceHttpHandler, PresenceServer } from "../../mod.ts";
import { presenceHandler } from "../../src/adapters/deno.ts";

/** A running app. */
export interface App {
  /** The port it listens on. */
  port: number;
  /** Close the presence sockets (1001), then the listener. */
  close(): Promise<void>;
}

/** The query API's bearer token: PRESENCE_API_TOKEN, or a development default. */
export function apiToken(): string {
  return (globalThis as unknown as { process?: { env: Record<string, string | undefined> } })
    .process?.env.PRESENCE_API_TOKEN ?? "dev-token";
}

/**
 * Start the app.
 *
 * @param port Port to listen on; `0` picks a free one.
 * @param hostname Interface to listen on.
 * @returns The port and a `close()`.
 */
export async function start(port = 8000, hostname = "0.0.0.0"): Promise<App> {
  const presence = new PresenceServer({
    userKey: "userId",
    // Identity from the query for brevity: see examples/auth for signed tokens.
    authenticate: (req) => ({ userId: new URL(req.url).searchParams.get("user") ?? "anon" }),
  });
  presence.trackPresence(/^room:/);
  const handlePresence = presenceHandler(presence);

  // Deno.serve passes its ServeHandlerInfo (the peer address) to Hono as `c.env`.
  const app = new Hono<{ Bindings: Deno.ServeHandlerInfo }>();
  app.get("/api/health", (c) => c.json({ ok: true, connections: presence.stats().connections }));
  // The cluster-wide queries as JSON (GET /api/presence/rooms/:room, .../count,
  // /api/presence/rooms?prefix=, /api/presence/users/:id/rooms), for holders
  // of the API token: a missing or wrong token is a 401.
  const token = apiToken();
  const presenceApi = presenceHttpHandler(presence, {
    prefix: "/api/presence",
    authorize: (req) => req.headers.get("authorization") === `Bearer ${token}` ? true : null,
  });
  app.get("/api/presence/*", (c) => presenceApi(c.req.raw));
  // The upgrade response goes back untouched: do not let header-rewriting
  // middleware (CORS, secure headers) run on this route.
  app.get("/presence", (c) => handlePresence(c.req.raw, c.env));

  const listening = Promise.withResolvers<number>();
  const server = Deno.serve(
    { port, hostname, onListen: (addr) => listening.resolve(addr.port) },
    app.fetch,
  );
  return {
    port: await listening.promise,
    async close() {
      await presence.close();
      await server.shutdown();
    },
  };
}

if (import.meta.main) {
  const app = await start(Number(Deno.env.get("PORT") ?? 8000));
  console.log(`Hono + Presently on http://localhost:${app.port}/ (WebSocket: /presence)`);
  const shutdown = async () => {
    await app.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGTERM", shutdown);
}
