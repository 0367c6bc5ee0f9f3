// RedisPresenceStore on a real 3-master Redis Cluster (issue 11): the shared
// conformance suite, with each handle given one seed node (so both follow
// MOVED to the other masters), under Deno and Bun. A 1-node cluster would
// hide cross-slot scripts, so the suite also checks that rooms really spread
// over the three masters.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { runStoreConformance } from "./store_conformance.ts";
import { RedisPresenceStore } from "../src/store/redis.ts";
import { redisMissing, startRedisCluster } from "./_redis.ts";
import { waitUntil } from "./_harness.ts";
import type { PresenceEvent } from "../src/store/types.ts";

const missing = redisMissing();

function prefix(): string {
  return `t${crypto.randomUUID().slice(0, 8)}:`;
}

if (missing === null) {
  runStoreConformance("redis cluster (3 masters)", async () => {
    const cluster = await startRedisCluster(3);
    const p = prefix();
    const a = new RedisPresenceStore({ cluster: [cluster.urls[0]!], prefix: p });
    const b = new RedisPresenceStore({ cluster: [cluster.urls[1]!], prefix: p });
    return {
      stores: [a, b],
      settleMs: 30,
      async close() {
        await a.close();
        await b.close();
        await cluster.stop();
      },
    };
  });

  describe("RedisPresenceStore on a 3-master cluster", () => {
    it("rooms spread over every master, and each master's scripts stay in its slots", async () => {
      const cluster = await startRedisCluster(3);
      const store = new RedisPresenceStore({ cluster: [cluster.urls[0]!], prefix: prefix() });
      try {
        const before = await Promise.all(cluster.ports.map((p) => cluster.commandStats(p)));
        const now = Date.now();
        for (let i = 0; i < 60; i++) {
          await store.join(`spread:${i}`, `c${i}`, "i1", {}, now);
          await store.setState(`spread:${i}`, `c${i}`, { kind: "set", state: i }, null, now);
        }
        const after = await Promise.all(cluster.ports.map((p) => cluster.commandStats(p)));
        const scripts = after.map((m, i) =>
          (m.get("evalsha") ?? 0) + (m.get("eval") ?? 0) -
          (before[i]!.get("evalsha") ?? 0) - (before[i]!.get("eval") ?? 0)
        );
        // 120 room scripts over 3 masters: every master runs some.
        assert.ok(scripts.every((n) => n >= 15), `room scripts per master: ${scripts}`);
        for (let i = 0; i < 60; i += 7) {
          const snap = await store.snapshot(`spread:${i}`, now);
          assert.equal(snap.states.get(`c${i}`), i);
        }
      } finally {
        await store.close();
        await cluster.stop();
      }
    });

    // The write fence on a cluster follows the master of the store's own
    // keys (leases, indexes): a join made while it restarts empty would land,
    // after the reconnect, before the instance's lease there (seed 900110).
    it("a join made while the cluster restarts lands only after the lease is renewed, and is reaped after a crash", async () => {
      const cluster = await startRedisCluster(3);
      const p = prefix();
      const quiet = { onError: () => {} };
      const a = new RedisPresenceStore({ cluster: [cluster.urls[0]!], prefix: p, ...quiet });
      const b = new RedisPresenceStore({ cluster: [cluster.urls[1]!], prefix: p, ...quiet });
      try {
        let resets = 0;
        a.onReset(() => resets++);
        await a.renewLease("i1", 1_000, Date.now());
        await a.join("lobby", "c0", "i1", {}, Date.now());
        let joining: Promise<PresenceEvent | null> | null = null;
        let settled = false;
        await cluster.restart(async () => {
          await new Promise((r) => setTimeout(r, 300)); // the client notices the drop
          joining = a.join("lobby", "c1", "i1", {}, Date.now());
          joining.then(() => (settled = true), () => (settled = true));
        });
        await waitUntil(() => resets > 0, 20_000, "onReset");
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(settled, false, "the join waits for the lease");
        await waitUntil(
          async () => {
            try {
              return (await b.snapshot("lobby", Date.now())).present.length === 0;
            } catch {
              return false;
            }
          },
          20_000,
          "b reads the restarted cluster",
        );
        await a.renewLease("i1", 1_000, Date.now());
        assert.equal((await joining!)?.type, "join");
        assert.deepEqual(
          (await b.snapshot("lobby", Date.now())).present.map((m) => m.id),
          ["c1"],
        );
        // The instance dies without renewing again: its member is reaped.
        await a.close();
        await b.sweep(Date.now() + 2_000);
        assert.deepEqual((await b.snapshot("lobby", Date.now())).present, []);
      } finally {
        await a.close();
        await b.close();
        await cluster.stop();
      }
    });
  });
} else {
  it.skip(`Redis Cluster suites (${missing})`, () => {});
}
