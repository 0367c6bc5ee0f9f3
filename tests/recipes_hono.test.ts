// The Hono recipe of this runtime (examples/hono/deno.ts or bun.ts): ordinary
// routes answer next to the presence route, and a real client round-trips on it.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PresenceClient, type PresenceUpdate } from "../client.ts";
import { RUNTIME, waitUntil } from "./_harness.ts";

interface App {
  port: number;
  close(): Promise<void>;
}

describe(`Hono recipe (examples/hono/${RUNTIME}.ts)`, () => {
  let app: App;
  let token = "";
  const clients: PresenceClient[] = [];
  const base = () => `http://127.0.0.1:${app.port}`;

  before(async () => {
    const recipe = await import(`../examples/hono/${RUNTIME}.ts`) as {
      start(port: number, hostname: string): Promise<App>;
      apiToken(): string;
    };
    token = recipe.apiToken();
    app = await recipe.start(0, "127.0.0.1");
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await app.close();
  });

  it("serves an ordinary JSON route next to the presence route", async () => {
    const res = await fetch(`${base()}/api/health`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /application\/json/);
    assert.deepEqual(await res.json(), { ok: true, connections: 0 });
    const plain = await fetch(`${base()}/presence`);
    assert.equal(plain.status, 426, "a plain GET on the presence route asks for an upgrade");
    await plain.body?.cancel();
    const missing = await fetch(`${base()}/nope`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
  });

  it("a PresenceClient on /presence joins, subscribes and sees a state round trip", async () => {
    const url = `ws://127.0.0.1:${app.port}/presence`;
    const ada = new PresenceClient(`${url}?user=ada`);
    const bob = new PresenceClient(`${url}?user=bob`);
    clients.push(ada, bob);
    await ada.connect();
    await bob.connect();

    const seen: PresenceUpdate[] = [];
    const joined = await ada.joinRoom("room:hono", (u) => seen.push(u));
    assert.equal(joined.success, true);
    assert.deepEqual(joined.present.map((p) => p.id), [ada.connectionId]);

    assert.equal((await bob.joinRoom("room:hono")).success, true);
    const pub = await bob.publishPresenceState("room:hono", { state: { typing: true } });
    assert.equal(pub.success, true);
    await waitUntil(() => seen.some((u) => u.type === "state"), 3000, "bob's state");
    const join = seen.find((u) => u.type === "join" && u.connectionId === bob.connectionId);
    assert.deepEqual(join && "meta" in join ? join.meta : null, { userId: "bob" });
    const state = seen.find((u) => u.type === "state");
    assert.deepEqual(state && "state" in state ? state.state : null, { typing: true });

    const auth = { authorization: `Bearer ${token}` };
    const rooms = await fetch(`${base()}/api/presence/rooms/room%3Ahono`, { headers: auth });
    assert.equal(rooms.status, 200);
    const body = await rooms.json() as { members: Array<{ connectionId: string; userId: string }> };
    assert.deepEqual(
      body.members.map((m) => [m.connectionId, m.userId]).sort(),
      [[ada.connectionId, "ada"], [bob.connectionId, "bob"]].sort(),
    );
    const count = await fetch(`${base()}/api/presence/rooms/room%3Ahono/count`, { headers: auth });
    assert.deepEqual(await count.json(), { connections: 2, users: 2 });
    const listed = await fetch(`${base()}/api/presence/rooms?prefix=room%3A`, { headers: auth });
    assert.deepEqual(await listed.json(), { rooms: ["room:hono"], cursor: null });
    const mine = await fetch(`${base()}/api/presence/users/ada/rooms`, { headers: auth });
    assert.deepEqual(await mine.json(), { rooms: ["room:hono"] });
    const refused = await fetch(`${base()}/api/presence/rooms/room%3Ahono`);
    assert.equal(refused.status, 401, "no token: 401");
    await refused.body?.cancel();
    const wrong = await fetch(`${base()}/api/presence/rooms/room%3Ahono`, {
      headers: { authorization: "Bearer nope" },
    });
    assert.equal(wrong.status, 401, "a wrong token: 401");
    await wrong.body?.cancel();
  });
});
