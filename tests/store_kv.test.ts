// KvPresenceStore: the shared conformance suite on Deno KV (in memory, and one
// file opened twice), plus KV-only behaviour. Deno only: skipped under Bun.
/// <reference lib="deno.unstable" />

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { runStoreConformance, waitFor } from "./store_conformance.ts";
import { type KvLike, KvPresenceStore, type KvPresenceStoreOptions } from "../src/store/deno_kv.ts";
import { PresenceError } from "../src/errors.ts";
import type { PresenceEvent } from "../src/store/types.ts";

const D = (globalThis as unknown as { Deno?: typeof Deno }).Deno;
const IS_DENO = D !== undefined && !("Bun" in globalThis);

/** A temp KV file and a remover for it and SQLite's side files. */
async function tempKvPath(): Promise<{ path: string; remove(): void }> {
  const dir = await D!.makeTempDir({ prefix: "presently-kv-" });
  return {
    path: `${dir}/kv.sqlite3`,
    remove: () => D!.removeSync(dir, { recursive: true }),
  };
}

if (!IS_DENO) {
  console.log(
    "[store_kv] SKIPPED: KvPresenceStore needs Deno KV; these tests run under `deno test`",
  );
  describe.skip("KvPresenceStore (Deno only)", () => {
    it("runs under Deno", () => {});
  });
} else {
  // (a) One in-memory KV shared by two store handles: watch + polling.
  runStoreConformance("deno kv :memory: (watch + polling)", async () => {
    const kv = await D!.openKv(":memory:");
    const a = new KvPresenceStore(kv, { pollIntervalMs: 50 });
    const b = new KvPresenceStore(kv, { pollIntervalMs: 50 });
    return {
      stores: [a, b],
      settleMs: 60,
      async close() {
        await a.close();
        await b.close();
        kv.close();
      },
    };
  });

  // (b) One file opened twice, polling only: what two processes on one local
  // file get, since kv.watch does not fire across processes.
  runStoreConformance("deno kv file x2 (polling only)", async () => {
    const file = await tempKvPath();
    const kv1 = await D!.openKv(file.path);
    const kv2 = await D!.openKv(file.path);
    const options: KvPresenceStoreOptions = {
      pollIntervalMs: 50,
      watch: false,
    };
    const a = new KvPresenceStore(kv1, options);
    const b = new KvPresenceStore(kv2, options);
    return {
      stores: [a, b],
      settleMs: 120,
      async close() {
        await a.close();
        await b.close();
        kv1.close();
        kv2.close();
        file.remove();
      },
    };
  });

  // (c) Watch alone, no polling: the Deno Deploy / KV Connect path.
  runStoreConformance("deno kv :memory: (watch only)", async () => {
    const kv = await D!.openKv(":memory:");
    const a = new KvPresenceStore(kv, { pollIntervalMs: 0, watch: true });
    const b = new KvPresenceStore(kv, { pollIntervalMs: 0, watch: true });
    return {
      stores: [a, b],
      settleMs: 60,
      async close() {
        await a.close();
        await b.close();
        kv.close();
      },
    };
  });

  describe("KvPresenceStore", () => {
    it("accepts a Deno.Kv as its KvLike handle", async () => {
      const kv = await D!.openKv(":memory:");
      const handle: KvLike = kv; // a compile-time check as much as a runtime one
      const store = new KvPresenceStore(handle);
      await store.close();
      kv.close();
    });

    it("the constructor refuses bad options", async () => {
      const kv = await D!.openKv(":memory:");
      const isBad = (e: unknown) => e instanceof PresenceError && e.code === "bad_request";
      assert.throws(
        () => new KvPresenceStore(kv, { pollIntervalMs: -1 }),
        isBad,
      );
      assert.throws(
        () => new KvPresenceStore(kv, { pollIntervalMs: Infinity }),
        isBad,
      );
      assert.throws(() => new KvPresenceStore(kv, { logTtlMs: 10 }), isBad);
      const noWatch: KvLike = {
        get: (k) => kv.get(k),
        getMany: (k) => kv.getMany(k),
        list: (s, o) => kv.list(s, o),
        atomic: () => kv.atomic(),
      };
      assert.throws(() => new KvPresenceStore(noWatch, { watch: true }), isBad);
      // "auto" falls back to polling alone.
      await new KvPresenceStore(noWatch).close();
      kv.close();
    });

    it("stores under different prefixes on one KV do not see each other", async () => {
      const kv = await D!.openKv(":memory:");
      const a = new KvPresenceStore(kv, { prefix: ["app-a"] });
      const b = new KvPresenceStore(kv, { prefix: ["app-b"] });
      const now = Date.now();
      await a.join("lobby", "c1", "i1", {}, now);
      await a.setMetadata("c1", "i1", { k: 1 });
      assert.equal((await b.snapshot("lobby", now)).seq, 0);
      assert.equal(await b.getMetadata("c1"), null);
      assert.equal((await b.join("lobby", "c2", "i1", {}, now))?.seq, 1);
      await a.close();
      await b.close();
      kv.close();
    });

    it("a state past expiresAt is hidden although KV still holds it", async () => {
      const kv = await D!.openKv(":memory:");
      const store = new KvPresenceStore(kv, { prefix: ["p"] });
      const now = Date.now();
      await store.join("r", "c1", "i1", {}, now);
      await store.setState("r", "c1", { kind: "set", state: 1 }, now + 10, now);
      const raw = await kv.get(["p", "room", "r", "s", "c1"]);
      assert.ok(raw.versionstamp !== null, "the KV entry is still there");
      assert.equal((await store.snapshot("r", now + 10)).states.size, 0);
      await store.close();
      kv.close();
    });

    it("events whose log entries are gone are skipped, leaving a seq gap", async () => {
      const kv = await D!.openKv(":memory:");
      const a = new KvPresenceStore(kv, { prefix: ["p"] });
      // No watch and a poll that never comes: b catches up on its own write.
      const b = new KvPresenceStore(kv, {
        prefix: ["p"],
        pollIntervalMs: 60_000,
        watch: false,
      });
      const seen: number[] = [];
      b.subscribe((event) => seen.push(event.seq));
      b.watchRoom("r");
      await b.snapshot("r", 0); // let the watch's baseline read land
      const now = Date.now();
      await a.join("r", "c1", "i1", {}, now);
      await a.join("r", "c2", "i1", {}, now);
      await kv.delete(["p", "log", "r", 2]);
      assert.deepEqual(seen, []);
      await b.join("r", "c3", "i2", {}, now);
      assert.deepEqual(seen, [1, 3]);
      await a.close();
      await b.close();
      kv.close();
    });

    it("renewLease() after being reaped calls onReset listeners", async () => {
      const kv = await D!.openKv(":memory:");
      const slow = new KvPresenceStore(kv, { prefix: ["p"] });
      const survivor = new KvPresenceStore(kv, { prefix: ["p"] });
      let resets = 0;
      slow.onReset(() => resets++);
      const now = Date.now();
      await slow.renewLease("i1", 1_000, now);
      await slow.join("r", "c1", "i1", {}, now);
      await slow.renewLease("i1", 1_000, now + 500);
      await new Promise((r) => setTimeout(r, 5));
      assert.equal(resets, 0);
      await survivor.sweep(now + 1_600);
      assert.deepEqual((await survivor.snapshot("r", now)).present, []);
      await slow.renewLease("i1", 1_000, now + 1_700);
      await waitFor(() => resets === 1);
      // A lease this handle never held, or one released, is not a loss.
      await survivor.renewLease("i2", 1_000, now);
      await slow.releaseLease("i1");
      await slow.renewLease("i1", 1_000, now + 1_800);
      await new Promise((r) => setTimeout(r, 5));
      assert.equal(resets, 1);
      await slow.close();
      await survivor.close();
      kv.close();
    });

    it("a reap stops when the lapsed instance renews its lease meanwhile", async () => {
      const kv = await D!.openKv(":memory:");
      let commits = -1; // counting starts when armed
      let onSecondCommit: (() => Promise<void>) | null = null;
      // Commits through this handle can run a hook: here, the stalled instance
      // renewing right after the reaper's first leave.
      const hooked: KvLike = {
        get: (k) => kv.get(k),
        getMany: (k) => kv.getMany(k),
        list: (s, o) => kv.list(s, o),
        atomic: () => {
          const op = kv.atomic();
          const wrapped = {
            check: (...c: Parameters<typeof op.check>) => (op.check(...c), wrapped),
            set: (...a: Parameters<typeof op.set>) => (op.set(...a), wrapped),
            delete: (k: Parameters<typeof op.delete>[0]) => (op.delete(k), wrapped),
            commit: async () => {
              const res = await op.commit();
              if (commits >= 0 && ++commits === 2 && onSecondCommit) {
                await onSecondCommit();
              }
              return res;
            },
          };
          return wrapped;
        },
      };
      const slow = new KvPresenceStore(kv, { prefix: ["p"] });
      const survivor = new KvPresenceStore(hooked, { prefix: ["p"] });
      let resets = 0;
      slow.onReset(() => resets++);
      const seen: PresenceEvent[] = [];
      survivor.subscribe((e) => seen.push(e));
      const now = Date.now();
      await slow.renewLease("i1", 1_000, now);
      for (const cid of ["c1", "c2", "c3"]) {
        await slow.join("r", cid, "i1", {}, now);
      }
      onSecondCommit = () => slow.renewLease("i1", 1_000, now + 1_500);
      commits = 0; // 1: the claim, 2: the first leave
      await survivor.sweep(now + 1_200);
      assert.deepEqual(seen.map((e) => e.type), ["leave"]);
      const left = (await survivor.snapshot("r", now)).present.map((p) => p.id);
      assert.equal(left.length, 2);
      const lease = await kv.get(["p", "lease", "i1"]);
      assert.deepEqual(lease.value, { expiresAt: now + 2_500 });
      await waitFor(() => resets === 1);
      await slow.close();
      await survivor.close();
      kv.close();
    });

    it("a handle never reaps an instance whose lease it renews itself", async () => {
      const kv = await D!.openKv(":memory:");
      const own = new KvPresenceStore(kv, { prefix: ["p"] });
      const other = new KvPresenceStore(kv, { prefix: ["p"] });
      const now = Date.now();
      await own.renewLease("i1", 100, now);
      await own.join("r", "c1", "i1", {}, now);
      await own.sweep(now + 1_000);
      assert.equal((await own.snapshot("r", now)).present.length, 1);
      await other.sweep(now + 1_000);
      assert.equal((await own.snapshot("r", now)).present.length, 0);
      await own.close();
      await other.close();
      kv.close();
    });

    it("a reaper that died mid-reap is taken over once its claim lapses", async () => {
      const kv = await D!.openKv(":memory:");
      const gone = new KvPresenceStore(kv, { prefix: ["p"] });
      const store = new KvPresenceStore(kv, { prefix: ["p"] });
      const seen: PresenceEvent[] = [];
      store.subscribe((event) => seen.push(event));
      store.watchRoom("r");
      await store.snapshot("r", 0); // let the watch's baseline read land
      const now = Date.now();
      await gone.renewLease("dead", 1_000, now);
      await gone.join("r", "c1", "dead", {}, now);
      await gone.join("r", "c2", "dead", {}, now);
      await gone.close();
      await waitFor(() => seen.length === 2);
      // Another handle claimed the lease, reaped c1 and crashed.
      await kv.set(["p", "lease", "dead"], {
        expiresAt: now + 1_000,
        reaper: "gone",
        reapUntil: now + 40_000,
      });
      await store.leave("r", "c1", "instance", now + 1_000);
      await store.sweep(now + 20_000);
      assert.equal(seen.length, 3, "the claim still holds");
      await store.sweep(now + 40_000);
      assert.equal(seen.length, 4);
      const last = seen[3]!;
      assert.ok(last.type === "leave" && last.reason === "instance");
      assert.equal(last.connectionId, "c2");
      assert.equal((await kv.get(["p", "lease", "dead"])).versionstamp, null);
      await store.close();
      kv.close();
    });

    it("sweeps racing on four handles expire 200 states exactly once each", async () => {
      const kv = await D!.openKv(":memory:");
      const stores = Array.from(
        { length: 4 },
        () => new KvPresenceStore(kv, { prefix: ["p"], pollIntervalMs: 20 }),
      );
      const seen: PresenceEvent[] = [];
      const stop = stores[0]!.subscribe((e) => seen.push(e));
      const unwatch = ["r0", "r1"].map((r) => stores[0]!.watchRoom(r));
      const now = Date.now();
      for (let i = 0; i < 200; i++) {
        const room = `r${i % 2}`;
        const s = stores[i % 4]!;
        await s.join(room, `c${i}`, "i1", {}, now);
        await s.setState(
          room,
          `c${i}`,
          { kind: "set", state: i },
          now + i,
          now,
        );
      }
      await waitFor(() => seen.length === 400);
      await Promise.all(stores.map((s) => s.sweep(now + 1_000)));
      await waitFor(() => seen.length === 600);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(seen.length, 600);
      for (const room of ["r0", "r1"]) {
        const seqs = seen.filter((e) => e.room === room).map((e) => e.seq);
        assert.deepEqual(seqs, Array.from({ length: 300 }, (_, i) => i + 1));
      }
      const expired = seen.slice(400).map((e) => e.connectionId).sort();
      assert.deepEqual(
        expired,
        Array.from({ length: 200 }, (_, i) => `c${i}`).sort(),
      );
      for (const u of unwatch) u();
      stop();
      for (const s of stores) await s.close();
      kv.close();
    });
  });

  // Deno's sanitizers do not watch node:test tests: check close() here.
  D!.test({
    name: "KvPresenceStore.close() stops polling and watch streams",
    sanitizeOps: true,
    sanitizeResources: true,
  }, async () => {
    const kv = await D!.openKv(":memory:");
    const a = new KvPresenceStore(kv, { pollIntervalMs: 10 });
    const b = new KvPresenceStore(kv, { pollIntervalMs: 10 });
    const seen: PresenceEvent[] = [];
    b.subscribe((e) => seen.push(e));
    b.watchRoom("r1");
    const unwatch = b.watchRoom("r2");
    await a.join("r1", "c1", "i1", {}, Date.now());
    await waitFor(() => seen.length === 1);
    unwatch();
    await new Promise((r) => setTimeout(r, 30));
    await a.close();
    await b.close();
    await assert.rejects(
      b.join("r1", "c2", "i1", {}, Date.now()),
      (e: unknown) => e instanceof PresenceError && e.code === "closed",
    );
    kv.close();
  });
}
