// Clock skew between instances on a real redis-server (issue 11): instance B
// (a Bun process) runs its wall clock 8 s ahead of instance A (a Deno
// process), with the default 10 s lease. Judged by two clocks, B's sweeps
// reaped the healthy A again and again (A's lease lapsed on B's clock 2 s
// after each renewal) and expiries were shifted by the skew. Judged by
// Redis's clock (each store handle moves its instants onto it), nobody is
// reaped and a state published on either instance expires on time.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PresenceClient, type PresenceUpdate } from "../client.ts";
import { type ClusterNode, spawnNode } from "./_cluster.ts";
import { redisMissing, type RedisServer, startRedis } from "./_redis.ts";
import { waitUntil } from "./_harness.ts";

const REQUIRE_ALL = (globalThis as { process?: { env: Record<string, string | undefined> } })
  .process?.env.PRESENTLY_REQUIRE_ALL === "1";
const IS_DENO = "Deno" in globalThis;
const missing = redisMissing();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

if (!IS_DENO) {
  it.skip("the skew test spawns its instances from Deno", () => {});
} else if (missing !== null) {
  if (REQUIRE_ALL) throw new Error(missing);
  it.skip(`Redis skew test (${missing})`, () => {});
} else {
  describe("an instance whose clock is 8 s ahead, default 10 s lease", () => {
    let redis: RedisServer;
    let a: ClusterNode, b: ClusterNode;
    const clients: PresenceClient[] = [];

    before(async () => {
      redis = await startRedis();
      const env = { REDIS_URL: redis.url, REDIS_PREFIX: `skew${Date.now()}:`, GRACE_MS: "1000" };
      a = await spawnNode("A", "deno", env);
      b = await spawnNode("B+8s", "bun", { ...env, CLOCK_SKEW_MS: "8000" });
    });

    after(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await a?.kill();
      await b?.kill();
      await redis?.stop();
    });

    const client = async (url: string, name: string) => {
      const c = new PresenceClient(`${url}?name=${name}`);
      clients.push(c);
      await c.connect();
      return c;
    };

    it("no instance is reaped over 25 s, and states expire after their expireAfter", async () => {
      const onA = await client(a.url, "ada"), onB = await client(b.url, "bob");
      const seenOnB: PresenceUpdate[] = [], seenOnA: PresenceUpdate[] = [];
      const watchB = await client(b.url, "watcher-b"), watchA = await client(a.url, "watcher-a");
      await watchB.subscribePresence("room", (u) => seenOnB.push(u));
      await watchA.subscribePresence("room", (u) => seenOnA.push(u));
      assert.equal((await onA.joinRoom("room")).success, true);
      assert.equal((await onB.joinRoom("room")).success, true);

      // States with expireAfter 3 s, one from each instance: seen cleared
      // about 3 s later (not at once, not 11 s later), by both watchers.
      const t0 = Date.now();
      const clearedAt = new Map<string, number>();
      const watch = (u: PresenceUpdate, by: string) => {
        if (u.type === "state" && u.state === null) {
          clearedAt.set(`${by}:${u.connectionId}`, Date.now() - t0);
        }
      };
      await watchA.subscribePresence("room", (u) => watch(u, "A"));
      await watchB.subscribePresence("room", (u) => watch(u, "B"));
      await onA.publishPresenceState("room", { state: "a", expireAfter: 3_000 });
      await onB.publishPresenceState("room", { state: "b", expireAfter: 3_000 });
      await waitUntil(() => clearedAt.size === 4, 8_000, "both states expired, seen on both");
      console.log(
        `[skew] expireAfter 3000: cleared at ${JSON.stringify([...clearedAt.values()])} ms`,
      );
      for (const [k, ms] of clearedAt) {
        assert.ok(ms >= 2_500 && ms < 5_000, `${k} cleared after ${ms} ms`);
      }

      // Two and a half leases: A is never reaped by B's sweeps, nor B by A's.
      await sleep(25_000 - (Date.now() - t0));
      const leaves = [...seenOnA, ...seenOnB].filter((u) => u.type === "leave");
      assert.deepEqual(leaves, [], "no leave: nobody was reaped");
      for (const id of [onA.connectionId!, onB.connectionId!]) {
        assert.ok(seenOnB.some((u) => u.type === "join" && u.connectionId === id));
      }
    });
  });
}
