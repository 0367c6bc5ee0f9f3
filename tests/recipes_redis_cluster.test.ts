// The Redis cluster recipe (examples/redis-cluster/server.ts): two instance
// processes on one Redis see each other's clients, directly and through a
// round-robin balancer without sticky sessions. A resume token lives in one
// instance's memory, so a reconnect that lands on the other instance is a fresh
// connection that rejoins: after a cut, the old id leaves after the grace and
// the user never goes offline; after a clean shutdown, the old id leaves at
// once. Runs under Deno (instance B on Bun when it is installed).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { PresenceClient, type PresenceUpdate } from "../client.ts";
import { RUNTIME, waitUntil } from "./_harness.ts";
import { BUN_BIN, type RecipeProcess, spawnRecipe } from "./_recipes.ts";
import { redisMissing, type RedisServer, startRedis } from "./_redis.ts";

/** Events cross instances through Redis pub/sub: generous, but bounded. */
const CROSS_MS = 5_000;

/** A round-robin TCP balancer over `targets` (a mutable list of ports). */
async function roundRobin(
  targets: number[],
): Promise<{ port: number; cut(): void; close(): Promise<void> }> {
  const live = new Set<net.Socket>();
  let next = 0;
  const server = net.createServer((client) => {
    const port = targets[next++ % targets.length]!;
    const upstream = net.connect(port, "127.0.0.1");
    live.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      live.delete(client);
      live.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on("error", drop);
      s.on("close", drop);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    /** Destroy every connection: an abrupt loss, no close frame. */
    cut() {
      for (const s of live) s.destroy();
    },
    close() {
      for (const s of live) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

const missing = RUNTIME === "deno" ? redisMissing() : null;

if (RUNTIME !== "deno") {
  console.log(
    "[recipes_redis_cluster] SKIPPED under Bun: this test spawns instances with Deno; it runs under `deno test`",
  );
  describe.skip("Redis cluster recipe (Deno only)", () => {
    it("runs under Deno", () => {});
  });
} else if (missing !== null) {
  describe("Redis cluster recipe", () => {
    it.skip(`skipped: ${missing}`, () => {});
  });
} else {
  describe("Redis cluster recipe: two instances on one Redis", () => {
    let redis: RedisServer;
    let a: RecipeProcess;
    let b: RecipeProcess;
    const clients: PresenceClient[] = [];
    const client = (url: string) => {
      const c = new PresenceClient(url, { reconnect: { minDelayMs: 50, maxDelayMs: 200 } });
      clients.push(c);
      return c;
    };

    before(async () => {
      redis = await startRedis();
      // One instance on each runtime when Bun is installed: the recipe runs on
      // both, and both runtimes' Redis clients share one cluster.
      [a, b] = await Promise.all([
        spawnRecipe("redis-cluster/server.ts", { REDIS_URL: redis.url }),
        spawnRecipe("redis-cluster/server.ts", { REDIS_URL: redis.url }, BUN_BIN ? "bun" : "deno"),
      ]);
      if (!BUN_BIN) {
        console.log("[recipes_redis_cluster] Bun not installed: both instances on Deno");
      }
    });

    after(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await Promise.all([a?.stop(), b?.stop()]);
      await redis?.stop();
    });

    it("each instance answers its own health check", async () => {
      const health = async (port: number) =>
        await (await fetch(`http://127.0.0.1:${port}/healthz`)).json() as { instance: string };
      const [ha, hb] = await Promise.all([health(a.port), health(b.port)]);
      assert.ok(ha.instance && hb.instance);
      assert.notEqual(ha.instance, hb.instance);
      assert.match(a.stdout(), /\(deno\) listening/);
      if (BUN_BIN) assert.match(b.stdout(), /\(bun\) listening/);
    });

    it("a client on each instance sees the other join and publish", async () => {
      const ada = client(`ws://127.0.0.1:${a.port}/?user=ada`);
      const bob = client(`ws://127.0.0.1:${b.port}/?user=bob`);
      await ada.connect();
      await bob.connect();

      const adaSees: PresenceUpdate[] = [];
      assert.equal((await ada.joinRoom("room:cluster", (u) => adaSees.push(u))).success, true);
      const joined = await bob.joinRoom("room:cluster");
      assert.equal(joined.success, true);
      assert.deepEqual(
        joined.present.map((p) => p.id).sort(),
        [ada.connectionId, bob.connectionId].sort(),
        "bob's join on instance B lists ada from instance A",
      );
      await bob.publishPresenceState("room:cluster", { state: { typing: true } });

      await waitUntil(
        () => adaSees.some((u) => u.type === "state" && u.connectionId === bob.connectionId),
        CROSS_MS,
        "bob's state on instance A",
      );
      const join = adaSees.find((u) => u.type === "join" && u.connectionId === bob.connectionId);
      assert.deepEqual(join && "meta" in join ? join.meta : null, { userId: "bob" });
      assert.deepEqual(await ada.getConnectionMetadata(bob.connectionId!), { userId: "bob" });
    });

    it("a reconnect that lands on the other instance is fresh; the old id leaves after the grace, the user never goes offline", async () => {
      const targets = [a.port, b.port];
      const lb = await roundRobin(targets);
      try {
        const frank = client(`ws://127.0.0.1:${b.port}/?user=frank`);
        await frank.connect();
        const seen: PresenceUpdate[] = [];
        await frank.subscribePresence("room:cut", (u) => seen.push(u), { users: true });
        const erin = client(`ws://127.0.0.1:${lb.port}/?user=erin`); // lands on A
        await erin.connect();
        await erin.joinRoom("room:cut");
        const before = erin.connectionId!;
        await waitUntil(() => seen.some((u) => u.type === "userOnline"), CROSS_MS, "erin online");

        targets.splice(0, 1); // the balancer now sends everything to B
        lb.cut();
        await waitUntil(
          () => erin.status === "open" && erin.connectionId !== before,
          CROSS_MS,
          "erin reconnected to B",
        );
        assert.equal(erin.resumed, false);
        const after = erin.connectionId!;
        await waitUntil(
          () => seen.some((u) => u.type === "join" && u.connectionId === after),
          CROSS_MS,
          "the new connection's join",
        );
        assert.ok(!seen.some((u) => u.type === "leave"), "the old id stays during the grace");
        // leaveGraceMs is 5 s by default.
        await waitUntil(
          () => seen.some((u) => u.type === "leave" && u.connectionId === before),
          8_000,
          "the old connection's leave after the grace",
        );
        assert.deepEqual(
          seen.filter((u) => u.type === "userOnline" || u.type === "userOffline").map((u) =>
            u.type
          ),
          ["userOnline"],
          "erin stayed online throughout",
        );
      } finally {
        await lb.close();
      }
    });

    it("behind a round-robin balancer, a client of a stopped instance rejoins on the other as a fresh connection", async () => {
      const targets = [a.port, b.port];
      const lb = await roundRobin(targets);
      try {
        const url = (user: string) => `ws://127.0.0.1:${lb.port}/?user=${user}`;
        const carol = client(url("carol")); // lands on A
        const dave = client(url("dave")); // lands on B
        await carol.connect();
        await dave.connect();
        const daveSees: PresenceUpdate[] = [];
        await carol.joinRoom("room:lb");
        await carol.publishPresenceState("room:lb", { state: { cursor: 1 } });
        const sub = await dave.joinRoom("room:lb", (u) => daveSees.push(u));
        assert.equal(sub.success, true);
        const before = carol.connectionId!;
        assert.deepEqual(sub.present.map((p) => p.id).sort(), [before, dave.connectionId].sort());

        // Stop A gracefully and take it out of the pool, as a balancer's health check would.
        targets.splice(0, 1);
        const stoppedAt = Date.now();
        await a.stop("SIGTERM");
        assert.match(a.stdout(), /closed\n/, "instance A shuts down cleanly on SIGTERM");

        await waitUntil(
          () => carol.status === "open" && carol.connectionId !== before,
          CROSS_MS,
          "carol reconnected through the balancer",
        );
        assert.equal(carol.resumed, false, "B does not know A's resume token");
        const after = carol.connectionId!;
        await waitUntil(
          () =>
            daveSees.some((u) => u.type === "leave" && u.connectionId === before) &&
            daveSees.some((u) => u.type === "state" && u.connectionId === after),
          CROSS_MS,
          "the old connection's leave and the new one's join and republished state",
        );
        assert.ok(
          Date.now() - stoppedAt < 2_500,
          "the old id left at once, not after the 5 s grace period",
        );
        const state = daveSees.find((u) => u.type === "state" && u.connectionId === after);
        assert.deepEqual(state && "state" in state ? state.state : null, { cursor: 1 });
        const present = await (await fetch(`http://127.0.0.1:${b.port}/healthz`)).json() as {
          connections: number;
        };
        assert.ok(present.connections >= 2, "B now holds carol and dave");
      } finally {
        await lb.close();
      }
    });
  });
}
