// The demo's runtime-free part: the presence server's configuration and the
// static routes. `server.ts` (Deno) and `bun.ts` (Bun) only add the listener
// and the client bundle. Tests start this same server (fixtures = playground).

import { type Metadata, PresenceServer, type PresenceServerOptions } from "../../mod.ts";

/** An environment variable on Deno or Bun (both provide `process.env`). */
export function env(name: string): string | undefined {
  const proc = (globalThis as { process?: { env: Record<string, string | undefined> } }).process;
  return proc?.env[name];
}

/** Rooms the demo offers; any `demo:*` room is tracked. */
export const DEMO_ROOMS = ["lobby", "design", "random"];

const clean = (v: string | null, fallback: string): string =>
  (v ?? "").replace(/[^\p{L}\p{N} ._-]/gu, "").trim().slice(0, 32) || fallback;

/** Create the demo's presence server. */
export function createDemoPresence(options: PresenceServerOptions = {}): PresenceServer {
  const presence = new PresenceServer({
    userKey: "userId",
    // Identity comes from the page (a real app would verify a token here).
    authenticate: (request): Metadata => {
      const q = new URL(request.url).searchParams;
      const userId = clean(q.get("user"), crypto.randomUUID().slice(0, 8));
      return { userId, name: clean(q.get("name"), userId) };
    },
    leaveGraceMs: Number(env("DEMO_GRACE_MS") ?? 5000),
    ...options,
  });
  presence.trackPresence(/^demo:[a-z0-9-]{1,32}(\/cursors)?$/, {
    // Cursors and typing flags only: refuse anything else.
    validateState: (s) =>
      s !== null && typeof s === "object" && !Array.isArray(s) ||
      "state must be an object",
  });
  return presence;
}

/** Static assets served by the demo. */
export interface DemoAssets {
  html: string;
  appJs: string;
  clientJs: string;
}

/** Serve the page, its script and the client bundle; `null` for other paths. */
export function demoRoute(request: Request, assets: DemoAssets): Response | null {
  const path = new URL(request.url).pathname;
  const type = (t: string) => ({ "content-type": t, "cache-control": "no-store" });
  if (path === "/" || path === "/index.html") {
    return new Response(assets.html, { headers: type("text/html; charset=utf-8") });
  }
  if (path === "/app.js") {
    return new Response(assets.appJs, { headers: type("text/javascript; charset=utf-8") });
  }
  if (path === "/client.js") {
    return new Response(assets.clientJs, { headers: type("text/javascript; charset=utf-8") });
  }
  if (path === "/healthz") return new Response("ok");
  return null;
}
