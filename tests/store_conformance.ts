// The PresenceStore conformance suite: every store implementation must pass it.

import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Metadata } from "../src/protocol.ts";
import type { PresenceEvent, PresenceStore } from "../src/store/types.ts";

/** Two handles on one backend (the same object for an embedded store). */
export interface StoreHarness {
  /** Handle 0 and handle 1; distributed stores give two separate clients. */
  stores: [PresenceStore, PresenceStore];
  /** Close both handles and release the backend. */
  close(): Promise<void>;
  /** ms to wait for cross-handle propagation; 0 for memory */
  settleMs?: number;
}

const WAIT_LIMIT_MS = 3_000;

/** Poll `cond` until it holds, failing after `timeoutMs` of real time. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = WAIT_LIMIT_MS,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + Math.min(timeoutMs, WAIT_LIMIT_MS);
  for (;;) {
    if (await cond()) return;
    if (Date.now() >= deadline) {
      throw new Error(`Timed out waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

/** A small seeded PRNG (mulberry32) so random tests replay the same way. */
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

function uid(prefix: string): string {
  return `${prefix}-${crypto.randomUUID()}`;
}

function asEvent(value: PresenceEvent | null | "not_member"): PresenceEvent {
  assert.ok(
    value !== null && value !== "not_member",
    `expected an event, got ${JSON.stringify(value)}`,
  );
  return value;
}

/**
 * Run the conformance suite for one store implementation.
 *
 * @param name Shown in the suite title, e.g. "memory" or "redis".
 * @param open Opens a harness; called once for the whole suite.
 */
