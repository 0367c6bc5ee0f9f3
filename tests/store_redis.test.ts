// RedisPresenceStore: the shared conformance suite on a real redis-server, plus
// Redis-only behaviour (concurrent reaping, restarts). Runs under Deno (npm
// redis) and Bun (built-in RedisClient).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { runStoreConformance, waitFor } from "./store_conformance.ts";
import { RedisPresenceStore } from "../src/store/redis.ts";
import { PresenceError } from "../src/errors.ts";
import type { PresenceEvent } from "../src/store/types.ts";
import { redisMissing, type RedisServer, startRedis } from "./_redis.ts";
import { waitUntil } from "./_harness.ts";

const missing = redisMissing();

function prefix(): string {
  return `t${crypto.randomUUID().slice(0, 8)}:`;
}

/** Holds back one direction of a proxied connection while paused. */
interface Gate {
  pause(): void;
  resume(): void;
}

/** One client connection through a {@linkcode GateProxy}. */
interface GatedConnection {
  /** What the client sends to Redis. */
  send: Gate;
  /** What Redis sends to the client. */
  receive: Gate;
  /** Everything passed on to the client so far (latin1). */
  received(): string;
}

/** A loopback proxy to Redis whose connections a test can hold back. */
interface GateProxy {
  url: string;
  /** The connections, in the order the clients opened them. */
  connections: GatedConnection[];
  close(): Promise<void>;
}

