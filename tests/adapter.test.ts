// Adapter conformance on real sockets: the current runtime's adapter
// (Deno.serve under `deno test`, Bun.serve under `bun test`) on 127.0.0.1:0,
// driven at the wire level by a raw client.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { CloseCode, type PresenceEvent } from "../mod.ts";
import {
  RawClient,
  type Running,
  RUNTIME,
  startServer,
  upgradeStatus,
  waitUntil,
} from "./_harness.ts";
import { startProxy } from "./_proxy.ts";

/** Apply a client's view of a room: snapshot answer + later events. */
function roster(snapshot: Record<string, unknown>, events: unknown[][]): Set<string> {
  const ids = new Set((snapshot.present as { id: string }[]).map((p) => p.id));
  let seq = snapshot.seq as number;
  for (const e of events) {
    const s = e[0] as number;
    if (e[1] === "u") continue;
    assert.equal(s, seq + 1, `events arrive in order without gaps (${s} after ${seq})`);
    seq = s;
    if (e[1] === "j") {
      assert.ok(!ids.has(e[2] as string), `join for ${e[2]} is not a duplicate`);
      ids.add(e[2] as string);
    } else if (e[1] === "l") ids.delete(e[2] as string);
  }
  return ids;
}

describe(`adapter conformance (${RUNTIME})`, () => {
  let srv: Running;
  const seen: PresenceEvent[] = [];
  const opened: RawClient[] = [];
  const open = async (query = "", protocols?: string | string[]) => {
    const c = new RawClient(`${srv.url}?v=1${query}`, protocols);
    opened.push(c);
    await c.opened;
    return c;
  };

  before(async () => {
    srv = await startServer({
      leaveGraceMs: 300,
      heartbeat: { intervalMs: 2000, timeoutMs: 6000 },
      authenticate: (req) => {
        const url = new URL(req.url);
        if (url.searchParams.get("deny")) return null;
        return { name: url.searchParams.get("name") ?? "anon" };
      },
    }, (server) => {
      server.trackPresence("lobby");
      server.trackPresence(/^room:/);
      server.trackPresence("vip", { guard: (c) => c.metadata.name === "vip" });
      server.onConnection((c) => {
        if (c.metadata.name === "tagged") {
          void server.setConnectionMetadata(c, { ...c.metadata, tag: "from-onConnection" });
        }
      });
    }, () => new Response("fallback here"));
    const reader = srv.server.events().getReader();
    (async () => {
      for (;;) {
        const r = await reader.read();
        if (r.done) return;
        seen.push(r.value);
      }
    })();
  });

  after(async () => {
    for (const c of opened) c.ws.close();
    await srv.close();
  });

  it("sends hello with a connection id, a different secret token and the heartbeat", async () => {
    const a = await open();
    const hello = a.frames[0]!;
    assert.equal(hello.t, "hello");
    assert.equal(hello.v, 1);
    assert.match(hello.cid as string, /^[A-Za-z0-9_-]{22}$/);
    // The token is the id, a dot and 264 random bits: the id only finds the connection.
    assert.match(hello.token as string, /^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{44}$/);
    assert.ok((hello.token as string).startsWith(`${hello.cid}.`));
    assert.notEqual(hello.token, hello.cid);
    assert.deepEqual(hello.hb, [2000, 6000]);
    assert.equal(hello.resumed, false);
  });

  it("answers ordinary HTTP with the fallback and refuses a failed authenticate with 401", async () => {
    const http = srv.url.replace("ws://", "http://");
    const res = await fetch(http);
    assert.equal(await res.text(), "fallback here");
    // A raw upgrade request (Node's fetch refuses an Upgrade header).
    assert.equal(await upgradeStatus(srv.port, "/?deny=1"), 401);
  });

  it("echoes an offered subprotocol so browsers accept the handshake", async () => {
    const a = await open("", ["presently", "token.abc"]);
    assert.equal(a.ws.protocol, "presently");
  });

  it("closes a socket that speaks another protocol version with 4400", async () => {
    const c = new RawClient(`${srv.url}?v=99`);
    await assert.rejects(c.opened);
    assert.equal(c.closed?.code, CloseCode.badVersion);
  });

  it("subscribePresence answers the snapshot, then every later event in order, own events included", async () => {
    const a = await open("&name=alice");
    const b = await open("&name=bob");
    const snap = await a.request("join", { room: "room:1", sub: true });
    assert.equal(snap.t, "ok");
    assert.deepEqual(snap.present, [{ id: a.cid, meta: { name: "alice" } }]);
    await b.request("join", { room: "room:1" });
    const st = await b.request("state", { room: "room:1", state: { status: "typing" } });
    assert.equal(st.t, "ok");
    await b.request("state", { room: "room:1", patch: { cursor: { x: 1 } } });
    await b.request("clear", { room: "room:1" });
    await a.request("state", { room: "room:1", state: "mine" });
    await b.request("leave", { room: "room:1" });
    await a.waitFor(() => a.events("room:1").length >= 6);
    assert.deepEqual(a.events("room:1"), [
      [2, "j", b.cid, { name: "bob" }],
      [3, "s", b.cid, { status: "typing" }],
      [4, "p", b.cid, { cursor: { x: 1 } }],
      [5, "s", b.cid, null],
      [6, "s", a.cid, "mine"],
      [7, "l", b.cid],
    ]);
  });

  it("a state with expireAfter is cleared with state null once it expires", async () => {
    const a = await open();
    await a.request("join", { room: "room:exp", sub: true });
    const t0 = Date.now();
    await a.request("state", { room: "room:exp", state: { typing: true }, expireAfter: 300 });
    await a.waitFor(() => a.events("room:exp").some((e) => e[1] === "s" && e[3] === null));
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 290 && elapsed < 1500, `expired after ${elapsed} ms`);
    const snap = await a.request("sub", { room: "room:exp" });
    assert.deepEqual(snap.states, []);
  });

  it("refuses untracked rooms, publishing outside a joined room, and guarded rooms", async () => {
    const a = await open("&name=mallory");
    assert.equal((await a.request("join", { room: "elsewhere" })).code, "not_tracked");
    assert.equal((await a.request("sub", { room: "elsewhere" })).code, "not_tracked");
    assert.equal(
      (await a.request("state", { room: "room:x", state: 1 })).code,
      "not_member",
    );
    assert.equal((await a.request("clear", { room: "room:x" })).code, "not_member");
    assert.equal((await a.request("join", { room: "vip" })).code, "forbidden");
    assert.equal((await a.request("sub", { room: "vip" })).code, "forbidden");
    const v = await open("&name=vip");
    assert.equal((await v.request("join", { room: "vip", sub: true })).t, "ok");
    assert.equal(a.closed, null, "refusals never close the connection");
  });

  it("metadata set by authenticate and by the server is readable by any client", async () => {
    const a = await open("&name=tagged");
    const b = await open();
    await waitUntil(
      async () => {
        const r = await b.request("meta", { cid: a.cid });
        return (r.meta as Record<string, unknown> | null)?.tag === "from-onConnection";
      },
      3000,
      "metadata from onConnection",
    );
    assert.deepEqual((await b.request("meta", { cid: a.cid })).meta, {
      name: "tagged",
      tag: "from-onConnection",
    });
    assert.equal((await b.request("meta", { cid: "nobody" })).meta, null);
    assert.deepEqual(await srv.server.getConnectionMetadata(a.cid), {
      name: "tagged",
      tag: "from-onConnection",
    });
  });

  it("unsubscribePresence stops the updates", async () => {
    const a = await open();
    const b = await open();
    await a.request("sub", { room: "room:unsub" });
    await b.request("join", { room: "room:unsub" });
    await a.waitFor(() => a.events("room:unsub").length === 1);
    await a.request("unsub", { room: "room:unsub" });
    await b.request("state", { room: "room:unsub", state: 1 });
    await b.request("leave", { room: "room:unsub" });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(a.events("room:unsub").length, 1);
  });

  it("a clean close leaves at once and clears the state; an abrupt drop leaves after leaveGraceMs", async () => {
    const w = await open();
    await w.request("sub", { room: "room:close" });
    const clean = await open();
    await clean.request("join", { room: "room:close" });
    await clean.request("state", { room: "room:close", state: "here" });
    const t0 = Date.now();
    await clean.close(1000);
    await w.waitFor(() => w.events("room:close").some((e) => e[1] === "l" && e[2] === clean.cid));
    assert.ok(Date.now() - t0 < 250, "clean leave is immediate");

    const proxy = await startProxy(srv.port);
    try {
      const abrupt = new RawClient(proxy.url("/?v=1"));
      await abrupt.opened;
      await abrupt.request("join", { room: "room:close" });
      const t1 = Date.now();
      proxy.cut();
      await w.waitFor(
        () => w.events("room:close").some((e) => e[1] === "l" && e[2] === abrupt.cid),
        3000,
      );
      const took = Date.now() - t1;
      assert.ok(took >= 280, `abrupt leave waited for the grace window (${took} ms)`);
      assert.ok(
        took < 300 + 250 + 200,
        `abrupt leave within grace + 250 ms (+ sweep) (${took} ms)`,
      );
    } finally {
      await proxy.close();
    }
    assert.deepEqual((await srv.server.getPresenceStates("room:close")).size, 0);
  });

  it("a resume through a cut connection keeps the id, rooms and state, and others see nothing", async () => {
    const w = await open();
    await w.request("sub", { room: "room:resume" });
    const proxy = await startProxy(srv.port);
    try {
      const a = new RawClient(proxy.url("/?v=1"));
      await a.opened;
      await a.request("join", { room: "room:resume", sub: true });
      await a.request("state", { room: "room:resume", state: { s: 1 } });
      await w.waitFor(() => w.events("room:resume").length === 2);
      proxy.cut();
      await waitUntil(() => a.closed !== null, 2000, "client sees the cut");
      const b = new RawClient(proxy.url(`/?v=1&resume=${encodeURIComponent(a.token)}`));
      await b.opened;
      assert.equal(b.cid, a.cid);
      assert.equal(b.frames[0]!.resumed, true);
      assert.notEqual(b.token, a.token);
      const snap = await b.waitFor((f) => f.t === "snap" && f.r === "room:resume");
      assert.deepEqual(snap.states, [[a.cid, { s: 1 }]]);
      await new Promise((r) => setTimeout(r, 600));
      assert.equal(w.events("room:resume").length, 2, "no leave and no join");
      assert.deepEqual(await srv.server.getPresentConnections("room:resume"), [a.cid]);
      b.ws.close();
    } finally {
      await proxy.close();
    }
  });

  it("answers bad frames with stable codes and keeps serving the connection", async () => {
    const a = await open();
    a.sendRaw("not json");
    a.sendRaw(JSON.stringify({ op: "dance", id: 5 }));
    a.sendRaw(JSON.stringify({ op: "join", id: 6 }));
    a.sendRaw(
      JSON.stringify({ op: "join", id: 7, room: "room:big" }).replace(
        "}",
        `,"pad":"${"x".repeat(70_000)}"}`,
      ),
    );
    a.sendRaw(new Uint8Array([1, 2, 3]));
    a.sendRaw(
      JSON.stringify({ op: "state", id: 8, room: "room:x", state: { a: "x".repeat(20_000) } }),
    );
    const errs = () => a.frames.filter((f) => f.t === "err").map((f) => [f.id, f.code]);
    await waitUntil(() => errs().length === 6, 3000, "six errors");
    assert.deepEqual(errs(), [
      [null, "bad_request"],
      [5, "unknown_op"],
      [6, "bad_request"],
      [null, "too_large"],
      [null, "bad_request"],
      [8, "too_large"],
    ]);
    assert.equal((await a.request("join", { room: "room:ok" })).t, "ok");
  });

  it("server-side addToRoom, removeFromRoom, getPresentConnections and events() agree", async () => {
    const w = await open();
    await w.request("sub", { room: "room:server" });
    const a = await open();
    assert.equal(await srv.server.addToRoom(a.cid, "room:server"), true);
    assert.equal(await srv.server.addToRoom(a.cid, "room:server"), false);
    assert.deepEqual(await srv.server.getPresentConnections("room:server"), [a.cid]);
    assert.equal(await srv.server.removeFromRoom(a.cid, "room:server"), true);
    await w.waitFor(() => w.events("room:server").length === 2);
    const mine = seen.filter((e) => e.room === "room:server").map((
      e,
    ) => [e.type, e.connectionId, e.seq]);
    assert.deepEqual(mine, [["join", a.cid, 1], ["leave", a.cid, 2]]);
    await assert.rejects(srv.server.addToRoom(a.cid, "not-tracked"), { code: "not_tracked" });
  });

  it("a 300-client join storm: every roster converges to the truth and no join is missed", async () => {
    const N = 300;
    const clients: RawClient[] = [];
    const answers: Record<string, unknown>[] = [];
    await Promise.all(Array.from({ length: N }, async (_, i) => {
      const c = new RawClient(`${srv.url}?v=1&name=storm${i}`);
      opened.push(c);
      clients[i] = c;
      await c.opened;
      answers[i] = await c.request("join", { room: "room:storm", sub: true });
    }));
    const truth = new Set(clients.map((c) => c.cid));
    await waitUntil(
      () => clients.every((c, i) => roster(answers[i]!, c.events("room:storm")).size === N),
      20_000,
      "every roster to reach 300",
    );
    for (const [i, c] of clients.entries()) {
      assert.deepEqual(roster(answers[i]!, c.events("room:storm")), truth);
    }
    assert.deepEqual(new Set(await srv.server.getPresentConnections("room:storm")), truth);
    // Leaves converge too.
    await Promise.all(clients.slice(0, 100).map((c) => c.close()));
    const remaining = new Set(clients.slice(100).map((c) => c.cid));
    await waitUntil(
      () =>
        clients.slice(100).every((c, i) =>
          roster(answers[i + 100]!, c.events("room:storm")).size === 200
        ),
      10_000,
      "rosters to drop to 200",
    );
    for (const [i, c] of clients.slice(100).entries()) {
      assert.deepEqual(roster(answers[i + 100]!, c.events("room:storm")), remaining);
    }
  });

  it("close() closes every socket with 1001", async () => {
    const extra = await startServer({}, (s) => s.trackPresence("lobby"));
    const c = new RawClient(extra.url);
    await c.opened;
    await c.request("join", { room: "lobby" });
    await extra.close();
    await waitUntil(() => c.closed !== null, 2000, "socket closed");
    assert.equal(c.closed?.code, 1001);
  });
});
