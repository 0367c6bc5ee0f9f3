// The server side of presence on real sockets (Deno and Bun): server-owned
// members as ordinary members to a real client, server-set states under
// validateState, the queries, user-level and failing hooks, and the HTTP
// query handler with its refusals.

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PresenceClient, type PresenceUpdate } from "../client.ts";
import { type Running, startServer, waitUntil } from "./_harness.ts";
import { PresenceError } from "../src/errors.ts";
import { MemoryPresenceStore } from "../src/store/memory.ts";
import { PresenceServer } from "../src/server/server.ts";
import type { PresenceHookEvent } from "../src/server/hooks.ts";
import { presenceHttpHandler } from "../src/server/http.ts";
import type { PresenceServerOptions } from "../src/server/options.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Server side of presence (real sockets)", () => {
  const cleanups: Array<() => Promise<void>> = [];
  /** Error codes the servers reported to `onError`. */
  let reported: string[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    reported = [];
  });

  async function server(
    options: PresenceServerOptions = {},
    fallback?: (req: Request) => Response | Promise<Response>,
  ): Promise<Running> {
    const running = await startServer(
      {
        userKey: "userId",
        authenticate: (req) => {
          const user = new URL(req.url).searchParams.get("user");
          return user ? { userId: user, email: `${user}@example.com` } : {};
        },
        privateMetadata: ["email"],
        onError: (e) => reported.push(e.code),
        ...options,
      },
      (s) => {
        s.trackPresence(/^room:/);
        s.trackPresence(/^typed:/, {
          validateState: (state: unknown) =>
            typeof state === "object" && state !== null && "typing" in state,
        });
      },
      fallback,
    );
    cleanups.push(() => running.close());
    return running;
  }

  async function client(url: string, user?: string): Promise<PresenceClient> {
    const c = new PresenceClient(user ? `${url}?user=${user}` : url);
    cleanups.push(() => c.close());
    await c.connect();
    return c;
  }

  it("a server-owned member is an ordinary member to a client: join, states, leave", async () => {
    const s = await server();
    const watcher = await client(s.url);
    const seen: PresenceUpdate[] = [];
    await watcher.subscribePresence("room:1", (u) => seen.push(u));
    const bot = await s.server.addMember("room:1", {
      metadata: { name: "Agent", email: "agent@example.com" },
      userId: "agent",
      state: { status: "idle" },
      ttlMs: null,
    });
    await waitUntil(() => seen.some((u) => u.type === "state"), 3000, "the member's state");
    const join = seen.find((u) => u.type === "join");
    assert.ok(join && join.type === "join");
    assert.equal(join.connectionId, bot.id);
    assert.deepEqual(
      join.meta,
      { name: "Agent" },
      "privateMetadata applies: the email stays private",
    );
    assert.deepEqual(await watcher.getConnectionMetadata(bot.id), { name: "Agent" });

    await bot.patch({ line: 3 });
    await bot.setState({ status: "typing" }, { expireAfter: 200 });
    await waitUntil(
      () => seen.filter((u) => u.type === "state" && u.state === null).length === 1,
      3000,
      "the expired state",
    );
    const states = seen.filter((u) => u.type === "state").map((u) => u.type === "state" && u.state);
    assert.deepEqual(states, [
      { status: "idle" },
      { status: "idle", line: 3 },
      { status: "typing" },
      null,
    ]);

    assert.deepEqual(await s.server.count("room:1"), { connections: 1, users: 1 });
    await bot.remove();
    await waitUntil(() => seen.some((u) => u.type === "leave"), 3000, "the leave");
    assert.deepEqual(await s.server.count("room:1"), { connections: 0, users: 0 });
    assert.equal(s.server.stats().members, 0);
    await assert.rejects(
      bot.setState({ status: "gone" }),
      (e: PresenceError) => e.code === "not_member",
    );
  });

  it("a member expires at its TTL unless renewed", async () => {
    const s = await server({ heartbeat: { intervalMs: 50, timeoutMs: 5000 } });
    const watcher = await client(s.url);
    const leaves: string[] = [];
    await watcher.subscribePresence("room:ttl", (u) => {
      if (u.type === "leave") leaves.push(u.connectionId);
    });
    const short = await s.server.addMember("room:ttl", { ttlMs: 300 });
    const kept = await s.server.addMember("room:ttl", { ttlMs: 300 });
    assert.equal(s.server.stats().members, 2);
    assert.equal(s.server.stats().connections, 1, "members are not connections");
    for (let i = 0; i < 6; i++) {
      await sleep(100);
      kept.renew();
    }
    await waitUntil(() => leaves.length === 1, 3000, "the lapsed member's leave");
    assert.deepEqual(leaves, [short.id]);
    assert.deepEqual(await s.server.getPresentConnections("room:ttl"), [kept.id]);
    await assert.rejects(
      s.server.addMember("room:ttl", { id: kept.id }),
      (e: PresenceError) => e.code === "bad_request",
    );
    await assert.rejects(
      s.server.addMember("nope"),
      (e: PresenceError) => e.code === "not_tracked",
    );
  });

  it("setState from the server reaches subscribers and goes through validateState", async () => {
    const s = await server();
    const ada = await client(s.url, "ada");
    const watcher = await client(s.url);
    const seen: PresenceUpdate[] = [];
    await watcher.subscribePresence("typed:1", (u) => seen.push(u));
    await ada.joinRoom("typed:1");
    const id = ada.connectionId!;
    const seq = await s.server.setState(id, "typed:1", { state: { typing: true } });
    assert.equal(typeof seq, "number");
    await s.server.setState(id, "typed:1", { patch: { typing: false }, expireAfter: 60_000 });
    await waitUntil(() => seen.filter((u) => u.type === "state").length === 2, 3000, "two states");
    assert.deepEqual((await s.server.getPresenceStates("typed:1")).get(id), { typing: false });
    await assert.rejects(
      s.server.setState(id, "typed:1", { state: { mood: "?" } }),
      (e: PresenceError) => e.code === "invalid_state",
    );
    await assert.rejects(
      s.server.setState(id, "room:elsewhere", { state: 1 }),
      (e: PresenceError) => e.code === "not_member",
    );
    await assert.rejects(
      s.server.setState("nobody", "typed:1", { state: 1 }),
      (e: PresenceError) => e.code === "not_found",
    );
    assert.equal(await s.server.setState(id, "typed:1", null), seq! + 2);
    await waitUntil(() => seen.filter((u) => u.type === "state").length === 3, 3000, "the clear");
    assert.equal((await s.server.getPresenceStates("typed:1")).has(id), false);
  });

  it("count, getRoom, listRooms and userRooms follow real clients by user", async () => {
    const s = await server();
    const ada1 = await client(s.url, "ada");
    const ada2 = await client(s.url, "ada");
    const bob = await client(s.url, "bob");
    const anon = await client(s.url);
    for (const c of [ada1, ada2, bob, anon]) await c.joinRoom("room:q1");
    await ada1.joinRoom("room:q2");
    await ada1.publishPresenceState("room:q1", { state: "here" });
    assert.deepEqual(await s.server.count("room:q1"), { connections: 4, users: 3 });
    const room = await s.server.getRoom("room:q1");
    assert.deepEqual(room.count, { connections: 4, users: 3 });
    assert.deepEqual(
      room.members.map((m) => [m.connectionId, m.userId, m.state]),
      [[ada1.connectionId, "ada", "here"], [ada2.connectionId, "ada", null], [
        bob.connectionId,
        "bob",
        null,
      ], [anon.connectionId, null, null]],
    );
    assert.deepEqual(room.members[0]!.metadata, { userId: "ada" }, "public metadata only");
    assert.deepEqual(await s.server.userRooms("ada"), ["room:q1", "room:q2"]);
    assert.deepEqual(await s.server.listRooms({ prefix: "room:q" }), {
      rooms: ["room:q1", "room:q2"],
      cursor: null,
    });
    await ada1.close();
    await waitUntil(
      async () => (await s.server.count("room:q1")).connections === 3,
      3000,
      "ada1 gone",
    );
    assert.deepEqual(await s.server.count("room:q1"), { connections: 3, users: 3 });
    assert.deepEqual(await s.server.userRooms("ada"), ["room:q1"]);
    assert.deepEqual((await s.server.listRooms({ prefix: "room:q" })).rooms, ["room:q1"]);
  });

  it("user-level hooks see a user's first join and last leave; a failing handler is retried with the same key", async () => {
    const s = await server();
    const users: PresenceHookEvent[] = [];
    s.server.onPresence((h) => void users.push(h), { level: "user", rooms: /^room:u/, pollMs: 20 });
    const attempts: PresenceHookEvent[] = [];
    s.server.onPresence((h) => {
      attempts.push(h);
      if (h.attempt < 3) throw new Error("receiver down");
    }, { name: "flaky", rooms: "room:u1", types: ["join"], pollMs: 20, retry: { baseMs: 30 } });
    assert.throws(
      () => s.server.onPresence(() => {}, { name: "flaky" }),
      (e: PresenceError) => e.code === "bad_request",
    );
    const tab1 = await client(s.url, "ada");
    const tab2 = await client(s.url, "ada");
    await tab1.joinRoom("room:u1");
    await tab2.joinRoom("room:u1");
    await tab1.leaveRoom("room:u1");
    await sleep(200);
    assert.deepEqual(
      users.map((h) => [h.type, h.userId]),
      [["join", "ada"]],
      "the second tab is not news",
    );
    await tab2.leaveRoom("room:u1");
    await waitUntil(() => users.length === 2, 3000, "ada's last leave");
    assert.deepEqual(users.map((h) => [h.level, h.type, h.userId]), [["user", "join", "ada"], [
      "user",
      "leave",
      "ada",
    ]]);
    await waitUntil(() => attempts.length >= 6, 3000, "3 attempts for each of the 2 joins");
    await sleep(150);
    const byKey = new Map<string, number[]>();
    for (const h of attempts) byKey.set(h.key, [...(byKey.get(h.key) ?? []), h.attempt]);
    assert.deepEqual(
      [...byKey.values()],
      [[1, 2, 3], [1, 2, 3]],
      "retried with the same key until it held",
    );
    assert.deepEqual(reported, ["hook_failed", "hook_failed", "hook_failed", "hook_failed"]);
  });

  it("two servers on one store deliver each event once between them", async () => {
    const store = new MemoryPresenceStore();
    const got: string[] = [];
    const servers = [0, 1].map(() => new PresenceServer({ store }));
    for (const sv of servers) {
      sv.trackPresence(/^room:/);
      sv.onPresence((h) => void got.push(h.key), { pollMs: 5, types: ["join", "leave"] });
    }
    for (let i = 0; i < 20; i++) {
      const m = await servers[i % 2]!.addMember(`room:${i % 3}`);
      await m.remove();
    }
    await waitUntil(() => got.length >= 40, 3000, "40 deliveries");
    await sleep(100);
    assert.equal(got.length, 40);
    assert.equal(new Set(got).size, 40);
    for (const sv of servers) await sv.close();
    await store.close();
  });

  it("presenceHttpHandler serves the queries, and refuses with 401/403/404/405/400", async () => {
    let api: (req: Request) => Promise<Response> = () => Promise.reject(new Error("not yet"));
    const s = await server({}, (req) => api(req));
    api = presenceHttpHandler(s.server, {
      prefix: "/presence/",
      authorize: (req, query) => {
        const auth = req.headers.get("authorization");
        if (auth === "Bearer expired") throw new PresenceError("token_expired", "Token expired");
        if (auth === null) return null;
        return auth === "Bearer admin" || (auth === "Bearer counter" && query.kind === "count");
      },
    });
    const ada = await client(s.url, "ada");
    await ada.joinRoom("room:http/1");
    const base = `http://127.0.0.1:${s.port}/presence`;
    const get = async (path: string, token?: string, method = "GET") => {
      const res = await fetch(base + path, {
        method,
        headers: token ? { authorization: `Bearer ${token}` } : {},
      });
      return { status: res.status, body: await res.json() };
    };
    const room = encodeURIComponent("room:http/1");
    assert.deepEqual(await get(`/rooms/${room}/count`, "admin"), {
      status: 200,
      body: { connections: 1, users: 1 },
    });
    const details = await get(`/rooms/${room}`, "admin");
    assert.equal(details.status, 200);
    assert.deepEqual(details.body.members, [{
      connectionId: ada.connectionId,
      userId: "ada",
      metadata: { userId: "ada" },
      state: null,
    }]);
    assert.deepEqual((await get("/rooms?prefix=room%3Ahttp", "admin")).body, {
      rooms: ["room:http/1"],
      cursor: null,
    });
    assert.deepEqual((await get("/users/ada/rooms", "admin")).body, { rooms: ["room:http/1"] });
    assert.equal((await get(`/rooms/${room}/count`, "counter")).status, 200);
    const forbidden = await get(`/rooms/${room}`, "counter");
    assert.deepEqual(forbidden, {
      status: 403,
      body: { error: { code: "forbidden", message: "Not allowed" } },
    });
    assert.equal((await get(`/rooms/${room}`)).status, 401);
    assert.equal((await get(`/rooms/${room}`, "expired")).body.error.code, "token_expired");
    assert.equal((await get("/nowhere", "admin")).status, 404);
    assert.equal((await get(`/rooms/${room}`, "admin", "POST")).status, 405);
    assert.equal((await get("/rooms?limit=0", "admin")).status, 400);
    assert.equal((await get("/rooms/%E0%A4%A/count", "admin")).status, 404, "a malformed escape");
  });
});
