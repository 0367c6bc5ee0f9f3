// One Presently instance on Deno KV: locally on a KV file shared by several
// processes, on Deno Deploy on the project's database, or anywhere on a
// KV Connect URL. Deno only.
//   KV_PATH=/tmp/presence.sqlite3 PORT=8001 deno run -A --unstable-kv examples/deno-kv/server.ts
//   KV_PATH=/tmp/presence.sqlite3 PORT=8002 deno run -A --unstable-kv examples/deno-kv/server.ts
// Env: KV_PATH (a file, a KV Connect URL, or unset for Deno's default database:
// the project's one on Deno Deploy), KV_POLL_MS (250), PORT (8000; 0 picks a free
// one), HOST (0.0.0.0). Prints "listening on http://<host>:<port>/" once ready.
/// <reference lib="deno.unstable" />

import { PresenceServer } from "../../mod.ts";
import { presenceHandler } from "../../src/adapters/deno.ts";
import { KvPresenceStore } from "../../src/store/deno_kv.ts";

const kvPath = Deno.env.get("KV_PATH");
const kv = await Deno.openKv(kvPath);
const store = new KvPresenceStore(kv, {
  // Processes sharing a local file learn of each other's events by polling
  // (kv.watch does not cross processes there); on Deploy and KV Connect,
  // kv.watch delivers them at once and polling is only a safety net.
  pollIntervalMs: Number(Deno.env.get("KV_POLL_MS") ?? 250),
});
const presence = new PresenceServer({
  store,
  userKey: "userId",
  // Identity from the query for brevity: see examples/auth for signed tokens.
  authenticate: (req) => ({ userId: new URL(req.url).searchParams.get("user") ?? "anon" }),
});
// Every instance must track the same rooms with the same options.
presence.trackPresence(/^room:/);

const hostname = Deno.env.get("HOST") ?? "0.0.0.0";
const where = kvPath === undefined
  ? "default database"
  : kvPath.startsWith("http")
  ? "KV Connect"
  : kvPath;
const server = Deno.serve(
  // Deno Deploy ignores port and hostname.
  {
    port: Number(Deno.env.get("PORT") ?? 8000),
    hostname,
    onListen: ({ port }) =>
      console.log(
        `Presently instance ${presence.instanceId} listening on http://${hostname}:${port}/ ` +
          `(KV: ${where})`,
      ),
  },
  presenceHandler(presence, {
    fallback: (req) =>
      new URL(req.url).pathname === "/healthz"
        ? Response.json({ ok: true, instance: presence.instanceId })
        : new Response("Not found", { status: 404 }),
  }),
);

// Deno Deploy stops isolates on its own: there, an instance that goes away
// without close() is reaped by a live one once its lease lapses (10 s).
if (Deno.env.get("DENO_DEPLOYMENT_ID") === undefined) {
  let closing = false;
  const shutdown = async () => {
    if (closing) return;
    closing = true;
    // Close sockets (1001) and release this instance's presence: the others
    // see the leaves now. The store never closes the KV handle: we do.
    await presence.close();
    await store.close();
    kv.close();
    await server.shutdown();
    console.log(`Presently instance ${presence.instanceId} closed`);
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGTERM", shutdown);
}