async function startGateProxy(redisPort: number): Promise<GateProxy> {
  const sockets = new Set<net.Socket>();
  const connections: GatedConnection[] = [];
  const pipe = (from: net.Socket, to: net.Socket, log?: string[]): Gate => {
    let queue: Buffer[] | null = null;
    const write = (chunk: Buffer) => {
      log?.push(chunk.toString("latin1"));
      to.write(chunk);
    };
    from.on("data", (chunk: Buffer) => queue === null ? write(chunk) : queue.push(chunk));
    return {
      pause() {
        queue ??= [];
      },
      resume() {
        const q = queue ?? [];
        queue = null;
        for (const chunk of q) write(chunk);
      },
    };
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(redisPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.setNoDelay(true);
      s.on("error", () => {});
      s.on("close", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    const log: string[] = [];
    connections.push({
      send: pipe(client, upstream),
      receive: pipe(upstream, client, log),
      received: () => log.join(""),
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    connections,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

if (missing === null) {
  runStoreConformance("redis", async () => {
    const server = await startRedis();
    const p = prefix();
    const a = new RedisPresenceStore({ url: server.url, prefix: p });
    const b = new RedisPresenceStore({ url: server.url, prefix: p });
    return {
      stores: [a, b],
      settleMs: 30,
      async close() {
        await a.close();
        await b.close();
        await server.stop();
      },
    };
  });

  describe("RedisPresenceStore", () => {
    let server: RedisServer;
    const open: RedisPresenceStore[] = [];

    function store(p: string, errors?: unknown[]): RedisPresenceStore {
      const s = new RedisPresenceStore({
        url: server.url,
        prefix: p,
        onError: (error) => errors?.push(error),
      });
      open.push(s);
      return s;
    }

    before(async () => {
      server = await startRedis();
    });
    after(async () => {
      for (const s of open) await s.close();
      await server.stop();
    });

    it("concurrent sweeps on many handles reap a lapsed instance exactly once", async () => {
      const p = prefix();
      const handles = Array.from({ length: 4 }, () => store(p));
      const [owner, ...survivors] = handles as [
        RedisPresenceStore,
        ...RedisPresenceStore[],
      ];
      const rooms = Array.from({ length: 5 }, (_, i) => `room${i}`);
      const seen = survivors.map((s) => {
        const events: PresenceEvent[] = [];
        s.subscribe((e) => events.push(e));
        for (const room of rooms) s.watchRoom(room);
        return events;
      });
      const now = Date.now();
      await owner.renewLease("dead", 1_000, now);
      for (const room of rooms) {
        for (let c = 0; c < 20; c++) {
          await owner.join(room, `c${c}`, "dead", { c }, now);
        }
      }
      await waitFor(
        () => seen.every((events) => events.length === 100),
        3_000,
        "the joins",
      );
      await Promise.all(
        survivors.flatMap((s) => [s.sweep(now + 1_000), s.sweep(now + 1_001)]),
      );
      await waitFor(
        () => seen.every((events) => events.length === 200),
        3_000,
        "the leaves",
      );
      await new Promise((r) => setTimeout(r, 100));
      for (const events of seen) {
        assert.equal(events.length, 200);
        const leaves = events.filter((e) => e.type === "leave");
        assert.equal(leaves.length, 100);
        assert.equal(
          new Set(leaves.map((e) => `${e.room}/${e.connectionId}`)).size,
          100,
        );
        for (const room of rooms) {
          const seqs = events.filter((e) => e.room === room).map((e) => e.seq);
          assert.deepEqual(seqs, Array.from({ length: 40 }, (_, i) => i + 1));
        }
      }
      for (const room of rooms) {
        assert.deepEqual((await survivors[0]!.snapshot(room, now)).present, []);
      }
    });

    it("a patch racing another patch on another handle loses no update", async () => {
      const p = prefix();
      const a = store(p);
      const b = store(p);
      const now = Date.now();
      await a.join("r", "c1", "i1", {}, now);
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          (i % 2 ? a : b).setState(
            "r",
            "c1",
            { kind: "patch", patch: { [`k${i}`]: i } },
            null,
            now,
          )),
      );
      const state = (await a.snapshot("r", now)).states.get("c1") as Record<
        string,
        number
      >;
      assert.equal(Object.keys(state).length, 20);
    });

    it("a write on one handle fills in a remote event it has not received yet", async () => {
      const p = prefix();
      const a = store(p);
      const b = store(p);
      const seen: number[] = [];
      a.subscribe((e) => seen.push(e.seq));
      a.watchRoom("r");
      await waitFor(async () => {
        // The watch is live once a remote event arrives.
        await b.join("r", `probe${seen.length}`, "i1", {}, Date.now());
        return seen.length > 0;
      });
      await new Promise((r) => setTimeout(r, 50));
      const base = seen.at(-1)!;
      // Two writes back to back: b's event may still be in flight to a.
      await b.join("r", "x", "i1", {}, Date.now());
      await a.join("r", "y", "i1", {}, Date.now());
      assert.deepEqual(seen.slice(seen.indexOf(base)), [
        base,
        base + 1,
        base + 2,
      ]);
    });

    it("a remote event that arrives before the first catch-up does not make an earlier one drop", async () => {
      const proxy = await startGateProxy(server.port);
      const p = prefix();
      const a = store(p);
      const b = new RedisPresenceStore({ url: proxy.url, prefix: p });
      try {
        await b.getMetadata("warm-up"); // both connections are open
        assert.equal(proxy.connections.length, 2);
        // The command connection opens first, then the pub/sub one.
        const [cmd, sub] = proxy.connections as [
          GatedConnection,
          GatedConnection,
        ];
        const seen: number[] = [];
        b.subscribe((e) => {
          if (e.room === "r") seen.push(e.seq);
        });
        // The SUBSCRIBE waits in the proxy: seq 1 is only in the room's log.
        sub.send.pause();
        b.watchRoom("r");
        await a.join("r", "c1", "i1", {}, Date.now());
        // Now the catch-up waits, while seq 2 comes over pub/sub first.
        cmd.send.pause();
        const mark = sub.received().length;
        sub.send.resume();
        await waitFor(
          () => sub.received().slice(mark).includes("subscribe"),
          3_000,
          "the subscription",
        );
        await a.join("r", "c2", "i1", {}, Date.now());
        await waitFor(
          () => sub.received().slice(mark).includes("c2"),
          3_000,
          "the pub/sub message",
        );
        // Let b handle the message before its catch-up answers.
        await new Promise((r) => setTimeout(r, 30));
        cmd.send.resume();
        await waitFor(() => seen.length >= 2, 3_000, "both joins");
        await new Promise((r) => setTimeout(r, 30));
        assert.deepEqual(seen, [1, 2]);
      } finally {
        await b.close();
        await proxy.close();
      }
    });

    it("an own event that overtakes a remote one still in flight waits for it", async () => {
      const proxy = await startGateProxy(server.port);
      const p = prefix();
      const a = store(p);
      const b = new RedisPresenceStore({ url: proxy.url, prefix: p });
      try {
        await b.getMetadata("warm-up");
        const sub = proxy.connections[1]!;
        const seen: number[] = [];
        b.subscribe((e) => {
          if (e.room === "r") seen.push(e.seq);
        });
        b.watchRoom("r");
        const now = Date.now();
        await b.join("r", "c1", "i1", {}, now);
        await b.setState("r", "c1", { kind: "set", state: 1 }, now + 100, now);
        // seq 3 from a is held on its way to b; b's sweep makes seq 4.
        sub.receive.pause();
        await a.join("r", "c2", "i2", {}, now);
        await b.sweep(now + 1_000);
        assert.deepEqual(seen, [1, 2, 3, 4]);
        sub.receive.resume();
        await new Promise((r) => setTimeout(r, 30));
        assert.deepEqual(seen, [1, 2, 3, 4]);
      } finally {
        await b.close();
        await proxy.close();
      }
    });

    it("watching, unwatching and watching again at once still delivers remote events", async () => {
      const p = prefix();
      const a = store(p);
      const b = store(p);
      const seen: PresenceEvent[] = [];
      a.subscribe((e) => seen.push(e));
      a.watchRoom("r")();
      const unwatch = a.watchRoom("r");
      await a.join("r", "own", "i1", {}, Date.now());
      await b.join("r", "remote", "i2", {}, Date.now());
      await waitFor(() => seen.length === 2, 3_000, "both joins");
      assert.deepEqual(seen.map((e) => e.seq), [1, 2]);
      unwatch();
      await b.leave("r", "remote", "leave", Date.now());
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(seen.length, 2);
    });

    it("a restart of Redis triggers onReset and watched rooms work again", async () => {
      const p = prefix();
      const a = store(p);
      const b = store(p);
      let resets = 0;
      a.onReset(() => resets++);
      const seen: PresenceEvent[] = [];
      a.subscribe((e) => seen.push(e));
      a.watchRoom("lobby");
      await a.renewLease("inst-a", 60_000, Date.now());
      await b.join("lobby", "c1", "inst-b", { n: 1 }, Date.now());
      await waitFor(() => seen.length === 1, 3_000, "the first join");

      await server.restart();
      await waitUntil(() => resets > 0, 10_000, "onReset");
      // After the reset the room starts over: new events arrive again.
      await waitUntil(
        async () => {
          try {
            await b.join("lobby", "c2", "inst-b", { n: 2 }, Date.now());
          } catch {
            return false;
          }
          return seen.some((e) => e.type === "join" && e.connectionId === "c2");
        },
        10_000,
        "a join after the restart",
      );
      const snap = await a.snapshot("lobby", Date.now());
      assert.deepEqual(snap.present.map((x) => x.id), ["c2"]);
      assert.equal(resets, 1);
    });

    // The write fence (sim seed 900110): a join made while Redis is down
    // waits in the client's offline queue and would land in the restarted
    // Redis before the instance's lease there. Should the instance crash
    // then, no sweep would ever reap the member: a ghost for good.
    it("a join made while Redis restarts lands only after the instance's lease is renewed", async () => {
      const p = prefix();
      const a = store(p);
      const b = store(p);
      let resets = 0;
      a.onReset(() => resets++);
      await a.renewLease("i1", 1_000, Date.now());
      await a.join("lobby", "c0", "i1", {}, Date.now());
      let joining: Promise<PresenceEvent | null> | null = null;
      let settled = false;
      await server.restart(async () => {
        await new Promise((r) => setTimeout(r, 200)); // the client notices the drop
        joining = a.join("lobby", "c1", "i1", {}, Date.now());
        joining.then(() => (settled = true), () => (settled = true));
      });
      await waitUntil(() => resets > 0, 10_000, "onReset");
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
        10_000,
        "b reads the restarted Redis",
      );
      await a.renewLease("i1", 1_000, Date.now());
      const ev = await joining!;
      assert.equal(ev?.type, "join");
      assert.deepEqual((await b.snapshot("lobby", Date.now())).present.map((m) => m.id), ["c1"]);
      // The instance dies without renewing again: its member is reaped.
      await a.close();
      await b.sweep(Date.now() + 2_000);
      assert.deepEqual((await b.snapshot("lobby", Date.now())).present, []);
    });

    it("a join made while Redis restarts leaves nothing behind if the instance dies before renewing", async () => {
      const p = prefix();
      const a = store(p);
      const b = store(p);
      let resets = 0;
      a.onReset(() => resets++);
      await a.renewLease("i1", 1_000, Date.now());
      let joining: Promise<PresenceEvent | null> | null = null;
      await server.restart(async () => {
        await new Promise((r) => setTimeout(r, 200));
        joining = a.join("lobby", "c1", "i1", {}, Date.now());
        joining.catch(() => {});
      });
      await waitUntil(() => resets > 0, 10_000, "onReset");
      await new Promise((r) => setTimeout(r, 300));
      await a.close(); // a crash before the renewal
      await assert.rejects(joining!, (e) => e instanceof PresenceError && e.code === "closed");
      await waitUntil(
        async () => {
          try {
            await b.sweep(Date.now() + 60_000);
            return true;
          } catch {
            return false;
          }
        },
        10_000,
        "b sweeps the restarted Redis",
      );
      assert.deepEqual((await b.snapshot("lobby", Date.now())).present, []);
    });

    it("a renewal that finds its lease reaped triggers onReset", async () => {
      const p = prefix();
      const a = store(p);
      const b = store(p);
      let resets = 0;
      a.onReset(() => resets++);
      const now = Date.now();
      await a.renewLease("i1", 1_000, now);
      await a.renewLease("i1", 1_000, now + 100);
      assert.equal(resets, 0);
      await b.sweep(now + 2_000);
      await a.renewLease("i1", 1_000, now + 2_100);
      await waitFor(() => resets === 1, 1_000, "onReset");
    });

    it("close() rejects later calls with code closed", async () => {
      const s = store(prefix());
      await s.join("r", "c1", "i1", {}, Date.now());
      await s.close();
      const isClosed = (error: unknown) =>
        error instanceof PresenceError && error.code === "closed";
      await assert.rejects(s.join("r", "c2", "i1", {}, 0), isClosed);
      await assert.rejects(s.snapshot("r", 0), isClosed);
      await assert.rejects(s.getMetadata("c1"), isClosed);
      await s.close();
    });
  });
} else {
  describe("RedisPresenceStore", () => {
    it.skip(`skipped: ${missing}`, () => {});
  });
}
