// Regression tests for the convergence bugs of issue 10, each on real
// sockets against this runtime's adapter (the simulation in tests/sim covers
// the same properties under random faults).

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PresenceClient, type PresenceUpdate, type RestoreFailure } from "../client.ts";
import { MemoryPresenceStore, type PresenceStore } from "../mod.ts";
import type { RoomSnapshot } from "../src/store/types.ts";
import { RawClient, type Running, startServer, waitUntil } from "./_harness.ts";
import { startProxy } from "./_proxy.ts";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function server(options: Parameters<typeof startServer>[0] = {}): Promise<Running> {
  const s = await startServer(
    { leaveGraceMs: 1500, ...options },
    (p) => p.trackPresence(/^room/),
  );
  cleanups.push(() => s.close());
  return s;
}

async function client(
  url: string,
  options: ConstructorParameters<typeof PresenceClient>[1] = {},
): Promise<PresenceClient> {
  const c = new PresenceClient(url, { reconnect: { minDelayMs: 20, maxDelayMs: 200 }, ...options });
  cleanups.push(() => c.close());
  await c.connect();
  return c;
}

/** A roster kept the way the seed docs show: `present`, then join/leave updates. */
function roster() {
  const ids = new Set<string>();
  const leaves: string[] = [];
  return {
    ids,
    leaves,
    on: (u: PresenceUpdate) => {
      if (u.type === "join") ids.add(u.connectionId);
      if (u.type === "leave") {
        ids.delete(u.connectionId);
        leaves.push(u.connectionId);
      }
    },
  };
}

