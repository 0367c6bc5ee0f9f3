// One Presently instance on a shared Redis; run N of them behind any load
// balancer. The same file runs on Deno and on Bun:
//   REDIS_URL=redis://127.0.0.1:6379 PORT=8001 deno run -A examples/redis-cluster/server.ts
//   REDIS_URL=redis://127.0.0.1:6379 PORT=8002 bun examples/redis-cluster/server.ts
// Env: REDIS_URL (default redis://127.0.0.1:6379), PORT (8000; 0 picks a free
// one), HOST (0.0.0.0). Prints "listening on http://<host>:<port>/" once ready.

import process from "node:process";
import { PresenceServer } from "../../mod.ts";
import { RedisPresenceStore } from "../../src/store/redis.ts";
import { onShutdown, RUNTIME, serve } from "../_serve.ts";

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
// For the log line: the URL may carry a password.
const redisHost = new URL(redisUrl).host;
// Every instance of one app must use the same store prefix (the default is fine).
const store = new RedisPresenceStore({ url: redisUrl });
const presence = new PresenceServer({
  store,
  userKey: "userId",
  // Identity from the query for brevity: see examples/auth for signed tokens.
  authenticate: (req) => ({ userId: new URL(req.url).searchParams.get("user") ?? "anon" }),
});
// Every instance must track the same rooms with the same options.
presence.trackPresence(/^room:/);

const served = await serve(presence, {
  // A health check for the load balancer; it also tells which instance answered.
  fallback: (req) =>
    new URL(req.url).pathname === "/healthz"
      ? Response.json({
        ok: true,
        instance: presence.instanceId,
        connections: presence.stats().connections,
      })
      : new Response("Not found", { status: 404 }),
});

onShutdown(async () => {
  // Say goodbye (1001: clients reconnect through the balancer to another
  // instance) and release this instance's presence, so the others see the
  // leaves now rather than when its lease lapses.
  await presence.close();
  await store.close();
  await served.close();
  console.log(`Presently instance ${presence.instanceId} closed`);
});
console.log(
  `Presently instance ${presence.instanceId} (${RUNTIME}) listening on ` +
    `http://${process.env.HOST ?? "0.0.0.0"}:${served.port}/ (Redis at ${redisHost})`,
);
