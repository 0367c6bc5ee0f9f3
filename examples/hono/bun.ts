// Hono on Bun: Presently mounted on /presence next to ordinary routes, with
// Bun's native topic publish.
//   bun examples/hono/bun.ts                   (PORT, default 8000)
// In your app: `bunx jsr add @presently/presently` and `bun add hono`, then
// import from "@presently/presently" and "@presently/presently/bun".

import { Hono } from "hono";
import { presenceHttpHandler, PresenceServer } from "../../mod.ts";
import { bunPresence, type BunServerLike } from "../../src/adapters/bun.ts";

/** The part of Bun used here (declared locally: no Bun types needed). */
interface BunLike {
  serve(options: {
    port: number;
    hostname: string;
    fetch: (request: Request, server: BunServerLike) => Response | Promise<Response>;
    websocket: unknown;
  }): { port: number; stop(closeActive?: boolean): void };
  env: Record<string, string | undefined>;
}
const Bun = (globalThis as unknown as { Bun: BunLike }).Bun;

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
export function start(port = 8000, hostname = "0.0.0.0"): Promise<App> {
  const presence = new PresenceServer({
    userKey: "userId",
    // Identity from the query for brevity: see examples/auth for signed tokens.
    authenticate: (req) => ({ userId: new URL(req.url).searchParams.get("user") ?? "anon" }),
  });
  presence.trackPresence(/^room:/);
  const p = bunPresence(presence);

  // Bun.serve passes its server to Hono as `c.env`: the adapter upgrades through it.
  const app = new Hono<{ Bindings: BunServerLike }>();
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
  // `p.fetch` answers refusals (401/403) itself and returns nothing once the
  // socket is upgraded; Bun then ignores the response, as with hono/bun's own helper.
  app.get("/presence", async (c) => (await p.fetch(c.req.raw, c.env)) ?? new Response(null));

  const server = Bun.serve({ port, hostname, fetch: app.fetch, websocket: p.websocket });
  return Promise.resolve({
    port: server.port,
    async close() {
      await presence.close();
      server.stop(true);
    },
  });
}

if (import.meta.main) {
  const app = await start(Number(Bun.env.PORT ?? 8000));
  console.log(`Hono + Presently on http://localhost:${app.port}/ (WebSocket: /presence)`);
  const proc = (globalThis as unknown as {
    process: { on(signal: string, f: () => void): void; exit(code: number): never };
  }).process;
  const shutdown = async () => {
    await app.close();
    proc.exit(0);
  };
  proc.on("SIGINT", shutdown);
  proc.on("SIGTERM", shutdown);
}
