// Two Deno processes sharing one Deno KV file: clients on different instances
// see each other, snapshots agree, and a kill -9 leaves no ghost. Deno only.
/// <reference lib="deno.unstable" />

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { RawClient } from "./_harness.ts";
import { type KvNode, spawnKvNode, stopKvNode } from "./_kv_cluster.ts";

const D = (globalThis as unknown as { Deno?: typeof Deno }).Deno;
const IS_DENO = D !== undefined && !("Bun" in globalThis);

const LEASE_TTL_MS = 2_000;
const POLL_MS = 100;
/** Generous for events that cross instances through polling. */
const CROSS_MS = 5_000;
const ROOM = "doc";

type Tuple = [number, string, string, unknown];

function tuples(client: RawClient, from = 0): Tuple[] {
  const out: Tuple[] = [];
  for (const f of client.frames.slice(from)) {
    if (f.t === "ev" && f.r === ROOM) out.push(...(f.e as Tuple[]));
  }
  return out;
}

/** Wait until `client` got an event tuple for ROOM matching `match`. */
async function waitEvent(
  client: RawClient,
  match: (t: Tuple) => boolean,
  timeoutMs = CROSS_MS,
  from = 0,
): Promise<Tuple> {
  let index = -1;
  await client.waitFor((f) => {
    index++;
    return index >= from && f.t === "ev" && f.r === ROOM &&
      (f.e as Tuple[]).some(match);
  }, timeoutMs);
  return tuples(client, from).find(match)!;
}

async function open(url: string, name: string): Promise<RawClient> {
  const client = new RawClient(`${url}?name=${name}`);
  await client.opened;
  return client;
}

