// Spoofing attacks on the current runtime's adapter: acting for another
// connection, publishing where one is not a member, reading a guarded room,
// replaying or stealing resume tokens. Each is refused and the victim's
// presence (membership, state, socket) is untouched.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Metadata } from "../mod.ts";
import { RawClient, type Running, RUNTIME, startServer, waitUntil } from "./_harness.ts";
import { type CuttableProxy, startProxy } from "./_proxy.ts";

const USERS = new Map([["t-ada", "ada"], ["t-eve", "eve"]]);

describe(`spoofing is refused and the victim is untouched (${RUNTIME})`, () => {
  let srv: Running;
  let allowStaff = true;
  const opened: RawClient[] = [];
  const proxies: CuttableProxy[] = [];
  const open = async (query = "&token=t-ada", proxy?: CuttableProxy) => {
    const c = new RawClient(`${proxy ? proxy.url("/") : srv.url}?v=1${query}`);
    opened.push(c);
    await c.opened;
    return c;
  };
  const proxy = async () => {
    const p = await startProxy(srv.port);
    proxies.push(p);
    return p;
  };
  /** Everything the victim owns, as the server sees it. */
  const victimView = async (room: string, cid: string) => ({
    present: (await srv.server.getPresentConnections(room)).includes(cid),
    state: (await srv.server.getPresenceStates(room)).get(cid),
  });
  /** Events about `cid` a watcher saw in `room`. */
  const about = (w: RawClient, room: string, cid: string) =>
    w.events(room).filter((e) => e[2] === cid);

  before(async () => {
    srv = await startServer({
      leaveGraceMs: 3000,
      userKey: "name",
      authenticate: (req): Metadata | null => {
        const name = USERS.get(new URL(req.url).searchParams.get("token") ?? "");
        return name ? { name } : null;
      },
    }, (server) => {
      server.trackPresence(/^room:/);
      server.trackPresence("staff", { guard: (c) => allowStaff && c.metadata.name === "ada" });
      // A guard that takes its time, to keep a connection's request queue busy.
      server.trackPresence("slow", {
        guard: () => new Promise((r) => setTimeout(() => r(true), 300)),
      });
    });
  });

  after(async () => {
    for (const c of opened) c.ws.close();
    for (const p of proxies) await p.close();
    await srv.close();
  });

  it("a state or clear naming another connection id acts on the sender only", async () => {
    const room = "room:spoof-state";
    const w = await open("&token=t-eve");
    await w.request("sub", { room });
    const victim = await open();
    await victim.request("join", { room });
    await victim.request("state", { room, state: { v: 1 } });
    const eve = await open("&token=t-eve");
    await eve.request("join", { room });
    const spoofed = {
      cid: victim.cid,
      connectionId: victim.cid,
      c: victim.cid,
      conn: victim.cid,
      from: victim.cid,
    };
    const answers = [
      await eve.request("state", { room, state: { v: "hacked" }, ...spoofed }),
      await eve.request("state", { room, patch: { v: "patched" }, ...spoofed }),
      await eve.request("clear", { room, ...spoofed }),
      await eve.request("leave", { room: "room:spoof-state", ...spoofed }),
    ];
    assert.deepEqual(answers.map((a) => a.t), ["ok", "ok", "ok", "ok"]);
    await w.waitFor(() => about(w, room, eve.cid).some((e) => e[1] === "l"));
    assert.deepEqual(await victimView(room, victim.cid), { present: true, state: { v: 1 } });
    assert.deepEqual(about(w, room, victim.cid), [[1, "j", victim.cid, { name: "ada" }], [
      2,
      "s",
      victim.cid,
      { v: 1 },
    ]]);
    assert.deepEqual(about(w, room, eve.cid).map((e) => e[1]), ["j", "s", "p", "s", "l"]);
    assert.equal(victim.closed, null);
  });

  it("publishing, patching or clearing in a room one has not joined is not_member", async () => {
    const room = "room:unjoined";
    const victim = await open();
    await victim.request("join", { room });
    await victim.request("state", { room, state: "mine" });
    const eve = await open("&token=t-eve");
    const codes = [
      await eve.request("state", { room, state: "theirs", cid: victim.cid }),
      await eve.request("state", { room, patch: { x: 1 } }),
      await eve.request("clear", { room, cid: victim.cid }),
    ].map((a) => a.code);
    assert.deepEqual(codes, ["not_member", "not_member", "not_member"]);
    assert.deepEqual(await victimView(room, victim.cid), { present: true, state: "mine" });
  });

  it("subscribing to a guarded room is forbidden and leaks no event or snapshot", async () => {
    const ada = await open();
    await ada.request("join", { room: "staff" });
    const eve = await open("&token=t-eve");
    assert.equal((await eve.request("sub", { room: "staff" })).code, "forbidden");
    assert.equal((await eve.request("join", { room: "staff", sub: true })).code, "forbidden");
    assert.equal((await eve.request("sub", { room: "staff", mode: "count" })).code, "forbidden");
    await ada.request("state", { room: "staff", state: { secret: true } });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(eve.frames.filter((f) => f.r === "staff").length, 0);
    assert.deepEqual(await victimView("staff", ada.cid), {
      present: true,
      state: { secret: true },
    });
  });

  it("guards are re-checked after a resume: a revoked member is dropped from the room and its subscription", async () => {
    allowStaff = true;
    const w = await open();
    await w.request("sub", { room: "staff" });
    const p = await proxy();
    const a = await open("&token=t-ada", p);
    await a.request("join", { room: "staff", sub: true });
    p.cut();
    await waitUntil(() => a.closed !== null, 2000, "the cut");
    allowStaff = false;
    try {
      const b = await open(`&token=t-ada&resume=${encodeURIComponent(a.token)}`, p);
      assert.equal(b.frames[0]!.resumed, true);
      await w.waitFor(() => about(w, "staff", a.cid).some((e) => e[1] === "l"));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(
        b.frames.filter((f) => f.t === "snap").length,
        0,
        "no snapshot of a room it lost",
      );
      assert.equal((await b.request("state", { room: "staff", state: 1 })).code, "not_member");
    } finally {
      allowStaff = true;
    }
  });

  it("a resume token works once: replaying it gets a fresh connection, and the victim keeps its socket", async () => {
    const room = "room:replay";
    const w = await open();
    await w.request("sub", { room });
    const p = await proxy();
    const v1 = await open("&token=t-ada", p);
    await v1.request("join", { room });
    await v1.request("state", { room, state: { n: 1 } });
    p.cut();
    await waitUntil(() => v1.closed !== null, 2000, "the cut");
    const v2 = await open(`&token=t-ada&resume=${encodeURIComponent(v1.token)}`);
    assert.equal(v2.frames[0]!.resumed, true);
    assert.equal(v2.cid, v1.cid);
    // Replay the used token, while the victim is attached and after it is cut again.
    const replay = await open(`&token=t-ada&resume=${encodeURIComponent(v1.token)}`);
    assert.equal(replay.frames[0]!.resumed, false);
    assert.notEqual(replay.cid, v1.cid);
    assert.equal(v2.closed, null, "the victim's socket is not replaced");
    assert.equal((await v2.request("state", { room, patch: { m: 2 } })).t, "ok");
    const again = await open(`&token=t-ada&resume=${encodeURIComponent(v1.token)}`);
    assert.equal(again.frames[0]!.resumed, false);
    assert.deepEqual(await victimView(room, v1.cid), { present: true, state: { n: 1, m: 2 } });
    await w.waitFor(() => about(w, room, v1.cid).length >= 3);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(about(w, room, v1.cid).map((e) => e[1]), ["j", "s", "p"], "no leave, no join");
  });

  it("a connection revoked by server.disconnect() cannot resume, even while its request queue is busy", async () => {
    const w = await open();
    await w.request("sub", { room: "slow" });
    const victim = await open();
    await victim.request("join", { room: "slow" });
    victim.sendRaw(JSON.stringify({ op: "join", id: 999, room: "slow" })); // 300 ms in the guard
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(srv.server.disconnect(victim.cid), true);
    const back = await open(`&token=t-ada&resume=${encodeURIComponent(victim.token)}`);
    assert.equal(back.frames[0]!.resumed, false, "the revoked token is dead at once");
    assert.notEqual(back.cid, victim.cid);
    await w.waitFor(() => about(w, "slow", victim.cid).some((e) => e[1] === "l"));
    await waitUntil(() => victim.closed !== null, 2000, "the revoked socket closes");
    assert.equal(victim.closed?.code, 4401);
  });

  it("another connection's token is refused like a wrong one: a cid, a forged tail, another user", async () => {
    const room = "room:steal";
    const w = await open();
    await w.request("sub", { room });
    const p = await proxy();
    const victim = await open("&token=t-ada", p);
    await victim.request("join", { room });
    await victim.request("state", { room, state: "v" });
    p.cut();
    await waitUntil(() => victim.closed !== null, 2000, "the cut");
    // The token is "<cid>.<secret>": keep the public part, forge the secret.
    const forged = `${victim.cid}.${"A".repeat(44)}`;
    const last = victim.token.at(-1) === "A" ? "B" : "A";
    const oneOff = victim.token.slice(0, -1) + last;
    const attempts: Array<[string, string]> = [
      ["the victim's connection id", `&token=t-eve&resume=${victim.cid}`],
      ["the victim's id with a forged secret", `&token=t-ada&resume=${forged}`],
      ["the real token with its last character changed", `&token=t-ada&resume=${oneOff}`],
      ["the victim's id and a dot", `&token=t-ada&resume=${victim.cid}.`],
      ["a random token", `&token=t-eve&resume=${"x".repeat(44)}`],
      [
        "the victim's real token, by another user",
        `&token=t-eve&resume=${encodeURIComponent(victim.token)}`,
      ],
    ];
    for (const [what, query] of attempts) {
      const c = await open(query);
      assert.equal(c.frames[0]!.resumed, false, what);
      assert.notEqual(c.cid, victim.cid, what);
      assert.equal((await c.request("state", { room, state: "stolen" })).code, "not_member", what);
    }
    assert.deepEqual(await victimView(room, victim.cid), { present: true, state: "v" });
    // Refused attempts did not burn the token: the victim itself still resumes.
    const back = await open(`&token=t-ada&resume=${encodeURIComponent(victim.token)}`);
    assert.equal(back.frames[0]!.resumed, true);
    assert.equal(back.cid, victim.cid);
    assert.deepEqual(about(w, room, victim.cid).map((e) => e[1]), ["j", "s"], "no leave, no join");
  });
});