describe("convergence regressions (issue 10)", () => {
  it("bug 1: in a 100-client joinRoom(room, cb) storm every roster ends with all 100", async () => {
    const s = await server();
    const N = 100;
    const clients = await Promise.all(Array.from({ length: N }, () => client(s.url)));
    const rosters = clients.map(() => roster());
    const results = await Promise.all(
      clients.map((c, i) => c.joinRoom("room:storm", rosters[i]!.on)),
    );
    results.forEach((r, i) => {
      assert.ok(r.success);
      for (const p of r.present) rosters[i]!.ids.add(p.id);
    });
    await waitUntil(() => rosters.every((r) => r.ids.size === N), 10_000);
    assert.ok(rosters.every((r) => r.leaves.length === 0));
  });

  it("bug 3: switching a subscription between count and full mode keeps it live", async () => {
    const store = new MemoryPresenceStore();
    cleanups.push(() => store.close());
    const a = await server({ store });
    const b = await server({ store }); // watches only: no local member here
    const watcher = await client(b.url);
    const counts: number[] = [];
    const joins: string[] = [];
    await watcher.subscribePresence("room:m", (u) => {
      if (u.type === "count") counts.push(u.connections);
    }, { mode: "count" });
    const full = await watcher.subscribePresence("room:m", (u) => {
      if (u.type === "join") joins.push(u.connectionId);
    });
    assert.ok(full.success);
    const member = await client(a.url);
    await member.joinRoom("room:m");
    await waitUntil(() => joins.includes(member.connectionId!), 5000);
    // ...and back to count: still live.
    await watcher.subscribePresence("room:m", (u) => {
      if (u.type === "count") counts.push(u.connections);
    }, { mode: "count" });
    const second = await client(a.url);
    await second.joinRoom("room:m");
    await waitUntil(() => counts.at(-1) === 2, 5000);
  });

  it("bug 4: an instance reaped while alive joins its connections again by itself", async () => {
    const store = new MemoryPresenceStore();
    cleanups.push(() => store.close());
    const a = await server({ store, leaseTtlMs: 1200 });
    const b = await server({ store, leaseTtlMs: 1200 });
    const member = await client(a.url);
    await member.joinRoom("room:r");
    await member.publishPresenceState("room:r", { state: { typing: true } });
    const watcher = await client(b.url);
    const view = roster();
    const sub = await watcher.subscribePresence("room:r", view.on);
    for (const id of sub.present) view.ids.add(id);
    // What a stall past the lease does: a sweep finds the leases lapsed and
    // reaps them (the one leave the guarantees allow: it looks like a death).
    await store.sweep(Date.now() + 60_000);
    await waitUntil(() => view.leaves.includes(member.connectionId!), 5000);
    // The instance renews, learns it was reaped, and registers its live
    // presence again: membership and state come back by themselves.
    await waitUntil(() => view.ids.has(member.connectionId!), 5000);
    let states = new Map<string, unknown>();
    for (let i = 0; i < 100 && !states.has(member.connectionId!); i++) {
      await sleep(50);
      states = await b.server.getPresenceStates("room:r");
    }
    assert.deepEqual(states.get(member.connectionId!), { typing: true });
    const publish = await member.publishPresenceState("room:r", { state: { typing: false } });
    assert.ok(publish.success, "still a member: publishing is not refused with not_member");
    assert.deepEqual(await a.server.getPresentConnections("room:r"), [member.connectionId]);
  });

  it("bug 5: a client in 70 rooms restores every room, state and subscription after a reconnect without resume", async () => {
    const s = await server({ leaveGraceMs: 0 }); // no resume: a fresh connection
    const proxy = await startProxy(s.port);
    cleanups.push(() => proxy.close());
    const lost: RestoreFailure[] = [];
    const c = await client(proxy.url());
    c.onStatus((_s, f) => f && lost.push(f));
    const rooms = Array.from({ length: 70 }, (_, i) => `room:${i}`);
    const seen = new Map<string, Set<string>>();
    for (const room of rooms) {
      seen.set(room, new Set());
      await c.joinRoom(room, (u) => {
        if (u.type === "join") seen.get(room)!.add(u.connectionId);
      });
      await c.publishPresenceState(room, { state: { room } });
    }
    const first = c.connectionId;
    proxy.cut();
    await waitUntil(() => c.status === "open" && c.connectionId !== first, 5000);
    // Every subscription delivers again: a newcomer's join reaches all 70.
    const other = await client(s.url);
    for (const room of rooms) await other.joinRoom(room);
    await waitUntil(() => rooms.every((r) => seen.get(r)!.has(other.connectionId!)), 10_000);
    for (const room of rooms) {
      const states = await s.server.getPresenceStates(room);
      assert.deepEqual(states.get(c.connectionId!), { room }, `state in ${room}`);
    }
    assert.deepEqual(lost, []);
  });

  it("bug 5: restores marked rs are paid from the restore credit, never refused as a flood", async () => {
    const s = await server({ limits: { requestBurst: 20, requestsPerSecond: 5 } });
    const raw = new RawClient(s.url);
    cleanups.push(() => raw.ws.close());
    await raw.opened;
    // 70 rooms: a join and a state each, as a client restores them (the
    // credit is 2 x 100 rooms + 100 subscriptions by default).
    const answers = [];
    for (let i = 0; i < 70; i++) {
      answers.push(raw.request("join", { room: `room:${i}`, rs: 1 }));
      answers.push(raw.request("state", { room: `room:${i}`, state: i, rs: 1 }));
    }
    const refused = (await Promise.all(answers)).filter((a) => a.t === "err");
    assert.deepEqual(refused.map((a) => a.code), []);
    // The same burst unmarked is refused: the credit is what let it through.
    const plain = [];
    for (let i = 0; i < 40; i++) plain.push(raw.request("leave", { room: `room:${i}` }));
    const limited = (await Promise.all(plain)).filter((a) => a.code === "rate_limited");
    assert.ok(limited.length > 0);
  });

  it("bug 6: a room whose reload fails once recovers by itself", async () => {
    const inner = new MemoryPresenceStore();
    cleanups.push(() => inner.close());
    let failSnapshots = 0;
    const resets = new Set<(id?: string) => void>();
    const store: PresenceStore = {
      renewLease: (i, t, n) => inner.renewLease(i, t, n),
      releaseLease: (i) => inner.releaseLease(i),
      join: (r, c, i, m, n, u) => inner.join(r, c, i, m, n, u),
      leave: (r, c, why, n) => inner.leave(r, c, why, n),
      setState: (r, c, w, e, n) => inner.setState(r, c, w, e, n),
      snapshot(room: string, now: number): Promise<RoomSnapshot> {
        if (failSnapshots > 0) {
          failSnapshots--;
          return Promise.reject(new Error("injected snapshot failure"));
        }
        return inner.snapshot(room, now);
      },
      setMetadata: (c, i, m) => inner.setMetadata(c, i, m),
      getMetadata: (c) => inner.getMetadata(c),
      deleteMetadata: (c) => inner.deleteMetadata(c),
      count: (r, n) => inner.count(r, n),
      listRooms: (o) => inner.listRooms(o),
      userRooms: (u) => inner.userRooms(u),
      registerHook: (h, t) => inner.registerHook(h, t),
      dropHook: (h) => inner.dropHook(h),
      claimHooks: (h, n, l, m) => inner.claimHooks(h, n, l, m),
      settleHook: (h, k, r) => inner.settleHook(h, k, r),
      subscribe: (l) => inner.subscribe(l),
      watchRoom: (r) => inner.watchRoom(r),
      sweep: (n) => inner.sweep(n),
      onReset(l: (id?: string) => void) {
        resets.add(l);
        return () => void resets.delete(l);
      },
      close: () => Promise.resolve(),
    };
    const reported: string[] = [];
    const s = await server({ store, onError: (e) => reported.push(e.code) });
    const watcher = await client(s.url);
    const view = roster();
    await watcher.subscribePresence("room:w", view.on);
    const a = await client(s.url);
    await a.joinRoom("room:w");
    await waitUntil(() => view.ids.has(a.connectionId!), 5000);
    // A reload (as after a gap or a reset) whose snapshot fails once.
    failSnapshots = 1;
    for (const l of resets) l();
    await sleep(50);
    const b = await client(s.url);
    const joined = await b.joinRoom("room:w");
    assert.ok(joined.success, `join after the failed reload: ${joined.error?.code}`);
    await waitUntil(() => view.ids.has(b.connectionId!), 5000);
    assert.ok(reported.includes("store_error"), "the failure was surfaced as store_error");
    assert.ok(!reported.includes("internal"));
  });

  it("bug 7: a user at maxConnectionsPerUser resumes after a blip, with no leave seen", async () => {
    const s = await server({
      authenticate: (req) => ({ user: new URL(req.url).searchParams.get("user") ?? "anon" }),
      userKey: "user",
      limits: { maxConnectionsPerUser: 1 },
    });
    const proxy = await startProxy(s.port);
    cleanups.push(() => proxy.close());
    const ada = await client(proxy.url(), { params: { user: "ada" } });
    await ada.joinRoom("room:u");
    const watcher = await client(s.url, { params: { user: "bob" } });
    const view = roster();
    const users: string[] = [];
    await watcher.subscribePresence("room:u", (u) => {
      view.on(u);
      if (u.type === "userOffline" || u.type === "userOnline") users.push(u.type);
    }, { users: true });
    const id = ada.connectionId;
    const statuses: string[] = [];
    ada.onStatus((st) => statuses.push(st));
    proxy.cut();
    await waitUntil(() => statuses.includes("reconnecting") && ada.status === "open", 4000);
    assert.equal(ada.connectionId, id, "resumed: same connection id");
    assert.equal(ada.resumed, true);
    await sleep(1700); // past the grace period
    assert.deepEqual(view.leaves, []);
    assert.deepEqual(users, []);
  });
});