if (!IS_DENO) {
  console.log(
    "[cluster_kv] SKIPPED: the Deno KV cluster needs Deno; it runs under `deno test`",
  );
  describe.skip("Deno KV cluster (Deno only)", () => {
    it("runs under Deno", () => {});
  });
} else {
  describe("Deno KV cluster: two processes on one KV file", () => {
    let dir = "";
    let a: KvNode | undefined;
    let b: KvNode | undefined;
    const clients: RawClient[] = [];
    const client = async (node: KvNode, name: string) => {
      const c = await open(node.url, name);
      clients.push(c);
      return c;
    };

    before(async () => {
      dir = await D!.makeTempDir({ prefix: "presently-cluster-kv-" });
      const path = `${dir}/presence.sqlite3`;
      const env = { LEASE_TTL_MS: LEASE_TTL_MS, POLL_MS: POLL_MS };
      [a, b] = await Promise.all([
        spawnKvNode(path, env),
        spawnKvNode(path, env),
      ]);
    });

    after(async () => {
      for (const c of clients) {
        try {
          await Promise.race([
            c.close(),
            new Promise((r) => setTimeout(r, 500)),
          ]);
        } catch { /* already closed */ }
      }
      await Promise.all([stopKvNode(a), stopKvNode(b, "SIGKILL")]);
      if (dir) D!.removeSync(dir, { recursive: true });
    });

    it("clients on different instances see joins, states, expiry, metadata, leaves and a crash", async () => {
      const nodeA = a!;
      const nodeB = b!;
      const ada = await client(nodeA, "ada");
      const bob = await client(nodeB, "bob");

      // Joins.
      const adaJoin = await ada.request("join", { room: ROOM, sub: true });
      assert.equal(adaJoin.t, "ok");
      const bobJoin = await bob.request("join", { room: ROOM, sub: true });
      assert.equal(bobJoin.t, "ok");
      assert.deepEqual(bobJoin.present, [
        { id: ada.cid, meta: { name: "ada" } },
        { id: bob.cid, meta: { name: "bob" } },
      ]);
      const joined = await waitEvent(ada, (t) => t[1] === "j" && t[2] === bob.cid);
      assert.deepEqual(joined[3], { name: "bob" });

      // States, both ways.
      await bob.request("state", { room: ROOM, state: { typing: true } });
      const typing = await waitEvent(ada, (t) => t[1] === "s" && t[2] === bob.cid);
      assert.deepEqual(typing[3], { typing: true });
      await ada.request("state", {
        room: ROOM,
        state: { cursor: [1, 2] },
        expireAfter: 300,
      });
      const cursor = await waitEvent(
        bob,
        (t) => t[1] === "s" && t[2] === ada.cid && t[3] !== null,
      );
      assert.deepEqual(cursor[3], { cursor: [1, 2] });
      // ... and the expiry, swept by either instance, reaches the other.
      await waitEvent(bob, (t) => t[1] === "s" && t[2] === ada.cid && t[3] === null);

      // Metadata across instances.
      const bobMeta = await ada.request("meta", { cid: bob.cid });
      assert.deepEqual(bobMeta.meta, { name: "bob" });
      const adaMeta = await bob.request("meta", { cid: ada.cid });
      assert.deepEqual(adaMeta.meta, { name: "ada" });

      // Snapshots from each instance agree.
      const carol = await client(nodeA, "carol");
      const dave = await client(nodeB, "dave");
      const view = (s: Record<string, unknown>) => JSON.stringify([s.seq, s.present, s.states]);
      let onA = "";
      let onB = "";
      const deadline = Date.now() + CROSS_MS;
      do {
        const [sa, sb] = await Promise.all([
          carol.request("sub", { room: ROOM }),
          dave.request("sub", { room: ROOM }),
        ]);
        onA = view(sa);
        onB = view(sb);
        if (onA === onB) break;
        await new Promise((r) => setTimeout(r, 50));
      } while (Date.now() < deadline);
      assert.equal(onA, onB, "snapshots on both instances agree");
      const snap = await carol.request("sub", { room: ROOM });
      assert.deepEqual(snap.present, [
        { id: ada.cid, meta: { name: "ada" } },
        { id: bob.cid, meta: { name: "bob" } },
      ]);
      assert.deepEqual(snap.states, [[bob.cid, { typing: true }]]);

      // An explicit leave.
      await bob.request("leave", { room: ROOM });
      await waitEvent(ada, (t) => t[1] === "l" && t[2] === bob.cid);
      await waitEvent(carol, (t) => t[1] === "l" && t[2] === bob.cid);

      // Crash: bob (rejoined) and eve live on B; B is killed with SIGKILL.
      await bob.request("join", { room: ROOM });
      const eve = await client(nodeB, "eve");
      await eve.request("join", { room: ROOM });
      await eve.request("state", { room: ROOM, state: "here" });
      const dead = [bob.cid, eve.cid];
      for (const cid of dead) {
        await waitEvent(ada, (t) => t[1] === "j" && t[2] === cid);
        await waitEvent(carol, (t) => t[1] === "j" && t[2] === cid);
      }
      const fromAda = ada.frames.length;
      const fromCarol = carol.frames.length;
      const killedAt = performance.now();
      nodeB.child.kill("SIGKILL");
      await nodeB.child.status;
      const bound = LEASE_TTL_MS + 1_000 + POLL_MS;
      for (const [sub, from] of [[ada, fromAda], [carol, fromCarol]] as const) {
        for (const cid of dead) {
          const left = killedAt + bound - performance.now();
          await waitEvent(
            sub,
            (t) => t[1] === "l" && t[2] === cid,
            Math.max(left, 1),
            from,
          );
        }
      }
      const cleanupMs = performance.now() - killedAt;
      console.log(
        `[cluster_kv] cleanup after kill -9: ${
          cleanupMs.toFixed(0)
        } ms (lease TTL ${LEASE_TTL_MS} ms, poll ${POLL_MS} ms, bound ${bound} ms)`,
      );
      assert.ok(cleanupMs <= bound);

      // A fresh snapshot on the survivor has no ghost.
      const frank = await client(nodeA, "frank");
      const fresh = await frank.request("sub", { room: ROOM });
      assert.deepEqual(fresh.present, [{ id: ada.cid, meta: { name: "ada" } }]);
      assert.deepEqual(fresh.states, []);
      const ghostMeta = await frank.request("meta", { cid: eve.cid });
      assert.equal(ghostMeta.meta, null);
    });
  });
}
