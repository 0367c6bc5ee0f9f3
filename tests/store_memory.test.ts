// MemoryPresenceStore: the shared conformance suite plus memory-only behaviour.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { runStoreConformance } from "./store_conformance.ts";
import { MemoryPresenceStore } from "../src/store/memory.ts";
import { PresenceError } from "../src/errors.ts";
import type { PresenceEvent } from "../src/store/types.ts";

runStoreConformance("memory", () => {
  const store = new MemoryPresenceStore();
  return Promise.resolve({
    stores: [store, store],
    close: () => store.close(),
    settleMs: 0,
  });
});

/** mulberry32: a seeded PRNG so failures replay. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("MemoryPresenceStore", () => {
  it("sweep() expires 10k states with random expiries exactly on time", async () => {
    const store = new MemoryPresenceStore();
    const rand = random(42);
    const base = 1_700_000_000_000;
    const rooms = Array.from({ length: 100 }, (_, i) => `room${i}`);
    // key "room\0conn" -> expiresAt (Infinity: no expiry)
    const model = new Map<string, number>();
    const key = (room: string, cid: string) => `${room}\u0000${cid}`;
    for (let i = 0; i < 10_000; i++) {
      const room = rooms[i % rooms.length]!;
      const cid = `c${i}`;
      await store.join(room, cid, "i1", {}, base);
      const at = base + 1 + Math.floor(rand() * 10_000);
      await store.setState(room, cid, { kind: "set", state: i }, at, base);
      model.set(key(room, cid), at);
    }
    // Rewrite a third: sooner, later, no expiry, cleared, or gone.
    for (let i = 0; i < 10_000; i += 3) {
      const room = rooms[i % rooms.length]!;
      const cid = `c${i}`;
      const k = key(room, cid);
      const r = rand();
      if (r < 0.3) {
        const at = base + 1 + Math.floor(rand() * 10_000);
        await store.setState(room, cid, { kind: "patch", patch: 1 }, at, base);
        model.set(k, at);
      } else if (r < 0.5) {
        await store.setState(room, cid, { kind: "set", state: 2 }, null, base);
        model.set(k, Infinity);
      } else if (r < 0.75) {
        await store.setState(room, cid, { kind: "clear" }, null, base);
        model.delete(k);
      } else {
        await store.leave(room, cid, "leave", base);
        model.delete(k);
      }
    }
    const expired: PresenceEvent[] = [];
    store.subscribe((event) => expired.push(event));
    let last = -Infinity;
    for (let t = base; t <= base + 10_500; t += 250) {
      expired.length = 0;
      await store.sweep(t);
      const due = [...model].filter(([, at]) => at <= t);
      assert.equal(expired.length, due.length, `at +${t - base}`);
      for (const event of expired) {
        assert.ok(event.type === "state" && event.expired === true);
        const at = model.get(key(event.room, event.connectionId));
        assert.ok(at !== undefined && at <= t && at > last);
        model.delete(key(event.room, event.connectionId));
      }
      last = t;
    }
    let left = 0;
    for (const room of rooms) {
      const snap = await store.snapshot(room, base + 1e9);
      left += snap.states.size;
    }
    assert.equal(
      left,
      [...model.values()].filter((at) => at === Infinity).length,
    );
    await store.close();
  });

  it("sweep() emits expired states in expiry order", async () => {
    const store = new MemoryPresenceStore();
    const rand = random(7);
    const now = 1_000;
    for (let i = 0; i < 500; i++) {
      await store.join("r", `c${i}`, "i1", {}, now);
      const at = now + 1 + Math.floor(rand() * 1_000);
      await store.setState("r", `c${i}`, { kind: "set", state: at }, at, now);
    }
    const stateOf = new Map<string, number>();
    for (const [id, value] of (await store.snapshot("r", now)).states) {
      stateOf.set(id, value as number);
    }
    const seen: number[] = [];
    store.subscribe((event) => seen.push(stateOf.get(event.connectionId)!));
    await store.sweep(now + 2_000);
    assert.equal(seen.length, 500);
    assert.deepEqual(seen, [...seen].sort((x, y) => x - y));
    await store.close();
  });

  it("a throwing listener does not break other listeners or the mutation", async () => {
    const errors: Array<[unknown, PresenceEvent | null]> = [];
    const store = new MemoryPresenceStore({
      onError: (error, event) => errors.push([error, event]),
    });
    const seen: number[] = [];
    store.subscribe(() => {
      throw new Error("boom");
    });
    store.subscribe((event) => seen.push(event.seq));
    const joined = await store.join("r", "c1", "i1", {}, 0);
    await store.setState("r", "c1", { kind: "set", state: 1 }, null, 0);
    assert.deepEqual(seen, [1, 2]);
    assert.equal(errors.length, 2);
    assert.equal((errors[0]![0] as Error).message, "boom");
    assert.equal(errors[0]![1], joined);
    await store.close();
  });

  it("a throwing listener is reported to console.error by default", async () => {
    const store = new MemoryPresenceStore();
    const original = console.error;
    const logged: unknown[][] = [];
    console.error = (...args: unknown[]) => logged.push(args);
    try {
      store.subscribe(() => {
        throw new Error("boom");
      });
      assert.ok(await store.join("r", "c1", "i1", {}, 0));
    } finally {
      console.error = original;
    }
    assert.equal(logged.length, 1);
    assert.ok(
      logged[0]!.some((x) => x instanceof Error && x.message === "boom"),
    );
    await store.close();
  });

  it("a listener that mutates the store still lets every listener see seq order", async () => {
    const store = new MemoryPresenceStore();
    const first: number[] = [];
    const second: number[] = [];
    store.subscribe((event) => {
      first.push(event.seq);
      if (event.type === "join") {
        // Fire and forget: the nested event is queued behind the current one.
        void store.setState(
          "r",
          event.connectionId,
          {
            kind: "set",
            state: "hi",
          },
          null,
          0,
        );
      }
    });
    store.subscribe((event) => second.push(event.seq));
    const event = await store.join("r", "c1", "i1", {}, 0);
    assert.equal(event?.seq, 1);
    assert.deepEqual(first, [1, 2]);
    assert.deepEqual(second, [1, 2]);
    assert.equal((await store.snapshot("r", 0)).states.get("c1"), "hi");
    await store.close();
  });

  it("a write over an expired, unswept state announces the expiry first", async () => {
    const store = new MemoryPresenceStore();
    const seen: PresenceEvent[] = [];
    store.subscribe((event) => seen.push(event));
    await store.join("r", "c1", "i1", {}, 0);
    await store.setState("r", "c1", { kind: "set", state: { a: 1 } }, 100, 0);
    const event = await store.setState(
      "r",
      "c1",
      { kind: "patch", patch: { b: 2 } },
      null,
      150,
    );
    assert.deepEqual(seen.slice(2).map((e) => [e.type, e.seq]), [
      ["state", 3],
      ["state", 4],
    ]);
    const expired = seen[2]!;
    assert.ok(expired.type === "state" && expired.expired === true);
    assert.ok(
      event !== null && event !== "not_member" && event.type === "state",
    );
    assert.deepEqual(event.state, { b: 2 });
    // Clearing an expired state announces the expiry, then has nothing to clear.
    await store.setState("r", "c1", { kind: "set", state: 1 }, 200, 150);
    assert.equal(
      await store.setState("r", "c1", { kind: "clear" }, null, 250),
      null,
    );
    assert.equal(seen.length, 6);
    assert.ok(seen[5]!.type === "state" && seen[5]!.expired === true);
    await store.close();
  });

  it("releaseLease() removes an instance's entries even without a lease", async () => {
    const store = new MemoryPresenceStore();
    const seen: PresenceEvent[] = [];
    store.subscribe((event) => seen.push(event));
    await store.join("r", "c1", "i1", {}, 0);
    await store.setMetadata("c1", "i1", { k: 1 });
    await store.releaseLease("i1");
    assert.equal(seen.length, 2);
    assert.ok(seen[1]!.type === "leave" && seen[1]!.reason === "close");
    assert.equal(await store.getMetadata("c1"), null);
    await store.close();
  });

  it("stores states and metadata as given, without copying", async () => {
    const store = new MemoryPresenceStore();
    const meta = { user: "ada" };
    const state = { cursor: [1, 2] };
    await store.join("r", "c1", "i1", meta, 0);
    await store.setState("r", "c1", { kind: "set", state }, null, 0);
    await store.setMetadata("c1", "i1", meta);
    const snap = await store.snapshot("r", 0);
    assert.equal(snap.present[0]!.meta, meta);
    assert.equal(snap.states.get("c1"), state);
    assert.equal(await store.getMetadata("c1"), meta);
    await store.close();
  });

  it("close() drops listeners and later calls reject with code closed", async () => {
    const store = new MemoryPresenceStore();
    const seen: PresenceEvent[] = [];
    store.subscribe((event) => seen.push(event));
    await store.join("r", "c1", "i1", {}, 0);
    await store.close();
    const isClosed = (error: unknown) => error instanceof PresenceError && error.code === "closed";
    await assert.rejects(store.join("r", "c2", "i1", {}, 0), isClosed);
    await assert.rejects(store.snapshot("r", 0), isClosed);
    await assert.rejects(store.sweep(0), isClosed);
    await assert.rejects(store.getMetadata("c1"), isClosed);
    assert.equal(seen.length, 1);
    await store.close();
  });

  it("forgets an emptied room nobody watches after a minute, so room names churning do not grow memory", async () => {
    const store = new MemoryPresenceStore();
    const now = Date.now();
    for (let i = 0; i < 1000; i++) {
      await store.join(`churn-${i}`, "c", "i", {}, now);
      await store.leave(`churn-${i}`, "c", "leave", now);
    }
    // For a while its seq goes on (sim seed 1884: an event of the room's
    // earlier life, still on its way, must never pass for a next one).
    assert.equal((await store.snapshot("churn-5", now)).seq, 2, "kept lately");
    const again = await store.join("churn-5", "c", "i", {}, now);
    assert.equal(again?.seq, 3, "seq goes on, never restarts at 1");
    await store.leave("churn-5", "c", "leave", now);
    // Two sweep generations later, it is gone.
    await store.sweep(now + 30_000);
    await store.sweep(now + 60_000);
    assert.equal((await store.snapshot("churn-6", now)).seq, 0, "forgotten");
    const unwatch = store.watchRoom("kept");
    await store.join("kept", "c", "i", {}, now);
    await store.leave("kept", "c", "leave", now);
    assert.equal((await store.snapshot("kept", now)).seq, 2, "kept while watched");
    unwatch();
    await store.sweep(now + 90_000);
    await store.sweep(now + 120_000);
    assert.equal((await store.snapshot("kept", now)).seq, 0, "forgotten once unwatched");
    await store.close();
  });
});