describe("convergence regressions found by the simulation", () => {
  it("a resync claiming a far-ahead sequence (q) is answered alone: nobody else is resynced", async () => {
    const s = await server();
    const bystander = new RawClient(s.url);
    const liar = new RawClient(s.url);
    cleanups.push(() => bystander.ws.close(), () => liar.ws.close());
    await Promise.all([bystander.opened, liar.opened]);
    await bystander.request("join", { room: "room:q", sub: true });
    const answer = await liar.request("sub", { room: "room:q", q: 1_000_000 });
    assert.equal(answer.t, "ok");
    await liar.request("join", { room: "room:q" });
    await bystander.waitFor((f) => f.t === "ev"); // the liar's join reached it
    assert.equal(bystander.frames.filter((f) => f.t === "snap").length, 0);
  });

  it("a count subscriber that blips gets the counts it missed once resumed", async () => {
    const s = await server({ countIntervalMs: 50 });
    const proxy = await startProxy(s.port);
    cleanups.push(() => proxy.close());
    const counter = await client(proxy.url());
    const counts: number[] = [];
    await counter.subscribePresence("room:c", (u) => {
      if (u.type === "count") counts.push(u.connections);
    }, { mode: "count" });
    const statuses: string[] = [];
    counter.onStatus((st) => statuses.push(st));
    proxy.pause(); // it cannot come back yet
    proxy.cut();
    await waitUntil(() => statuses.includes("reconnecting"), 2000);
    const a = await client(s.url);
    await a.joinRoom("room:c");
    await sleep(200); // counts go out meanwhile, to a detached connection
    proxy.resume();
    await waitUntil(() => counter.status === "open" && counter.resumed, 4000);
    await waitUntil(() => counts.at(-1) === 1, 3000, "the count it missed");
  });
});