export function runStoreConformance(
  name: string,
  open: () => Promise<StoreHarness>,
): void {
  describe(`PresenceStore conformance: ${name}`, () => {
    let harness: StoreHarness;
    let a: PresenceStore;
    let b: PresenceStore;
    let settleMs = 0;
    const cleanups: Array<() => void> = [];

    before(async () => {
      harness = await open();
      [a, b] = harness.stores;
      settleMs = harness.settleMs ?? 0;
    });
    afterEach(() => {
      for (const cleanup of cleanups.splice(0)) cleanup();
    });
    after(async () => {
      await harness.close();
    });

    /** Collect events for `rooms` seen by `store` (watching them), until the test ends. */
    function collect(
      store: PresenceStore,
      ...rooms: string[]
    ): PresenceEvent[] {
      const wanted = new Set(rooms);
      const seen: PresenceEvent[] = [];
      const stop = store.subscribe((event) => {
        if (wanted.has(event.room)) seen.push(event);
      });
      const unwatch = rooms.map((room) => store.watchRoom(room));
      cleanups.push(() => {
        stop();
        for (const u of unwatch) u();
      });
      return seen;
    }

    /** Wait until `events` holds `count` events, then that nothing more arrives. */
    async function expectCount(
      events: PresenceEvent[],
      count: number,
    ): Promise<void> {
      await waitFor(
        () => events.length >= count,
        WAIT_LIMIT_MS,
        `${count} events`,
      );
      await sleep(settleMs);
      assert.equal(
        events.length,
        count,
        `expected ${count} events, got ${JSON.stringify(events)}`,
      );
    }

    function ofRoom(events: PresenceEvent[], room: string): PresenceEvent[] {
      return events.filter((e) => e.room === room);
    }

    // -- join, leave and sequence numbers -----------------------------------

    it("join() assigns seq 1 and returns null when already present", async () => {
      const room = uid("room");
      const now = Date.now();
      const meta = { name: "Ada" };
      const event = await a.join(room, "c1", "i1", meta, now);
      assert.deepEqual(event, {
        type: "join",
        room,
        connectionId: "c1",
        seq: 1,
        meta,
        instance: "i1",
        timestamp: now,
      });
      assert.equal(await a.join(room, "c1", "i1", meta, now), null);
      assert.equal(await b.join(room, "c1", "i2", {}, now), null);
      const snap = await b.snapshot(room, now);
      assert.equal(snap.seq, 1);
      assert.deepEqual(snap.present, [{ id: "c1", meta }]);
    });

    it("seq grows by one per event and is independent per room", async () => {
      const r1 = uid("room");
      const r2 = uid("room");
      const now = Date.now();
      const unwatch = b.watchRoom(r2); // r2 empties below; watched rooms keep their seq
      const seqs: number[] = [];
      seqs.push(asEvent(await a.join(r1, "c1", "i1", {}, now)).seq);
      seqs.push(asEvent(await a.join(r2, "c1", "i1", {}, now)).seq);
      seqs.push(asEvent(await b.join(r1, "c2", "i2", {}, now)).seq);
      seqs.push(
        asEvent(
          await a.setState(r1, "c1", { kind: "set", state: 1 }, null, now),
        )
          .seq,
      );
      seqs.push(asEvent(await a.leave(r2, "c1", "leave", now)).seq);
      seqs.push(asEvent(await b.leave(r1, "c2", "close", now)).seq);
      assert.deepEqual(seqs, [1, 1, 2, 3, 2, 4]);
      assert.equal((await a.snapshot(r1, now)).seq, 4);
      assert.equal((await b.snapshot(r2, now)).seq, 2);
      unwatch();
    });

    it("seq continues after a watched room empties instead of starting over", async () => {
      const room = uid("room");
      const now = Date.now();
      // A server watches every room it holds a view of; that view's seq must
      // stay valid. (Unwatched empty rooms may be forgotten: bounded memory.)
      const unwatchA = a.watchRoom(room);
      const unwatchB = b.watchRoom(room);
      await a.join(room, "c1", "i1", {}, now);
      await a.setState(room, "c1", { kind: "set", state: "x" }, null, now);
      const left = asEvent(await a.leave(room, "c1", "leave", now));
      assert.equal(left.seq, 3);
      const empty = await b.snapshot(room, now);
      assert.equal(empty.seq, 3);
      assert.deepEqual(empty.present, []);
      assert.equal(empty.states.size, 0);
      const again = asEvent(await b.join(room, "c1", "i2", {}, now));
      assert.equal(again.seq, 4);
      unwatchA();
      unwatchB();
    });

    it("snapshot() of an unknown room is empty at seq 0", async () => {
      const snap = await a.snapshot(uid("room"), Date.now());
      assert.equal(snap.seq, 0);
      assert.deepEqual(snap.present, []);
      assert.equal(snap.states.size, 0);
    });

    it("leave() returns null when the connection is absent", async () => {
      const room = uid("room");
      const now = Date.now();
      assert.equal(await a.leave(room, "c1", "leave", now), null);
      await a.join(room, "c2", "i1", {}, now);
      assert.equal(await a.leave(room, "c1", "leave", now), null);
      assert.equal(await b.leave(uid("room"), "c2", "leave", now), null);
      assert.equal((await a.snapshot(room, now)).seq, 1);
    });

    it("leave() carries its reason and timestamp", async () => {
      const room = uid("room");
      const now = Date.now();
      await a.join(room, "c1", "i1", {}, now);
      const event = await a.leave(room, "c1", "expired", now + 7);
      assert.deepEqual(event, {
        type: "leave",
        room,
        connectionId: "c1",
        seq: 2,
        reason: "expired",
        timestamp: now + 7,
      });
    });

    it("leave() drops the state and emits only a leave event", async () => {
      const room = uid("room");
      const now = Date.now();
      const local = collect(a, room);
      await a.join(room, "c1", "i1", {}, now);
      await a.setState(
        room,
        "c1",
        { kind: "set", state: { x: 1 } },
        now + 50,
        now,
      );
      await a.leave(room, "c1", "leave", now);
      assert.deepEqual(local.map((e) => [e.type, e.seq]), [
        ["join", 1],
        ["state", 2],
        ["leave", 3],
      ]);
      await a.join(room, "c1", "i1", {}, now);
      const snap = await b.snapshot(room, now);
      assert.equal(snap.states.size, 0);
      // The dropped state's expiry must not fire later.
      await a.sweep(now + 100);
      await b.sweep(now + 100);
      await expectCount(local, 4);
    });

    it("snapshot() lists members in join order with meta and states", async () => {
      const room = uid("room");
      const now = Date.now();
      await a.join(room, "c1", "i1", { n: 1 }, now);
      await b.join(room, "c2", "i2", { n: 2 }, now + 1);
      await a.join(room, "c3", "i1", { n: 3, tags: ["x"] }, now + 2);
      await b.leave(room, "c2", "leave", now + 3);
      await b.join(room, "c2", "i2", { n: 22 }, now + 4);
      await a.setState(
        room,
        "c1",
        { kind: "set", state: { cursor: [1, 2] } },
        null,
        now,
      );
      await b.setState(room, "c2", { kind: "set", state: "typing" }, null, now);
      const snap = await a.snapshot(room, now + 5);
      assert.equal(snap.seq, 7);
      assert.deepEqual(snap.present, [
        { id: "c1", meta: { n: 1 } },
        { id: "c3", meta: { n: 3, tags: ["x"] } },
        { id: "c2", meta: { n: 22 } },
      ]);
      assert.deepEqual(
        snap.states,
        new Map<string, unknown>([["c1", { cursor: [1, 2] }], [
          "c2",
          "typing",
        ]]),
      );
    });

    // -- state ----------------------------------------------------------------

    it("setState() resolves not_member for a connection outside the room", async () => {
      const room = uid("room");
      const other = uid("room");
      const now = Date.now();
      const write = { kind: "set", state: 1 } as const;
      assert.equal(
        await a.setState(room, "c1", write, null, now),
        "not_member",
      );
      await a.join(other, "c1", "i1", {}, now);
      await a.join(room, "c2", "i1", {}, now);
      assert.equal(
        await a.setState(room, "c1", write, null, now),
        "not_member",
      );
      assert.equal(
        await b.setState(room, "c1", { kind: "clear" }, null, now),
        "not_member",
      );
      await a.join(room, "c1", "i1", {}, now);
      await a.leave(room, "c1", "leave", now);
      assert.equal(
        await b.setState(
          room,
          "c1",
          { kind: "patch", patch: { a: 1 } },
          null,
          now,
        ),
        "not_member",
      );
      assert.equal((await a.snapshot(room, now)).states.size, 0);
    });

    it("setState() set replaces the state and carries it in full", async () => {
      const room = uid("room");
      const now = Date.now();
      await a.join(room, "c1", "i1", {}, now);
      await a.setState(
        room,
        "c1",
        { kind: "set", state: { a: 1, b: 2 } },
        null,
        now,
      );
      const event = await b.setState(
        room,
        "c1",
        { kind: "set", state: { c: 3 } },
        null,
        now + 1,
      );
      assert.deepEqual(event, {
        type: "state",
        room,
        connectionId: "c1",
        seq: 3,
        state: { c: 3 },
        timestamp: now + 1,
      });
      assert.deepEqual((await a.snapshot(room, now)).states.get("c1"), {
        c: 3,
      });
    });

    it("setState() patch merges nested objects by RFC 7386", async () => {
      const room = uid("room");
      const now = Date.now();
      await a.join(room, "c1", "i1", {}, now);
      await a.setState(
        room,
        "c1",
        {
          kind: "set",
          state: {
            a: 1,
            nested: { x: 1, y: 2, deep: { k: "v" } },
            list: [1, 2],
          },
        },
        null,
        now,
      );
      const patch = {
        nested: { y: null, z: 3, deep: { k2: "v2" } },
        list: [3],
        b: true,
      };
      const event = asEvent(
        await b.setState(room, "c1", { kind: "patch", patch }, null, now),
      );
      const expected = {
        a: 1,
        nested: { x: 1, z: 3, deep: { k: "v", k2: "v2" } },
        list: [3],
        b: true,
      };
      assert.equal(event.type, "state");
      assert.equal(event.seq, 3);
      if (event.type === "state") {
        assert.deepEqual(event.state, expected);
        assert.deepEqual(event.patch, patch);
        assert.equal(event.expired, undefined);
      }
      assert.deepEqual(
        (await a.snapshot(room, now)).states.get("c1"),
        expected,
      );
    });

    it("setState() patch without a state starts from an empty object", async () => {
      const room = uid("room");
      const now = Date.now();
      await a.join(room, "c1", "i1", {}, now);
      const event = asEvent(
        await a.setState(
          room,
          "c1",
          { kind: "patch", patch: { a: { b: null, c: 1 } } },
          null,
          now,
        ),
      );
      assert.ok(event.type === "state");
      assert.deepEqual(event.state, { a: { c: 1 } });
    });

    it("setState() clear emits state null and resolves null when there is no state", async () => {
      const room = uid("room");
      const now = Date.now();
      await a.join(room, "c1", "i1", {}, now);
      assert.equal(
        await a.setState(room, "c1", { kind: "clear" }, null, now),
        null,
      );
      await a.setState(room, "c1", { kind: "set", state: [1] }, null, now);
      const event = await b.setState(
        room,
        "c1",
        { kind: "clear" },
        null,
        now + 2,
      );
      assert.deepEqual(event, {
        type: "state",
        room,
        connectionId: "c1",
        seq: 3,
        state: null,
        timestamp: now + 2,
      });
      assert.equal(
        await a.setState(room, "c1", { kind: "clear" }, null, now),
        null,
      );
      const snap = await a.snapshot(room, now);
      assert.equal(snap.seq, 3);
      assert.equal(snap.states.has("c1"), false);
    });

    it("a null state or a null patch clears the state like clear()", async () => {
      const room = uid("room");
      const now = Date.now();
      await a.join(room, "c1", "i1", {}, now);
      assert.equal(
        await a.setState(room, "c1", { kind: "set", state: null }, null, now),
        null,
      );
      assert.equal(
        await a.setState(room, "c1", { kind: "patch", patch: null }, null, now),
        null,
      );
      await a.setState(room, "c1", { kind: "set", state: 1 }, null, now);
      const cleared = asEvent(
        await a.setState(room, "c1", { kind: "set", state: null }, null, now),
      );
      assert.ok(cleared.type === "state" && cleared.state === null);
      await a.setState(room, "c1", { kind: "set", state: 2 }, null, now);
      const patched = asEvent(
        await a.setState(room, "c1", { kind: "patch", patch: null }, null, now),
      );
      assert.ok(patched.type === "state" && patched.state === null);
      assert.equal((await b.snapshot(room, now)).states.size, 0);
      assert.equal((await b.snapshot(room, now)).seq, 5);
    });

    it("a __proto__ key in a state or patch does not pollute prototypes", async () => {
      const room = uid("room");
      const now = Date.now();
      await a.join(room, "c1", "i1", {}, now);
      const state = JSON.parse('{"__proto__":{"polluted":1},"a":1}');
      await a.setState(room, "c1", { kind: "set", state }, null, now);
      const patch = JSON.parse(
        '{"__proto__":{"extra":2},"b":{"__proto__":{"deep":3}}}',
      );
      const event = asEvent(
        await a.setState(room, "c1", { kind: "patch", patch }, null, now),
      );
      const got = (await b.snapshot(room, now)).states.get("c1") as Record<
        string,
        unknown
      >;
      for (const value of [event.type === "state" ? event.state : null, got]) {
        const v = value as Record<string, unknown>;
        assert.equal(Object.getPrototypeOf(v), Object.prototype);
        assert.ok(Object.hasOwn(v, "__proto__"));
        assert.equal(
          JSON.stringify(v),
          '{"__proto__":{"polluted":1,"extra":2},"a":1,"b":{"__proto__":{"deep":3}}}',
        );
      }
      const probe = {} as Record<string, unknown>;
      assert.equal(probe.polluted, undefined);
      assert.equal(probe.extra, undefined);
      assert.equal(probe.deep, undefined);
    });

    it("rooms and connections named __proto__ work like any other", async () => {
      const room = "__proto__";
      const now = Date.now();
      const first = await a.join(room, "__proto__", "__proto__", { k: 1 }, now);
      assert.ok(first !== null);
      await a.setState(room, "__proto__", { kind: "set", state: 1 }, null, now);
      await a.setMetadata("__proto__", "__proto__", { k: 2 });
      const snap = await b.snapshot(room, now);
      assert.deepEqual(snap.present, [{ id: "__proto__", meta: { k: 1 } }]);
      assert.equal(snap.states.get("__proto__"), 1);
      assert.deepEqual(await b.getMetadata("__proto__"), { k: 2 });
      assert.ok(await a.leave(room, "__proto__", "leave", now) !== null);
      await a.deleteMetadata("__proto__");
      assert.equal(await b.getMetadata("__proto__"), null);
    });

    // -- expiry -----------------------------------------------------------------

    it("snapshot() hides an expired state before any sweep", async () => {
      const room = uid("room");
      const now = Date.now();
      await a.join(room, "c1", "i1", {}, now);
      await a.setState(
        room,
        "c1",
        { kind: "set", state: "typing" },
        now + 100,
        now,
      );
      assert.equal(
        (await b.snapshot(room, now + 99)).states.get("c1"),
        "typing",
      );
      assert.equal((await b.snapshot(room, now + 100)).states.has("c1"), false);
      assert.equal(
        (await a.snapshot(room, now + 5_000)).states.has("c1"),
        false,
      );
      // Still a member: only the state expires.
      assert.equal((await a.snapshot(room, now + 5_000)).present.length, 1);
    });

    it("sweep() clears an expired state with exactly one expired event", async () => {
      const room = uid("room");
      const now = Date.now();
      const remote = collect(b, room);
      await a.join(room, "c1", "i1", {}, now);
      await a.setState(
        room,
        "c1",
        { kind: "set", state: { t: 1 } },
        now + 100,
        now,
      );
      await expectCount(remote, 2);
      await a.sweep(now + 99);
      await b.sweep(now + 99);
      await expectCount(remote, 2);
      await Promise.all([a.sweep(now + 100), b.sweep(now + 100)]);
      await expectCount(remote, 3);
      assert.deepEqual(remote[2], {
        type: "state",
        room,
        connectionId: "c1",
        seq: 3,
        state: null,
        expired: true,
        timestamp: now + 100,
      });
      await a.sweep(now + 1_000);
      await b.sweep(now + 2_000);
      await expectCount(remote, 3);
      const snap = await a.snapshot(room, now + 2_000);
      assert.equal(snap.seq, 3);
      assert.deepEqual(snap.present.map((p) => p.id), ["c1"]);
    });

    it("a later set without expiresAt cancels the earlier expiry", async () => {
      const room = uid("room");
      const now = Date.now();
      const local = collect(a, room);
      await a.join(room, "c1", "i1", {}, now);
      await a.setState(room, "c1", { kind: "set", state: 1 }, now + 100, now);
      await b.setState(room, "c1", { kind: "set", state: 2 }, null, now + 10);
      await a.sweep(now + 10_000);
      await b.sweep(now + 10_000);
      await expectCount(local, 3);
      assert.equal((await a.snapshot(room, now + 10_000)).states.get("c1"), 2);
    });

    it("a later patch without expiresAt cancels the earlier expiry", async () => {
      const room = uid("room");
      const now = Date.now();
      await a.join(room, "c1", "i1", {}, now);
      await a.setState(
        room,
        "c1",
        { kind: "set", state: { a: 1 } },
        now + 100,
        now,
      );
      await a.setState(
        room,
        "c1",
        { kind: "patch", patch: { b: 2 } },
        null,
        now + 10,
      );
      await b.sweep(now + 10_000);
      assert.deepEqual(
        (await a.snapshot(room, now + 10_000)).states.get("c1"),
        { a: 1, b: 2 },
      );
    });

    it("a later expiresAt replaces the earlier one, later or sooner", async () => {
      const room = uid("room");
      const now = Date.now();
      const local = collect(a, room);
      await a.join(room, "c1", "i1", {}, now);
      await a.join(room, "c2", "i1", {}, now);
      await a.setState(room, "c1", { kind: "set", state: 1 }, now + 100, now);
      await a.setState(room, "c1", { kind: "patch", patch: 2 }, now + 300, now);
      await a.setState(room, "c2", { kind: "set", state: 1 }, now + 300, now);
      await a.setState(room, "c2", { kind: "set", state: 3 }, now + 50, now);
      await a.sweep(now + 60);
      await expectCount(local, 7);
      assert.ok(local[6]?.type === "state" && local[6].connectionId === "c2");
      const mid = await b.snapshot(room, now + 150);
      assert.deepEqual(mid.states, new Map([["c1", 2]]));
      await b.sweep(now + 150);
      await expectCount(local, 7);
      await b.sweep(now + 300);
      await expectCount(local, 8);
      const last = local[7]!;
      assert.ok(last.type === "state" && last.expired === true);
      assert.equal(last.connectionId, "c1");
    });

    it("clear() or leave() before expiry means sweep() emits nothing", async () => {
      const room = uid("room");
      const now = Date.now();
      const local = collect(a, room);
      await a.join(room, "c1", "i1", {}, now);
      await a.join(room, "c2", "i1", {}, now);
      await a.setState(room, "c1", { kind: "set", state: 1 }, now + 100, now);
      await a.setState(room, "c2", { kind: "set", state: 1 }, now + 100, now);
      await a.setState(room, "c1", { kind: "clear" }, null, now);
      await a.leave(room, "c2", "leave", now);
      await Promise.all([a.sweep(now + 1_000), b.sweep(now + 1_000)]);
      await expectCount(local, 6);
    });

    it("a patch over an expired, unswept state starts from nothing", async () => {
      const room = uid("room");
      const now = Date.now();
      await a.join(room, "c1", "i1", {}, now);
      await a.setState(
        room,
        "c1",
        { kind: "set", state: { old: 1 } },
        now + 100,
        now,
      );
      const event = asEvent(
        await a.setState(
          room,
          "c1",
          { kind: "patch", patch: { fresh: 2 } },
          null,
          now + 150,
        ),
      );
      assert.ok(event.type === "state");
      assert.deepEqual(event.state, { fresh: 2 });
      assert.deepEqual(
        (await b.snapshot(room, now + 200)).states.get("c1"),
        { fresh: 2 },
      );
      // The expired state is not announced again once replaced.
      const local = collect(a, room);
      await a.sweep(now + 1_000);
      await b.sweep(now + 1_000);
      await expectCount(local, 0);
    });

    // -- metadata ---------------------------------------------------------------

    it("metadata can be set, read from either handle, and deleted", async () => {
      const cid = uid("conn");
      assert.equal(await a.getMetadata(cid), null);
      await a.setMetadata(cid, "i1", { userId: "u1", roles: ["a"] });
      assert.deepEqual(await a.getMetadata(cid), {
        userId: "u1",
        roles: ["a"],
      });
      await waitFor(async () => (await b.getMetadata(cid)) !== null);
      assert.deepEqual(await b.getMetadata(cid), {
        userId: "u1",
        roles: ["a"],
      });
      await b.setMetadata(cid, "i1", { userId: "u2" });
      assert.deepEqual(await a.getMetadata(cid), { userId: "u2" });
      await b.deleteMetadata(cid);
      assert.equal(await a.getMetadata(cid), null);
      assert.equal(await b.getMetadata(cid), null);
      await a.deleteMetadata(cid);
      assert.equal(await a.getMetadata(uid("conn")), null);
    });

    // -- the event feed ---------------------------------------------------------

    it("a local listener gets events in seq order before the mutation resolves", async () => {
      const room = uid("room");
      const now = Date.now();
      const local = collect(a, room);
      await a.join(room, "c1", "i1", {}, now);
      assert.equal(local.length, 1);
      await a.setState(room, "c1", { kind: "set", state: 1 }, null, now);
      assert.equal(local.length, 2);
      await a.setState(
        room,
        "c1",
        { kind: "patch", patch: { a: 1 } },
        null,
        now,
      );
      assert.equal(local.length, 3);
      await a.setState(room, "c1", { kind: "clear" }, null, now);
      assert.equal(local.length, 4);
      await a.leave(room, "c1", "leave", now);
      assert.equal(local.length, 5);
      assert.deepEqual(local.map((e) => e.seq), [1, 2, 3, 4, 5]);
      assert.deepEqual(local.map((e) => e.type), [
        "join",
        "state",
        "state",
        "state",
        "leave",
      ]);
    });

    it("the event a mutation resolves with is the one listeners receive", async () => {
      const room = uid("room");
      const now = Date.now();
      const local = collect(a, room);
      const joined = await a.join(room, "c1", "i1", { m: 1 }, now);
      const set = await a.setState(
        room,
        "c1",
        { kind: "patch", patch: { p: 1 } },
        null,
        now,
      );
      const left = await a.leave(room, "c1", "close", now);
      assert.deepEqual(local, [joined, set, left]);
    });

    it("events made on one handle reach a watcher on the other in seq order", async () => {
      const r1 = uid("room");
      const r2 = uid("room");
      const now = Date.now();
      const remote = collect(b, r1, r2);
      for (let i = 0; i < 10; i++) {
        await a.join(r1, `c${i}`, "i1", { i }, now);
        await a.join(r2, `c${i}`, "i1", { i }, now);
        await a.setState(r1, `c${i}`, { kind: "set", state: i }, null, now);
      }
      for (let i = 0; i < 10; i += 2) await a.leave(r1, `c${i}`, "leave", now);
      await expectCount(remote, 35);
      const seq1 = ofRoom(remote, r1).map((e) => e.seq);
      const seq2 = ofRoom(remote, r2).map((e) => e.seq);
      assert.deepEqual(seq1, Array.from({ length: 25 }, (_, i) => i + 1));
      assert.deepEqual(seq2, Array.from({ length: 10 }, (_, i) => i + 1));
      const join = ofRoom(remote, r1)[0]!;
      assert.deepEqual(join, {
        type: "join",
        room: r1,
        connectionId: "c0",
        seq: 1,
        meta: { i: 0 },
        instance: "i1",
        timestamp: now,
      });
    });

    it("an unsubscribed listener gets no more events and unsubscribe is idempotent", async () => {
      const room = uid("room");
      const now = Date.now();
      const gone: PresenceEvent[] = [];
      const stop = a.subscribe((event) => {
        if (event.room === room) gone.push(event);
      });
      const unwatch = a.watchRoom(room);
      cleanups.push(stop, unwatch);
      const kept = collect(a, room);
      await a.join(room, "c1", "i1", {}, now);
      assert.equal(gone.length, 1);
      stop();
      stop();
      await a.setState(room, "c1", { kind: "set", state: 1 }, null, now);
      await b.leave(room, "c1", "leave", now);
      await expectCount(kept, 3);
      assert.equal(gone.length, 1);
    });

    it("the same function subscribed twice is called twice and unsubscribed separately", async () => {
      const room = uid("room");
      const now = Date.now();
      const seen: number[] = [];
      const listener = (event: PresenceEvent) => {
        if (event.room === room) seen.push(event.seq);
      };
      const stop1 = a.subscribe(listener);
      const stop2 = a.subscribe(listener);
      const unwatch = a.watchRoom(room);
      cleanups.push(stop1, stop2, unwatch);
      await a.join(room, "c1", "i1", {}, now);
      assert.deepEqual(seen, [1, 1]);
      stop1();
      await a.leave(room, "c1", "leave", now);
      assert.deepEqual(seen, [1, 1, 2]);
    });

    it("a watchRoom() disposer is idempotent and watches are reference counted", async () => {
      const room = uid("room");
      const now = Date.now();
      const seen: PresenceEvent[] = [];
      const stop = b.subscribe((event) => {
        if (event.room === room) seen.push(event);
      });
      const unwatch1 = b.watchRoom(room);
      const unwatch2 = b.watchRoom(room);
      cleanups.push(stop, unwatch1, unwatch2);
      await a.join(room, "c1", "i1", {}, now);
      await expectCount(seen, 1);
      unwatch1();
      unwatch1();
      // One watch remains, so events still arrive.
      await a.setState(room, "c1", { kind: "set", state: 1 }, null, now);
      await expectCount(seen, 2);
      unwatch2();
      unwatch2();
      assert.deepEqual(seen.map((e) => e.seq), [1, 2]);
    });

    // -- instance leases --------------------------------------------------------

    it("sweep() on survivors reaps a lapsed instance exactly once", async () => {
      const r1 = uid("room");
      const r2 = uid("room");
      const dead = uid("inst");
      const alive = uid("inst");
      const [d1, d2, s1] = [uid("d1"), uid("d2"), uid("s1")];
      const now = Date.now();
      const remote = collect(b, r1, r2);
      await a.renewLease(dead, 1_000, now);
      await b.renewLease(alive, 60_000, now);
      await a.join(r1, d1, dead, { d: 1 }, now);
      await a.join(r1, d2, dead, {}, now);
      await a.join(r2, d1, dead, {}, now);
      await b.join(r1, s1, alive, {}, now);
      // Its state expires after the reap, which must not announce it again.
      await a.setState(
        r1,
        d1,
        { kind: "set", state: { s: 1 } },
        now + 3_000,
        now,
      );
      await a.setMetadata(d1, dead, { user: "d" });
      await b.setMetadata(s1, alive, { user: "s" });
      await expectCount(remote, 5);

      await Promise.all([a.sweep(now + 999), b.sweep(now + 400)]);
      await expectCount(remote, 5);
      await Promise.all([b.sweep(now + 1_000), a.sweep(now + 1_000)]);
      await expectCount(remote, 8);
      const leaves = remote.slice(5);
      for (const event of leaves) {
        assert.equal(event.type, "leave");
        assert.ok(event.type === "leave" && event.reason === "instance");
        assert.equal(event.timestamp, now + 1_000);
      }
      assert.deepEqual(
        leaves.map((e) => `${e.room}:${e.connectionId}`).sort(),
        [`${r1}:${d1}`, `${r1}:${d2}`, `${r2}:${d1}`].sort(),
      );
      const r1Seqs = ofRoom(remote, r1).map((e) => e.seq);
      assert.deepEqual(r1Seqs, [1, 2, 3, 4, 5, 6]);
      assert.deepEqual(ofRoom(remote, r2).map((e) => e.seq), [1, 2]);

      const snap1 = await a.snapshot(r1, now + 1_000);
      assert.deepEqual(snap1.present.map((p) => p.id), [s1]);
      assert.equal(snap1.states.size, 0);
      assert.deepEqual((await b.snapshot(r2, now + 1_000)).present, []);
      assert.equal(await b.getMetadata(d1), null);
      assert.deepEqual(await a.getMetadata(s1), { user: "s" });

      await Promise.all([a.sweep(now + 5_000), b.sweep(now + 5_000)]);
      await expectCount(remote, 8);
    });

    it("renewLease() keeps an instance from being reaped", async () => {
      const room = uid("room");
      const inst = uid("inst");
      const now = Date.now();
      const local = collect(a, room);
      await a.renewLease(inst, 1_000, now);
      await a.join(room, "c1", inst, {}, now);
      await a.renewLease(inst, 1_000, now + 800);
      await Promise.all([a.sweep(now + 1_500), b.sweep(now + 1_500)]);
      await expectCount(local, 1);
      assert.equal((await b.snapshot(room, now + 1_500)).present.length, 1);
      await b.sweep(now + 1_800);
      await expectCount(local, 2);
      assert.ok(local[1]?.type === "leave" && local[1].reason === "instance");
    });

    it("an instance that never had a lease is never reaped", async () => {
      const room = uid("room");
      const inst = uid("inst");
      const now = Date.now();
      await a.join(room, "c1", inst, {}, now);
      await a.setMetadata("c1-" + inst, inst, { k: 1 });
      await Promise.all([a.sweep(now + 1e10), b.sweep(now + 1e10)]);
      assert.equal((await b.snapshot(room, now + 1e10)).present.length, 1);
      assert.deepEqual(await b.getMetadata("c1-" + inst), { k: 1 });
    });

    it("releaseLease() removes the instance's entries at once with reason close", async () => {
      const r1 = uid("room");
      const r2 = uid("room");
      const inst = uid("inst");
      const other = uid("inst");
      const cid = uid("conn");
      const now = Date.now();
      const local = collect(a, r1, r2);
      const remote = collect(b, r1, r2);
      await a.renewLease(inst, 60_000, now);
      await a.join(r1, cid, inst, {}, now);
      await a.join(r2, cid, inst, {}, now);
      await a.join(r2, "x", other, {}, now);
      await a.setState(r2, cid, { kind: "set", state: 1 }, null, now);
      await a.setMetadata(cid, inst, { k: 1 });
      await a.releaseLease(inst);
      assert.equal(local.length, 6);
      const leaves = local.slice(4);
      for (const event of leaves) {
        assert.ok(event.type === "leave" && event.reason === "close");
        assert.equal(event.connectionId, cid);
      }
      assert.deepEqual(leaves.map((e) => e.room).sort(), [r1, r2].sort());
      await expectCount(remote, 6);
      assert.deepEqual((await b.snapshot(r1, now)).present, []);
      const snap2 = await b.snapshot(r2, now);
      assert.deepEqual(snap2.present.map((p) => p.id), ["x"]);
      assert.equal(snap2.states.size, 0);
      assert.equal(await b.getMetadata(cid), null);
      await Promise.all([a.sweep(now + 120_000), b.sweep(now + 120_000)]);
      await expectCount(remote, 6);
      // Releasing again, or releasing an unknown instance, does nothing.
      await a.releaseLease(inst);
      await b.releaseLease(uid("inst"));
      await expectCount(remote, 6);
    });

    it("a reaped instance's metadata is gone and others' stays", async () => {
      const dead = uid("inst");
      const alive = uid("inst");
      const c1 = uid("conn");
      const c2 = uid("conn");
      const c3 = uid("conn");
      const now = Date.now();
      await a.renewLease(dead, 100, now);
      await b.renewLease(alive, 100_000, now);
      await a.setMetadata(c1, dead, { n: 1 });
      await b.setMetadata(c2, alive, { n: 2 });
      // Metadata moves with its connection to another instance.
      await a.setMetadata(c3, dead, { n: 3 });
      await b.setMetadata(c3, alive, { n: 33 });
      await b.sweep(now + 100);
      assert.equal(await a.getMetadata(c1), null);
      assert.deepEqual(await a.getMetadata(c2), { n: 2 });
      assert.deepEqual(await a.getMetadata(c3), { n: 33 });
    });

    it("owned() lists exactly an instance's memberships and the metadata it wrote", async () => {
      const mine = uid("inst");
      const theirs = uid("inst");
      const [r1, r2] = [uid("room"), uid("room")];
      const [c1, c2, c3, c4] = [uid("conn"), uid("conn"), uid("conn"), uid("conn")];
      const now = Date.now();
      await a.join(r1, c1, mine, {}, now);
      await a.join(r2, c1, mine, {}, now);
      await b.join(r1, c2, theirs, {}, now);
      await a.join(r2, c3, mine, {}, now);
      await a.setMetadata(c1, mine, { n: 1 });
      await a.setMetadata(c3, mine, { n: 3 });
      await b.setMetadata(c2, theirs, { n: 2 });
      // Metadata moves with its connection to another instance.
      await a.setMetadata(c4, mine, { n: 4 });
      await b.setMetadata(c4, theirs, { n: 44 });
      const sorted = (
        o: { members: { room: string; connectionId: string }[]; metadata: string[] },
      ) => ({
        members: o.members.map((m) => `${m.room}/${m.connectionId}`).sort(),
        metadata: [...o.metadata].sort(),
      });
      assert.deepEqual(sorted(await b.owned!(mine)), {
        members: [`${r1}/${c1}`, `${r2}/${c1}`, `${r2}/${c3}`].sort(),
        metadata: [c1, c3].sort(),
      });
      assert.deepEqual(sorted(await a.owned!(theirs)), {
        members: [`${r1}/${c2}`],
        metadata: [c2, c4].sort(),
      });
      // A leave and a deleted metadata entry are no longer owned.
      await a.leave(r2, c1, "leave", now);
      await a.deleteMetadata(c3);
      assert.deepEqual(sorted(await a.owned!(mine)), {
        members: [`${r1}/${c1}`, `${r2}/${c3}`].sort(),
        metadata: [c1],
      });
      assert.deepEqual(sorted(await a.owned!(uid("inst"))), { members: [], metadata: [] });
    });

    // -- consistency under a random workload ------------------------------------

    it("many rooms and members stay consistent with a model under random writes", async () => {
      const rooms = Array.from({ length: 5 }, () => uid("room"));
      const conns = Array.from({ length: 50 }, (_, i) => `c${i}`);
      const base = Date.now();
      const steps = 600;
      const rand = random(0x5eed);
      const pick = <T>(list: T[]): T => list[Math.floor(rand() * list.length)]!;
      const remote = collect(b, ...rooms);

      interface RoomModel {
        seq: number;
        members: Map<string, Metadata>;
        states: Map<string, { value: unknown; expiresAt: number }>;
      }
      const model = new Map<string, RoomModel>(
        rooms.map((
          r,
        ) => [r, { seq: 0, members: new Map(), states: new Map() }]),
      );
      let produced = 0;

      async function check(now: number): Promise<void> {
        for (const room of rooms) {
          const m = model.get(room)!;
          const snap = await (rand() < 0.5 ? a : b).snapshot(room, now);
          assert.equal(snap.seq, m.seq, `seq of ${room}`);
          assert.deepEqual(
            snap.present,
            [...m.members].map(([id, meta]) => ({ id, meta })),
          );
          const states = new Map<string, unknown>();
          for (const [id, s] of m.states) {
            if (s.expiresAt > now) states.set(id, s.value);
          }
          assert.deepEqual(snap.states, states);
        }
      }

      for (let step = 0; step < steps; step++) {
        const now = base + step;
        const store = rand() < 0.5 ? a : b;
        const room = pick(rooms);
        const cid = pick(conns);
        const m = model.get(room)!;
        const op = rand();
        // Expiries fall after the last step, so the model needs no sweeps.
        const expiresAt = rand() < 0.5 ? base + steps + Math.floor(rand() * 400) : null;
        if (op < 0.35) {
          const meta = { n: step };
          const result = await store.join(room, cid, "i1", meta, now);
          if (m.members.has(cid)) assert.equal(result, null);
          else {
            m.members.set(cid, meta);
            assert.equal(asEvent(result).seq, ++m.seq);
            produced++;
          }
        } else if (op < 0.55) {
          const result = await store.leave(room, cid, "leave", now);
          if (!m.members.has(cid)) assert.equal(result, null);
          else {
            m.members.delete(cid);
            m.states.delete(cid);
            assert.equal(asEvent(result).seq, ++m.seq);
            produced++;
          }
        } else {
          const kind = op < 0.75 ? "set" : op < 0.9 ? "patch" : "clear";
          const write = kind === "set"
            ? { kind, state: { v: step, tag: pick(["a", "b"]) } } as const
            : kind === "patch"
            ? {
              kind,
              patch: { p: step, tag: rand() < 0.3 ? null : "c" },
            } as const
            : { kind } as const;
          const result = await store.setState(room, cid, write, expiresAt, now);
          if (!m.members.has(cid)) {
            assert.equal(result, "not_member");
            continue;
          }
          const current = m.states.get(cid);
          if (write.kind === "clear") {
            if (current === undefined) assert.equal(result, null);
            else {
              m.states.delete(cid);
              assert.equal(asEvent(result).seq, ++m.seq);
              produced++;
            }
            continue;
          }
          let value: unknown;
          if (write.kind === "set") value = write.state;
          else {
            const prev = {
              ...(current?.value as Record<string, unknown> ?? {}),
            };
            for (const [k, v] of Object.entries(write.patch)) {
              if (v === null) delete prev[k];
              else prev[k] = v;
            }
            value = prev;
          }
          m.states.set(cid, { value, expiresAt: expiresAt ?? Infinity });
          const event = asEvent(result);
          assert.equal(event.seq, ++m.seq);
          assert.ok(event.type === "state");
          assert.deepEqual(event.state, value);
          produced++;
        }
        if (step % 100 === 99) await check(now);
      }

      const end = base + steps + 200;
      await check(base + steps);
      await check(end);
      await expectCount(remote, produced);
      for (const room of rooms) {
        const seqs = ofRoom(remote, room).map((e) => e.seq);
        assert.deepEqual(
          seqs,
          Array.from({ length: seqs.length }, (_, i) => i + 1),
        );
      }

      // Sweeping expires exactly the states the model says are due.
      let due = 0;
      for (const m of model.values()) {
        for (const [id, s] of m.states) {
          if (s.expiresAt <= end) {
            m.states.delete(id);
            m.seq++;
            due++;
          }
        }
      }
      assert.ok(due > 0, "the workload should leave some states due");
      await Promise.all([a.sweep(end), b.sweep(end)]);
      await expectCount(remote, produced + due);
      for (const event of remote.slice(produced)) {
        assert.ok(event.type === "state" && event.expired === true);
      }
      await check(end);
    });

    // -- cluster-wide queries: counts, rooms, users --------------------------

    it("count() follows joins, leaves and reaps; users are distinct, anonymous ones count once each", async () => {
      const room = uid("count");
      const now = Date.now();
      assert.deepEqual(await b.count(room, now), { connections: 0, users: 0 });
      const j1 = asEvent(await a.join(room, "c1", "i1", {}, now, "ada"));
      const j2 = asEvent(await b.join(room, "c2", "i2", {}, now, "ada"));
      await a.join(room, "c3", "i1", {}, now);
      await b.join(room, "c4", "i2", {}, now, "bob");
      assert.ok(j1.type === "join" && j2.type === "join");
      assert.equal(j1.user, "ada");
      assert.equal(j1.firstOfUser, true);
      assert.equal(j2.user, "ada");
      assert.equal(j2.firstOfUser, undefined, "ada's second tab is not her first");
      assert.deepEqual(await b.count(room, now), { connections: 4, users: 3 });
      assert.deepEqual(await a.count(room, now), { connections: 4, users: 3 });

      const snap = await b.snapshot(room, now);
      assert.deepEqual(
        [...(snap.users ?? new Map())].sort(),
        [["c1", "ada"], ["c2", "ada"], ["c4", "bob"]],
      );

      const l1 = asEvent(await b.leave(room, "c1", "leave", now));
      assert.ok(l1.type === "leave");
      assert.equal(l1.user, "ada");
      assert.equal(l1.lastOfUser, undefined, "ada still has c2");
      assert.deepEqual(await a.count(room, now), { connections: 3, users: 3 });
      const l2 = asEvent(await a.leave(room, "c2", "close", now));
      assert.ok(l2.type === "leave");
      assert.equal(l2.lastOfUser, true);
      assert.deepEqual(await a.count(room, now), { connections: 2, users: 2 });

      // A released instance's members leave the counters too.
      await b.releaseLease("i2");
      assert.deepEqual(await a.count(room, now), { connections: 1, users: 1 });
      await a.leave(room, "c3", "leave", now);
      assert.deepEqual(await b.count(room, now), { connections: 0, users: 0 });
    });

    it("listRooms() pages non-empty rooms by prefix, in name order", async () => {
      const p = uid("list") + ":";
      const now = Date.now();
      const names = ["d", "a", "c", "b", "e"].map((n) => p + n);
      for (const [i, name] of names.entries()) {
        await (i % 2 ? a : b).join(name, "c1", "i1", {}, now);
      }
      await a.join(p.slice(0, -1) + "-other", "c1", "i1", {}, now); // shares no prefix
      const first = await b.listRooms({ prefix: p, limit: 2 });
      assert.deepEqual(first.rooms, [p + "a", p + "b"]);
      assert.ok(first.cursor !== null);
      const second = await a.listRooms({ prefix: p, limit: 2, cursor: first.cursor });
      assert.deepEqual(second.rooms, [p + "c", p + "d"]);
      const third = await b.listRooms({ prefix: p, limit: 2, cursor: second.cursor! });
      assert.deepEqual(third, { rooms: [p + "e"], cursor: null });
      assert.deepEqual((await a.listRooms({ prefix: p })).rooms, [...names].sort());

      // An emptied room is no longer listed.
      await a.leave(p + "c", "c1", "leave", now);
      assert.deepEqual((await b.listRooms({ prefix: p })).rooms, [
        p + "a",
        p + "b",
        p + "d",
        p + "e",
      ]);
      for (const name of [...names, p.slice(0, -1) + "-other"]) {
        await a.leave(name, "c1", "leave", now);
      }
      assert.deepEqual(await b.listRooms({ prefix: p }), { rooms: [], cursor: null });
    });

    it("userRooms() lists where a user has a connection, across handles and reaps", async () => {
      const user = uid("user");
      const r1 = uid("ur-a");
      const r2 = uid("ur-b");
      const now = Date.now();
      assert.deepEqual(await a.userRooms(user), []);
      await a.join(r1, "c1", "i1", {}, now, user);
      const doomed = uid("inst");
      await b.join(r2, "c2", doomed, {}, now, user);
      await b.join(r2, "c3", doomed, {}, now, user);
      assert.deepEqual(await a.userRooms(user), [r1, r2].sort());
      await a.leave(r2, "c2", "leave", now);
      assert.deepEqual(await b.userRooms(user), [r1, r2].sort(), "c3 still holds r2");
      await a.renewLease(doomed, 10, now);
      await b.sweep(now + 1_000); // its lease lapsed: c3 is reaped (by another handle)
      assert.deepEqual(await b.userRooms(user), [r1]);
      await b.leave(r1, "c1", "leave", now);
      assert.deepEqual(await a.userRooms(user), []);
    });

    it("counts, rooms and users agree with the snapshots under a seeded random workload (seed 12)", async () => {
      const rand = random(12);
      const p = uid("qrand") + ":";
      const rooms = [0, 1, 2, 3].map((i) => p + i);
      const users = ["u1", "u2", "u3", null];
      const now = Date.now();
      const who = new Map<string, string | null>();
      for (let step = 0; step < 300; step++) {
        const room = rooms[Math.floor(rand() * rooms.length)]!;
        const cid = `c${Math.floor(rand() * 12)}`;
        const store = rand() < 0.5 ? a : b;
        if (rand() < 0.55) {
          // One connection keeps one user in every room it joins.
          if (!who.has(cid)) who.set(cid, users[Math.floor(rand() * users.length)]!);
          await store.join(room, cid, rand() < 0.5 ? "i1" : "i2", {}, now, who.get(cid));
        } else await store.leave(room, cid, "leave", now);
      }
      const listed = (await a.listRooms({ prefix: p })).rooms;
      const byUser = new Map<string, Set<string>>();
      for (const room of rooms) {
        const snap = await b.snapshot(room, now);
        const count = await a.count(room, now);
        const distinct = new Set(snap.present.map((e) => snap.users?.get(e.id) ?? `anon:${e.id}`));
        assert.deepEqual(count, { connections: snap.present.length, users: distinct.size }, room);
        assert.equal(listed.includes(room), snap.present.length > 0, room);
        for (const e of snap.present) {
          const u = snap.users?.get(e.id);
          assert.equal(u ?? null, who.get(e.id), `user of ${e.id}`);
          if (u) (byUser.get(u) ?? byUser.set(u, new Set()).get(u)!).add(room);
        }
      }
      for (const u of ["u1", "u2", "u3"]) {
        assert.deepEqual(
          await b.userRooms(u).then((r) => r.filter((x) => x.startsWith(p))),
          [...(byUser.get(u) ?? [])].sort(),
          u,
        );
      }
      for (const room of rooms) {
        for (const cid of who.keys()) await a.leave(room, cid, "leave", now);
      }
    });

    // -- presence hook queues --------------------------------------------------

    it("a hook queue takes every event of its types from any handle, once, with a stable key", async () => {
      const hook = uid("hook");
      const room = uid("hooked");
      const now = Date.now();
      await a.registerHook(hook, ["join", "leave"]);
      cleanups.push(() => void a.dropHook(hook).catch(() => {}));
      await a.join(room, "c1", "i1", {}, now, "ada");
      await b.join(room, "c2", "i2", {}, now);
      await a.setState(room, "c1", { kind: "set", state: 1 }, null, now); // not a hooked type
      await b.leave(room, "c2", "leave", now);
      const claimed = await b.claimHooks(hook, now, 30_000, 10);
      assert.deepEqual(
        claimed.map((d) => [d.event.type, d.event.connectionId, d.attempt]),
        [["join", "c1", 1], ["join", "c2", 1], ["leave", "c2", 1]],
      );
      for (const d of claimed) assert.equal(d.key, `${room}:${d.event.seq}:${d.event.timestamp}`);
      assert.equal(claimed[0]!.event.type === "join" && claimed[0]!.event.user, "ada");
      // Claimed events are hidden until their lease ends.
      assert.deepEqual(await a.claimHooks(hook, now + 1_000, 30_000, 10), []);
      await a.settleHook(hook, claimed[0]!.key, null); // delivered
      await b.settleHook(hook, claimed[1]!.key, now + 5_000); // failed: retry in 5 s
      assert.deepEqual(await a.claimHooks(hook, now + 4_000, 30_000, 10), []);
      const retry = await a.claimHooks(hook, now + 5_000, 30_000, 10);
      assert.deepEqual(retry.map((d) => [d.key, d.attempt]), [[claimed[1]!.key, 2]]);
      // The unsettled one comes back once its lease lapsed, same key, next attempt.
      const lapsed = await b.claimHooks(hook, now + 30_001, 30_000, 10);
      assert.deepEqual(lapsed.map((d) => [d.key, d.attempt]), [[claimed[2]!.key, 2]]);
      await a.settleHook(hook, retry[0]!.key, null);
      await a.settleHook(hook, lapsed[0]!.key, null);
      assert.deepEqual(await b.claimHooks(hook, now + 100_000, 30_000, 10), []);
    });

    it("a reap queues exactly one leave per reaped member; a dropped hook queues nothing", async () => {
      const hook = uid("hook");
      const room = uid("reaped");
      const now = Date.now();
      await b.registerHook(hook, ["leave", "state"]);
      const doomed = uid("inst");
      await a.renewLease(doomed, 10, now);
      for (let i = 0; i < 5; i++) await a.join(room, `c${i}`, doomed, {}, now);
      // Both handles sweep the lapsed lease, concurrently.
      await Promise.all([a.sweep(now + 1_000), b.sweep(now + 1_000)]);
      const claimed = (await a.claimHooks(hook, now + 1_000, 30_000, 1000))
        .filter((d) => d.event.room === room);
      assert.deepEqual(
        claimed.map((d) => d.event.type === "leave" && d.event.reason).filter(Boolean),
        ["instance", "instance", "instance", "instance", "instance"],
      );
      assert.deepEqual(new Set(claimed.map((d) => d.event.connectionId)).size, 5);
      await b.dropHook(hook);
      await a.join(room, "c9", "i1", {}, now);
      await a.leave(room, "c9", "leave", now);
      assert.deepEqual(await b.claimHooks(hook, now + 100_000, 30_000, 100), []);
    });
  });
}
