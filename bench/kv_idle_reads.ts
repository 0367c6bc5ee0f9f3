/// <reference lib="deno.unstable" />
// Deno KV reads of idle instances, counted, as the cluster grows:
//   deno run -A --unstable-kv bench/kv_idle_reads.ts [seconds per step, default 3]
//
// N PresenceServers (N = 2, 8, 32) share one Deno KV, each through its own
// KvPresenceStore whose KV handle is wrapped to count every entry read (get,
// getMany, list) and every call. The servers sit idle (no connections) with
// the default sweep (100 ms) and lease (10 s): what is counted is the cost of
// being in the cluster. Each step also holds one watched room per instance,
// so polling runs. The figure that must not grow with N: reads per second
// per instance.

import { PresenceServer } from "../mod.ts";
import { type KvLike, KvPresenceStore } from "../src/store/deno_kv.ts";

const seconds = Number(Deno.args[0] ?? 3);

/** A KvLike that counts what it reads. */
function counting(kv: Deno.Kv, counts: { entries: number; calls: number }): KvLike {
  return {
    get: async (key) => {
      counts.calls++;
      counts.entries++;
      return await kv.get(key as Deno.KvKey);
    },
    getMany: async (keys) => {
      counts.calls++;
      counts.entries += keys.length;
      return await kv.getMany(keys as Deno.KvKey[]);
    },
    list: (selector, options) => {
      counts.calls++;
      const it = kv.list(selector as Deno.KvListSelector, options);
      return (async function* () {
        for await (const e of it) {
          counts.entries++;
          yield e;
        }
      })();
    },
    atomic: () => kv.atomic() as unknown as ReturnType<KvLike["atomic"]>,
    watch: (keys) =>
      kv.watch(keys as Deno.KvKey[]) as unknown as ReturnType<NonNullable<KvLike["watch"]>>,
  } as KvLike;
}

console.log(`| instances | reads/s per instance (entries) | calls/s per instance |`);
console.log(`|---:|---:|---:|`);
for (const n of [1, 2, 8, 32]) {
  const kv = await Deno.openKv(":memory:");
  const counts = Array.from({ length: n }, () => ({ entries: 0, calls: 0 }));
  const servers = counts.map((c, i) => {
    const store = new KvPresenceStore(counting(kv, c), { watch: false });
    const server = new PresenceServer({ store, instanceId: `i${i}` });
    server.trackPresence(/.*/);
    return { server, store };
  });
  // One watched room each (the instance's own member), so polling has work.
  for (const [i, { server }] of servers.entries()) {
    await server.addMember(`room-${i}`, { ttlMs: null });
  }
  await new Promise((r) => setTimeout(r, 1000)); // past start-up
  for (const c of counts) c.entries = c.calls = 0;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const entries = counts.reduce((a, c) => a + c.entries, 0) / n / seconds;
  const calls = counts.reduce((a, c) => a + c.calls, 0) / n / seconds;
  console.log(`| ${n} | ${entries.toFixed(1)} | ${calls.toFixed(1)} |`);
  for (const { server, store } of servers) {
    await server.close();
    await store.close();
  }
  kv.close();
}