/** A memory store whose calls of the named kinds hang while `held` (a partition). */
class PartitionedStore extends MemoryPresenceStore {
  held = false;
  #waiting: Array<() => void> = [];
  heal(): void {
    this.held = false;
    for (const go of this.#waiting.splice(0)) go();
  }
  async #gate(): Promise<void> {
    if (this.held) await new Promise<void>((r) => this.#waiting.push(r));
  }
  override async join(...args: Parameters<MemoryPresenceStore["join"]>) {
    await this.#gate();
    return super.join(...args);
  }
  override async setState(...args: Parameters<MemoryPresenceStore["setState"]>) {
    await this.#gate();
    return super.setState(...args);
  }
  override async leave(...args: Parameters<MemoryPresenceStore["leave"]>) {
    await this.#gate();
    return super.leave(...args);
  }
}

describe("store partitions (issue 11): deadlines and late landings", () => {
  it("a hung join answers store_error at the deadline; landing late, it is undone after it", async () => {
    const store = new PartitionedStore();
    const s = await server({ store, storeTimeoutMs: 300 });
    const watcher = await client(s.url);
    const seen: PresenceUpdate[] = [];
    await watcher.subscribePresence("room:p", (u) => seen.push(u));
    const c = await client(s.url);
    store.held = true;
    const t0 = Date.now();
    const r = await c.joinRoom("room:p");
    const took = Date.now() - t0;
    assert.equal(r.success, false);
    assert.equal(r.error?.code, "store_error");
    assert.ok(took >= 250 && took < 2_000, `answered after ${took} ms`);
    store.heal(); // the join lands now, after it was refused
    await waitUntil(
      async () => {
        const snap = await store.snapshot("room:p", Date.now());
        return snap.present.length === 0 && seen.some((u) => u.type === "leave");
      },
      3_000,
      "the late join undone",
    );
    assert.deepEqual(await s.server.getPresentConnections("room:p"), []);
  });

  it("a hung state write answers store_error; landing late, the own state is written again", async () => {
    const store = new PartitionedStore();
    const s = await server({ store, storeTimeoutMs: 300 });
    const c = await client(s.url);
    assert.equal((await c.joinRoom("room:q")).success, true);
    assert.equal((await c.publishPresenceState("room:q", { state: "a" })).success, true);
    store.held = true;
    const r = await c.publishPresenceState("room:q", { state: "b" });
    assert.equal(r.error?.code, "store_error");
    store.heal(); // "b" lands late; the connection was told it still has "a"
    await waitUntil(
      async () => {
        const states = await s.server.getPresenceStates("room:q");
        return states.get(c.connectionId!) === "a";
      },
      3_000,
      "the own state written again",
    );
    await sleep(200);
    assert.equal((await s.server.getPresenceStates("room:q")).get(c.connectionId!), "a");
  });
});
