// The cluster-wide queries checked under churn, on any cluster of processes
// that serve the query API at /api (tests/fixtures/cluster_node.ts on Redis,
// tests/fixtures/kv_node.ts on Deno KV): raw clients join, leave and reopen
// tabs on different instances while every instance answers the queries; at
// the end every instance's answers equal the truth the test drove.

import assert from "node:assert/strict";
import { RawClient } from "./_harness.ts";

/** `ws://127.0.0.1:<port>/` of each instance. */
export async function queriesUnderChurn(urls: string[], steps = 150): Promise<{ checks: number }> {
  const rooms = ["q:a", "q:b", "q:c"];
  const clients: RawClient[] = [];
  const api = async (url: string, path: string): Promise<unknown> => {
    const res = await fetch(`${url.replace(/^ws/, "http").replace(/\/$/, "")}/api${path}`);
    assert.equal(res.status, 200, `${url} ${path}`);
    return await res.json();
  };
  const connect = async (url: string, name: string, user: string) => {
    const c = new RawClient(`${url}?name=${name}&user=${user}`);
    clients.push(c);
    await c.opened;
    return c;
  };
  const ok = async (c: RawClient, op: string, room: string) => {
    const answer = await c.request(op, { room });
    assert.equal(answer.t, "ok", JSON.stringify(answer));
  };
  try {
    const truth = new Map<RawClient, { user: string; rooms: Set<string> }>();
    let seed = 42;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 12; i++) {
      const user = `qu${i % 5}`;
      truth.set(await connect(urls[i % urls.length]!, `q${i}`, user), { user, rooms: new Set() });
    }
    let checks = 0;
    let done = false;
    const churn = (async () => {
      for (let step = 0; step < steps; step++) {
        const live = [...truth.keys()];
        const c = live[Math.floor(rand() * live.length)]!;
        const t = truth.get(c)!;
        const room = rooms[Math.floor(rand() * rooms.length)]!;
        const roll = rand();
        if (roll < 0.5) {
          await ok(c, "join", room);
          t.rooms.add(room);
        } else if (roll < 0.9) {
          await ok(c, "leave", room);
          t.rooms.delete(room);
        } else {
          // A tab closes and another opens for the same user.
          await c.close();
          truth.delete(c);
          const next = await connect(urls[step % urls.length]!, `q${step}`, t.user);
          truth.set(next, { user: t.user, rooms: new Set() });
        }
      }
    })().finally(() => (done = true));
    // Queries answer while churning, and stay self-consistent.
    while (!done) {
      const url = urls[checks++ % urls.length]!;
      const count = await api(url, "/rooms/q%3Aa/count") as { connections: number; users: number };
      assert.ok(count.users <= count.connections);
      const room = await api(url, "/rooms/q%3Ab") as {
        members: unknown[];
        count: { connections: number };
      };
      assert.equal(room.members.length, room.count.connections);
      await api(url, "/rooms?prefix=q%3A&limit=2");
    }
    await churn;
    await new Promise((r) => setTimeout(r, 300));
    for (const url of urls) {
      for (const room of rooms) {
        const inRoom = [...truth].filter(([, t]) => t.rooms.has(room));
        const want = {
          connections: inRoom.length,
          users: new Set(inRoom.map(([, t]) => t.user)).size,
        };
        const where = `${url} ${room}`;
        assert.deepEqual(await api(url, `/rooms/${encodeURIComponent(room)}/count`), want, where);
        const details = await api(url, `/rooms/${encodeURIComponent(room)}`) as {
          members: Array<{ connectionId: string; userId: string | null }>;
          count: unknown;
        };
        assert.deepEqual(
          new Set(details.members.map((m) => `${m.connectionId} ${m.userId}`)),
          new Set(inRoom.map(([c, t]) => `${c.cid} ${t.user}`)),
          where,
        );
        assert.deepEqual(details.count, want, where);
      }
      const listed = await api(url, "/rooms?prefix=q%3A") as { rooms: string[] };
      assert.deepEqual(
        listed.rooms,
        rooms.filter((r) => [...truth.values()].some((t) => t.rooms.has(r))),
      );
      for (let u = 0; u < 5; u++) {
        const user = `qu${u}`;
        const want = new Set<string>();
        for (const t of truth.values()) {
          if (t.user === user) {
            for (const r of t.rooms) want.add(r);
          }
        }
        const got = await api(url, `/users/${user}/rooms`) as { rooms: string[] };
        assert.deepEqual(got.rooms, [...want].sort(), `${url} ${user}`);
      }
    }
    return { checks };
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
  }
}
