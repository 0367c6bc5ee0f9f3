// Fast unit tests of the core on fake sockets and a manual clock: expiry,
// heartbeat, grace windows, TTL, batching, backpressure. No network, no sleeps
// for expiry.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CloseCode,
  ManualClock,
  MemoryPresenceStore,
  PresenceServer,
  type PresenceServerOptions,
  type PresenceStore,
  type StoreListener,
} from "../mod.ts";
import { encodeEvents, eventTails, type WireEvent } from "../src/protocol.ts";
import { Connection } from "../src/server/connection.ts";
import { Room, type Subscription } from "../src/server/room.ts";
import { connect, FakeSocket, FakeTopics, settle } from "./_fake.ts";

function make(options: PresenceServerOptions = {}) {
  const clock = new ManualClock();
  const server = new PresenceServer({ clock, ...options });
  server.trackPresence(/^.+$/);
  /** Advance time, letting store calls and the flush tick run. */
  const step = async (ms = 0) => {
    await settle();
    clock.advance(ms);
    await settle();
    clock.advance(0);
    await settle();
  };
  return { clock, server, step };
}

describe("PresenceServer core (fake sockets, manual clock)", () => {
  it("publishPresenceState() clears the state after expireAfter, without real time passing", async () => {
    const { server, step } = make();
    const a = await connect(server);
    const b = await connect(server);
    a.send("join", { room: "r", sub: true });
    b.send("join", { room: "r" });
    await step();
    const id = b.send("state", { room: "r", state: { typing: true }, expireAfter: 8000 });
    await step();
    assert.equal(b.answer(id)?.t, "ok");
    await step(7900);
    assert.deepEqual(a.events("r").filter((e) => e[1] === "s").map((e) => e[3]), [{
      typing: true,
    }]);
    await step(200);
    assert.deepEqual(a.events("r").filter((e) => e[1] === "s").map((e) => e[3]), [
      { typing: true },
      null,
    ]);
    assert.equal((await server.getPresenceStates("r")).size, 0);
    await server.close();
  });

  it("a connection silent past the heartbeat timeout is closed with 4408 and leaves after the grace", async () => {
    const { server, step } = make({
      heartbeat: { intervalMs: 1000, timeoutMs: 3000 },
      leaveGraceMs: 2000,
    });
    const a = await connect(server);
    const b = await connect(server);
    a.send("join", { room: "r", sub: true });
    b.send("join", { room: "r" });
    await step();
    // a keeps answering pings; b stays silent.
    for (let t = 0; t < 4000; t += 500) {
      a.handlers.message('{"op":"pong"}');
      await step(500);
    }
    assert.equal(b.socket.closeCode, CloseCode.heartbeatTimeout);
    assert.ok(b.socket.sent.some((f) => f.t === "ping"), "server pinged");
    assert.equal(
      a.events("r").filter((e) => e[1] === "l").length,
      0,
      "no leave inside the grace window",
    );
    for (let t = 0; t < 2500; t += 500) {
      a.handlers.message('{"op":"pong"}');
      await step(500);
    }
    assert.deepEqual(a.events("r").filter((e) => e[1] === "l").map((e) => e[2]), [b.cid]);
    assert.equal(a.socket.closed, null);
    await server.close();
  });

  it("pings a connection only once it has been silent for the interval: a busy one never, an idle one within I + (T − I) / 4 + one sweep", async () => {
    const I = 1000, T = 3000, S = 100; // the check's period is min(1000, I, (T − I) / 4) = 500
    const { server, step, clock } = make({
      heartbeat: { intervalMs: I, timeoutMs: T },
      sweepIntervalMs: S,
    });
    const busy = await connect(server);
    const idle = await connect(server);
    const silent = await connect(server);
    for (const c of [busy, idle, silent]) c.send("join", { room: "r" });
    await step();
    const pings = (c: typeof busy) => c.socket.sent.filter((f) => f.t === "ping").length;
    // When each connection last received a frame, and its longest wait for one.
    const last = new Map(
      [busy, idle].map((c) => [c, { n: c.socket.sent.length, at: clock.now() }]),
    );
    const wait = new Map([busy, idle].map((c) => [c, 0]));
    let answered = pings(idle);
    for (let t = 0; t < 12_000; t += 50) {
      if (t % 400 === 0) busy.send("state", { room: "r", state: { t } });
      for (; answered < pings(idle); answered++) idle.handlers.message('{"op":"pong"}');
      await step(50);
      for (const c of [busy, idle]) {
        const seen = last.get(c)!;
        if (c.socket.sent.length > seen.n) {
          last.set(c, { n: c.socket.sent.length, at: clock.now() });
        } else wait.set(c, Math.max(wait.get(c)!, clock.now() - seen.at));
      }
    }
    assert.equal(pings(busy), 0, "a connection sending requests is answered, never pinged");
    assert.ok(pings(idle) >= 5 && pings(idle) <= 12, `one ping per silence: ${pings(idle)}`);
    assert.ok(
      wait.get(idle)! <= I + (T - I) / 4 + S,
      `the idle client waited ${wait.get(idle)} ms for a frame`,
    );
    assert.equal(idle.socket.closed, null);
    assert.equal(busy.socket.closed, null);
    assert.equal(silent.socket.closeCode, CloseCode.heartbeatTimeout);
    assert.equal(pings(silent), 1, "one ping per silence, not one per check");
    await server.close();
  });

  it("a clean close (1000) leaves at once; an abrupt one (1006) waits for leaveGraceMs", async () => {
    const { server, step } = make({ leaveGraceMs: 5000 });
    const watcher = await connect(server);
    const clean = await connect(server);
    const abrupt = await connect(server);
    watcher.send("join", { room: "r", sub: true });
    clean.send("join", { room: "r" });
    abrupt.send("join", { room: "r" });
    await step();
    clean.handlers.close(1000, "");
    abrupt.handlers.close(1006, "");
    await step();
    const leaves = () => watcher.events("r").filter((e) => e[1] === "l").map((e) => e[2]);
    assert.deepEqual(leaves(), [clean.cid]);
    await step(4900);
    assert.deepEqual(leaves(), [clean.cid]);
    await step(200);
    assert.deepEqual(leaves(), [clean.cid, abrupt.cid]);
    await server.close();
  });

  it("requests the client sends again after a resume (queued or running when the socket dropped) run once", async () => {
    // The store's join waits until released: the join is being handled and
    // the state queued behind it when the socket drops.
    let release!: () => void;
    const gate = new Promise<void>((r) => release = r);
    class SlowJoin extends MemoryPresenceStore {
      override async join(...args: Parameters<MemoryPresenceStore["join"]>) {
        await gate;
        return await super.join(...args);
      }
    }
    const { server, step } = make({ leaveGraceMs: 5000, store: new SlowJoin() });
    const a = await connect(server);
    const join = a.send("join", { room: "r" });
    const state = a.send("state", { room: "r", state: { x: 1 } });
    await step();
    assert.equal(a.answer(join), undefined, "the join is still running");
    a.handlers.close(1006, "");
    await step(100);
    const b = await connect(server, `ws://test/?v=1&resume=${encodeURIComponent(a.token)}`);
    assert.equal(b.socket.sent[0]!.resumed, true);
    // The client had no answers: it sends both again, with the same ids.
    b.handlers.message(JSON.stringify({ op: "join", id: join, room: "r" }));
    b.handlers.message(JSON.stringify({ op: "state", id: state, room: "r", state: { x: 1 } }));
    release();
    await step();
    await step();
    const answers = (id: number) =>
      b.socket.sent.filter((f) => f.id === id && (f.t === "ok" || f.t === "err"));
    assert.equal(answers(join).length, 1, "one answer to the join");
    assert.equal(answers(state).length, 1, "one answer to the state");
    assert.equal(answers(join)[0]!.t, "ok");
    assert.equal(answers(state)[0]!.t, "ok");
    assert.equal(server.stats().requests, 2, "each ran once");
    assert.deepEqual((await server.getPresenceStates("r")).get(a.cid), { x: 1 });
    await server.close();
  });

  it("a resume inside the grace window keeps the connection id and nobody sees leave or join", async () => {
    const { server, step } = make({ leaveGraceMs: 5000 });
    const watcher = await connect(server);
    const a = await connect(server);
    watcher.send("join", { room: "r", sub: true });
    a.send("join", { room: "r", sub: true });
    await step();
    a.send("state", { room: "r", state: { x: 1 } });
    await step();
    const before = watcher.events("r").length;
    a.handlers.close(1006, "");
    await step(3000);
    const b = await connect(server, `ws://test/?v=1&resume=${encodeURIComponent(a.token)}`);
    await step();
    assert.equal(b.cid, a.cid);
    assert.notEqual(b.token, a.token, "token rotated");
    assert.equal(b.socket.sent[0]!.resumed, true);
    const snap = b.socket.sent.find((f) => f.t === "snap");
    assert.ok(snap, "resumed subscriber gets a fresh snapshot");
    await step(10_000);
    assert.equal(watcher.events("r").length, before, "no leave, no join");
    assert.deepEqual((await server.getPresentConnections("r")).sort(), [watcher.cid, a.cid].sort());
    assert.deepEqual((await server.getPresenceStates("r")).get(a.cid), { x: 1 });
    // The old token is single use.
    const c = await connect(server, `ws://test/?v=1&resume=${encodeURIComponent(a.token)}`);
    assert.notEqual(c.cid, a.cid);
    assert.equal(c.socket.sent[0]!.resumed, false);
    await server.close();
  });

  it("a room ttl drops a silent member without closing its connection", async () => {
    const { server, step } = make({ heartbeat: { intervalMs: 1000, timeoutMs: 60_000 } });
    server.trackPresence("short", { ttl: 2500 });
    // The catch-all pattern was registered first; use a fresh server instead.
    await server.close();
    const clock = new ManualClock();
    const s2 = new PresenceServer({ clock, heartbeat: { intervalMs: 1000, timeoutMs: 60_000 } });
    s2.trackPresence("short", { ttl: 2500 });
    s2.trackPresence("long"); // the default ttl: the heartbeat timeout
    const w = await connect(s2);
    const a = await connect(s2);
    w.send("join", { room: "short", sub: true });
    w.send("sub", { room: "long" });
    a.send("join", { room: "short" });
    a.send("join", { room: "long" });
    await settle();
    clock.advance(0);
    for (let t = 0; t < 4000; t += 500) {
      w.handlers.message('{"op":"pong"}');
      await settle();
      clock.advance(500);
      await settle();
    }
    await step(0);
    clock.advance(0);
    await settle();
    assert.deepEqual(w.events("short").filter((e) => e[1] === "l").map((e) => e[2]), [a.cid]);
    assert.deepEqual(
      w.events("long").filter((e) => e[1] === "l"),
      [],
      "still in the room with the longer ttl",
    );
    assert.equal(a.socket.closed, null);
    await s2.close();
  });

  it("trackPresence() refuses a ttl shorter than the heartbeat interval + 1 s", async () => {
    const { server } = make({ heartbeat: { intervalMs: 10_000, timeoutMs: 30_000 } });
    assert.throws(() => server.trackPresence("x", { ttl: 5000 }), { code: "bad_request" });
    await server.close();
  });

  it("events produced in one flush tick go out as one frame per subscriber", async () => {
    const { server, step } = make();
    const w = await connect(server);
    w.send("join", { room: "r", sub: true });
    await step();
    const others = await Promise.all([1, 2, 3, 4, 5].map(() => connect(server)));
    for (const o of others) o.send("join", { room: "r" });
    await settle(); // no clock tick yet: all five joins pend in one batch
    const framesBefore = w.socket.sent.filter((f) => f.t === "ev").length;
    await step();
    const evFrames = w.socket.sent.filter((f) => f.t === "ev").slice(framesBefore);
    assert.equal(evFrames.length, 1);
    assert.equal((evFrames[0]!.e as unknown[]).length, 5);
    await server.close();
  });

  it("batchIntervalMs: a room sends at most one frame per interval, a quiet room's event goes at once, and every event arrives once, in order, within the interval", async () => {
    const W = 20;
    const { clock, server } = make({ batchIntervalMs: W });
    const w = await connect(server);
    const at: number[] = []; // virtual time of each ev frame to the watcher
    const send = w.socket.send.bind(w.socket);
    w.socket.send = (data: string) => {
      if (data.startsWith('{"t":"ev"')) at.push(clock.now());
      return send(data);
    };
    w.send("join", { room: "r", sub: true });
    const pubs = await Promise.all([1, 2, 3].map(() => connect(server)));
    for (const p of pubs) p.send("join", { room: "r" });
    for (let i = 0; i < 5; i++) {
      clock.advance(1);
      await settle();
    }
    // Seeded random publishes: bursts (several in one ms), sparse ones, quiet gaps.
    let seed = 7;
    const rand = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
    const published = new Map<number, number>(); // request id -> virtual time sent
    const framesBefore = at.length;
    for (let t = 0; t < 600; t++) {
      const burst = t % 200 < 120 ? (rand() < 0.3 ? 1 + Math.floor(rand() * 3) : 0) : 0;
      for (let k = 0; k < burst; k++) {
        const p = pubs[Math.floor(rand() * pubs.length)]!;
        published.set(p.send("state", { room: "r", state: { t, k } }), clock.now());
      }
      clock.advance(1);
      await settle();
    }
    clock.advance(W);
    await settle();
    // Every publish answered with a seq; the watcher got each seq once, in order.
    const sent = new Map<number, number>(); // seq -> publish time
    for (const [id, time] of published) {
      const answer = pubs.map((p) => p.answer(id)).find((a) => a !== undefined);
      assert.equal(answer?.t, "ok", `publish ${id}: ${JSON.stringify(answer)}`);
      sent.set(answer!.seq as number, time);
    }
    const seqs = w.events("r").filter((e) => e[1] === "s").map((e) => e[0] as number);
    assert.deepEqual(seqs, [...sent.keys()].sort((a, b) => a - b));
    // At most one frame per W; each event within W of its publish (+1 ms steps).
    const frames = at.slice(framesBefore);
    for (let i = 1; i < frames.length; i++) {
      assert.ok(frames[i]! - frames[i - 1]! >= W, `frames at ${frames[i - 1]} and ${frames[i]}`);
    }
    const evFrames = w.socket.sent.filter((f) => f.t === "ev").slice(framesBefore);
    let batched = 0;
    let immediate = 0;
    evFrames.forEach((f, i) => {
      const events = f.e as unknown[][];
      if (events.length > 1) batched++;
      for (const e of events) {
        const lag = frames[i]! - sent.get(e[0] as number)!;
        assert.ok(lag >= 0 && lag <= W + 1, `seq ${e[0]} waited ${lag} ms`);
        if (lag <= 1) immediate++;
      }
    });
    // Both paths ran: fuller frames in bursts, no wait after a quiet spell.
    assert.ok(batched > 5, `only ${batched} frames carried more than one event`);
    assert.ok(immediate >= 3, `only ${immediate} events went out at once`);
    assert.ok(evFrames.length < sent.size, `${evFrames.length} frames for ${sent.size} events`);
    await server.close();
  });

  it("batchIntervalMs outside 0..1000 is refused with bad_request", () => {
    for (const batchIntervalMs of [-1, 1001, Number.NaN]) {
      assert.throws(() => new PresenceServer({ batchIntervalMs }), { code: "bad_request" });
    }
  });

  it("a subscriber that subscribes mid-batch gets only events after its snapshot", async () => {
    const { server, step } = make();
    const w = await connect(server);
    w.send("join", { room: "r", sub: true });
    await step();
    const a = await connect(server);
    a.send("join", { room: "r" });
    await settle();
    const late = await connect(server);
    const id = late.send("sub", { room: "r" });
    await settle();
    const b = await connect(server);
    b.send("join", { room: "r" });
    await step();
    const snapSeq = late.answer(id)!.seq as number;
    const lateSeqs = late.events("r").map((e) => e[0] as number);
    assert.ok(
      lateSeqs.every((s) => s > snapSeq),
      `no event at or before seq ${snapSeq}: ${lateSeqs}`,
    );
    assert.deepEqual(late.events("r").map((e) => e[2]), [b.cid]);
    assert.deepEqual(w.events("r").map((e) => e[2]), [a.cid, b.cid]);
    await server.close();
  });

  it("a backed-up subscriber is coalesced, then resynced with the latest states once drained", async () => {
    const { server, step } = make({
      limits: { outboundHighWaterBytes: 1000, requestBurst: 1000, requestsPerSecond: 1000 },
    });
    const slow = await connect(server);
    const pub = await connect(server);
    slow.send("sub", { room: "r" });
    pub.send("join", { room: "r" });
    await step();
    slow.socket.reading = false;
    for (let i = 0; i < 200; i++) {
      pub.send("state", { room: "r", state: { i, pad: "x".repeat(50) } });
      await step();
    }
    const received = slow.events("r").length;
    assert.ok(received < 100, `coalesced: got ${received} of 201 events`);
    assert.ok(server.stats().coalesced >= 1);
    slow.socket.reading = true;
    slow.socket.bufferedAmount = 0;
    await step(200);
    const snap = slow.socket.sent.findLast((f) => f.t === "snap");
    assert.ok(snap, "resync snapshot after draining");
    assert.deepEqual(snap.states, [[pub.cid, { i: 199, pad: "x".repeat(50) }]]);
    await server.close();
  });

  it("native topic subscribers: a backed-up one is coalesced, and an idle room's sockets are not polled", async () => {
    const { server, step } = make({
      limits: { outboundHighWaterBytes: 1000, requestBurst: 1000, requestsPerSecond: 1000 },
    });
    const topics = new FakeTopics();
    const subs = [];
    for (let i = 0; i < 20; i++) {
      const c = await connect(server, undefined, undefined, topics.attach(new FakeSocket()));
      c.send("sub", { room: "r" });
      subs.push(c);
    }
    const pub = await connect(server, undefined, undefined, topics.attach(new FakeSocket()));
    pub.send("join", { room: "r" });
    await step();
    pub.send("state", { room: "r", state: { i: -1 } });
    await step(100);
    const topic = [...topics.subscribers.values()][0];
    assert.equal(topic?.size, 20, "every caught-up subscriber receives through the topic");

    // Idle: nothing is published, so no socket's backlog can grow. Neither
    // the sweep (every 100 ms) nor the liveness check (once a second) may
    // read bufferedAmount (a runtime call) for each connection: the backlog
    // bounds say none can be near a limit.
    for (const c of [...subs, pub]) c.socket.bufferedReads = 0;
    await step(1000);
    await step(1000);
    const reads = [...subs, pub].reduce((n, c) => n + c.socket.bufferedReads, 0);
    assert.equal(reads, 0, `bufferedAmount read ${reads} times in 2 s of idle`);

    // One subscriber stops reading: it leaves the topic (coalesced) once its
    // backlog crosses the high-water mark; the others get every state.
    const slow = subs[0]!;
    slow.socket.reading = false;
    for (let i = 0; i < 100; i++) {
      pub.send("state", { room: "r", state: { i, pad: "x".repeat(50) } });
      await step(10);
    }
    assert.ok(server.stats().coalesced >= 1, "the backed-up subscriber was coalesced");
    assert.ok(!topic!.has(slow.socket), "and taken off the topic");
    const last = (c: typeof slow) =>
      c.events("r").filter((e) => e[1] === "s").map((e) => (e[3] as { i: number }).i);
    assert.ok(last(slow).length < 100, `coalesced: ${last(slow).length} of 101 states`);
    for (const c of subs.slice(1)) assert.equal(last(c).at(-1), 99);
    await server.close();
  });

  it("a native subscriber backed up with non-ASCII states is coalesced by its backlog in bytes, not characters", async () => {
    const { server, step } = make({
      limits: { outboundHighWaterBytes: 1000, requestBurst: 1000, requestsPerSecond: 1000 },
    });
    const topics = new FakeTopics();
    const slow = await connect(server, undefined, undefined, topics.attach(new FakeSocket()));
    const pub = await connect(server, undefined, undefined, topics.attach(new FakeSocket()));
    slow.send("sub", { room: "r" });
    pub.send("join", { room: "r" });
    await step();
    pub.send("state", { room: "r", state: { i: -1 } });
    await step(100);
    assert.ok(topics.subscribers.get([...topics.subscribers.keys()][0]!)?.has(slow.socket));
    slow.socket.reading = false;
    // One state per sweep, 400 characters of 3 UTF-8 bytes each: 1 200 bytes
    // a sweep against a 1 000-byte mark, but only 400 characters.
    for (let i = 0; i < 6; i++) {
      pub.send("state", { room: "r", state: { i, text: "字".repeat(400) } });
      await step(100);
    }
    assert.ok(server.stats().coalesced >= 1, "coalesced");
    const backlog = slow.socket.bufferedAmount;
    // Caught at the first sweep past the mark: at most the mark plus one
    // sweep's frame (about 1 260 bytes) is queued.
    assert.ok(backlog <= 1000 + 1300, `coalesced with ${backlog} bytes queued`);
    await server.close();
  });

  it("a subscriber that never drains is closed with 4409 after slowConsumerTimeoutMs", async () => {
    const { server, step } = make({
      limits: { outboundHighWaterBytes: 500, slowConsumerTimeoutMs: 3000 },
    });
    const slow = await connect(server);
    const pub = await connect(server);
    slow.send("sub", { room: "r" });
    pub.send("join", { room: "r" });
    await step();
    slow.socket.reading = false;
    for (let i = 0; i < 50; i++) {
      pub.send("state", { room: "r", state: { i, pad: "y".repeat(40) } });
      await step();
    }
    assert.equal(slow.socket.closed, null);
    await step(3500);
    assert.equal(slow.socket.closeCode, CloseCode.slowConsumer);
    assert.equal(pub.socket.closed, null);
    await server.close();
  });

  it("requests over the rate limit are refused with rate_limited and a flood closes with 4429", async () => {
    const { server, step } = make({
      limits: { requestsPerSecond: 10, requestBurst: 5, floodCloseAfter: 20 },
    });
    const a = await connect(server);
    const ids = [];
    for (let i = 0; i < 10; i++) ids.push(a.send("meta", { cid: "x" }));
    await step();
    const codes = ids.map((id) => a.answer(id)?.t === "ok" ? "ok" : a.answer(id)?.code);
    assert.deepEqual(codes, ["ok", "ok", "ok", "ok", "ok", ...Array(5).fill("rate_limited")]);
    assert.equal(a.socket.closed, null);
    for (let i = 0; i < 30; i++) a.send("meta", { cid: "x" });
    await step();
    assert.equal(a.socket.closeCode, CloseCode.flood);
    await server.close();
  });

  it("userKey emits user online/offline tuples with the first join and the last leave", async () => {
    const { server, step } = make({ userKey: "userId" });
    const w = await connect(server);
    w.send("sub", { room: "r", users: true });
    await step();
    const admitted = [];
    for (let i = 0; i < 2; i++) {
      const c = await connect(server);
      await server.setConnectionMetadata(c.cid, { userId: "u1" });
      c.send("join", { room: "r" });
      await step();
      admitted.push(c);
    }
    admitted[0]!.send("leave", { room: "r" });
    await step();
    admitted[1]!.send("leave", { room: "r" });
    await step();
    const users = w.events("r").filter((e) => e[1] === "u").map((e) => [e[2], e[3]]);
    assert.deepEqual(users, [["u1", 1], ["u1", 0]]);
    await server.close();
  });

  it("a guard refuses join, subscribe and publish with forbidden", async () => {
    const clock = new ManualClock();
    const server = new PresenceServer({ clock });
    let allow = true;
    server.trackPresence("g", { guard: (c) => allow && c.metadata.role === "admin" });
    const admin = await connect(server);
    await server.setConnectionMetadata(admin.cid, { role: "admin" });
    const guest = await connect(server);
    const ids = [guest.send("join", { room: "g" }), guest.send("sub", { room: "g" })];
    const ok = admin.send("join", { room: "g" });
    await settle();
    assert.deepEqual(ids.map((id) => guest.answer(id)?.code), ["forbidden", "forbidden"]);
    assert.equal(admin.answer(ok)?.t, "ok");
    allow = false;
    const pub = admin.send("state", { room: "g", state: 1 });
    await settle();
    assert.equal(admin.answer(pub)?.code, "forbidden");
    await server.close();
  });

  it("validateState accepts a function or a Standard Schema object", async () => {
    const clock = new ManualClock();
    const server = new PresenceServer({ clock });
    server.trackPresence("fn", {
      validateState: (s) => typeof s === "object" || "must be an object",
    });
    server.trackPresence("schema", {
      validateState: {
        "~standard": {
          validate: (v: unknown) =>
            typeof (v as { n?: unknown })?.n === "number"
              ? { value: v }
              : { issues: [{ message: "n must be a number" }] },
        },
      },
    });
    const a = await connect(server);
    a.send("join", { room: "fn" });
    a.send("join", { room: "schema" });
    await settle();
    const ids = [
      a.send("state", { room: "fn", state: 3 }),
      a.send("state", { room: "fn", state: { ok: 1 } }),
      a.send("state", { room: "schema", state: { n: "x" } }),
      a.send("state", { room: "schema", state: { n: 1 } }),
      a.send("state", { room: "schema", patch: { n: "no" } }),
    ];
    await settle();
    assert.deepEqual(ids.map((id) => a.answer(id)?.code ?? a.answer(id)?.t), [
      "invalid_state",
      "ok",
      "invalid_state",
      "ok",
      "invalid_state",
    ]);
    assert.equal(a.answer(ids[2]!)?.message, "State refused: n must be a number");
    await server.close();
  });

  it("stats() counts connections, rooms, subscribers, events and store latency", async () => {
    const { server, step } = make();
    const a = await connect(server);
    const b = await connect(server);
    a.send("join", { room: "r1", sub: true });
    b.send("join", { room: "r2" });
    b.send("state", { room: "r2", state: 1 });
    await step();
    const s = server.stats();
    assert.equal(s.connections, 2);
    assert.equal(s.detached, 0);
    assert.equal(s.rooms, 2);
    assert.equal(s.subscribers, 1);
    assert.equal(s.requests, 3);
    assert.equal(s.eventsIn, 3);
    assert.ok(s.framesOut >= 1);
    assert.ok(s.storeLatencyMs >= 0);
    await step(1000);
    assert.ok(server.stats().eventsInPerSecond > 2, "three events in the first second");
    await step(1000);
    await step(1000);
    assert.equal(server.stats().eventsInPerSecond, 0, "no events in the last second");
    b.handlers.close(1006, "");
    await step();
    assert.equal(server.stats().connections, 1);
    assert.equal(server.stats().detached, 1);
    await server.close();
  });

  it("disconnect() closes a connection with 4401 and its leave is immediate, with no resume", async () => {
    const { server, step } = make({ leaveGraceMs: 5000 });
    const w = await connect(server);
    const a = await connect(server);
    w.send("join", { room: "r", sub: true });
    a.send("join", { room: "r" });
    await step();
    assert.equal(server.disconnect(a.cid), true);
    await step();
    assert.equal(a.socket.closeCode, CloseCode.unauthorized);
    assert.deepEqual(w.events("r").filter((e) => e[1] === "l").map((e) => e[2]), [a.cid]);
    const again = await connect(server, `ws://test/?v=1&resume=${encodeURIComponent(a.token)}`);
    assert.equal(again.socket.sent[0]!.resumed, false);
    assert.equal(server.disconnect("nobody"), false);
    await server.close();
  });
});

describe("eventTails (the frames of subscribers whose snapshot landed mid-batch)", () => {
  it("each tail equals encoding the later events alone, for every cut of random batches", () => {
    // A seeded generator (mulberry32): states with strings that look like
    // the frame's own separators, escapes and non-ASCII text.
    let seed = 1234;
    const rand = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    };
    const words = ["],[", '"', "\\", "é", "😀", "\n", "x", "]}", ",[7,"];
    const text = () =>
      Array.from({ length: Math.floor(rand() * 4) }, () => words[Math.floor(rand() * words.length)])
        .join("");
    for (let round = 0; round < 200; round++) {
      const events: WireEvent[] = [];
      let seq = Math.floor(rand() * 100);
      const n = 1 + Math.floor(rand() * 12);
      for (let i = 0; i < n; i++) {
        seq += 1;
        const kind = Math.floor(rand() * 4);
        if (kind === 0) events.push([seq, "j", text(), { name: text() }]);
        else if (kind === 1) events.push([seq, "l", text()]);
        else if (kind === 2) events.push([seq, "s", text(), { v: text(), n: rand() }]);
        else {
          events.push([seq, "l", "c"]);
          events.push([seq, "u", text(), 0]); // shares its leave's seq
        }
      }
      const room = text() || "r";
      const frame = encodeEvents(room, events);
      const tails = eventTails(room, events, frame);
      const first = events[0]![0];
      const last = events[events.length - 1]![0];
      for (let after = first - 2; after <= last + 1; after++) {
        const later = events.filter((e) => e[0] > after);
        const want = later.length === 0 ? "" : encodeEvents(room, later);
        assert.equal(tails(after), want, `round ${round}, after ${after}`);
        assert.equal(tails(after), tails(after)); // asked twice: the same string
      }
    }
  });
});

describe("Connection's per-room records (none, one, or a map)", () => {
  it("agree with a plain model through random joins, leaves, subscriptions and states", () => {
    let seed = 99;
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    for (let round = 0; round < 100; round++) {
      const conn = new Connection({
        id: "c",
        secret: "t",
        metadata: {},
        publicMeta: {},
        userId: null,
        socket: null,
        remoteAddr: null,
        url: "/",
        now: 0,
        burst: 1,
        credit: 0,
      });
      const joined = new Set<string>();
      const subs = new Map<string, Subscription>();
      const own = new Map<string, unknown>();
      const written = new Set<string>();
      // The live set, read part way through a round: it must follow from then on.
      let live: ReadonlySet<string> | null = null;
      for (let step = 0; step < 60; step++) {
        const room = `r${rand(4)}`;
        switch (rand(8)) {
          case 0:
            assert.equal(conn.addRoom(room), !joined.has(room));
            joined.add(room);
            break;
          case 1:
            assert.equal(conn.removeRoom(room), joined.delete(room));
            break;
          case 2: {
            const sub = { room } as unknown as Subscription;
            conn.setSub(room, sub);
            subs.set(room, sub);
            break;
          }
          case 3:
            assert.equal(conn.deleteSub(room), subs.get(room));
            subs.delete(room);
            break;
          case 4:
            conn.setOwn(room, step, null);
            own.set(room, step);
            break;
          case 5:
            conn.clearOwn(room);
            own.delete(room);
            break;
          case 6:
            conn.markWritten(room);
            written.add(room);
            break;
          case 7:
            live ??= conn.rooms;
            break;
        }
        const where = `round ${round}, step ${step}`;
        for (let r = 0; r < 4; r++) {
          const name = `r${r}`;
          assert.equal(conn.inRoom(name), joined.has(name), where);
          assert.equal(conn.sub(name), subs.get(name), where);
          assert.equal(conn.hasOwn(name), own.has(name), where);
          assert.equal(conn.ownState(name), own.get(name), where);
          assert.equal(conn.wroteState(name), written.has(name), where);
        }
        assert.equal(conn.roomCount, joined.size, where);
        assert.deepEqual(new Set(conn.roomNames()), joined, where);
        assert.equal(conn.subCount, subs.size, where);
        assert.deepEqual(new Map(conn.subs()), subs, where);
        if (live) assert.deepEqual(new Set(live), joined, where);
        assert.deepEqual(new Set(conn.rooms), joined, where);
      }
    }
  });
});

describe("Room view (one record per member: metadata, state, join seq)", () => {
  it("agrees with a plain model through random joins, leaves, states and reloads", () => {
    let seed = 7;
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    for (let round = 0; round < 100; round++) {
      const room = new Room("r", null);
      room.load(0, [], new Map());
      const members = new Map<string, { n: number }>();
      const states = new Map<string, unknown>();
      let seq = 0;
      for (let step = 0; step < 80; step++) {
        const id = `c${rand(6)}`;
        const ev = { room: "r", connectionId: id, seq: ++seq, timestamp: step };
        switch (rand(5)) {
          case 0:
          case 1: {
            // A join of a present member (kept through a store reset) keeps
            // its place and its state.
            const meta = { n: step };
            room.apply({ ...ev, type: "join", meta, instance: "i" });
            members.set(id, meta);
            break;
          }
          case 2:
            room.apply({ ...ev, type: "leave", reason: "leave" });
            members.delete(id);
            states.delete(id);
            break;
          case 3: {
            const state = rand(4) === 0 ? null : { s: step };
            room.apply({ ...ev, type: "state", state });
            // Only a member holds a state: one for anyone else is not kept.
            if (state === null) states.delete(id);
            else if (members.has(id)) states.set(id, state);
            break;
          }
          case 4: {
            // A reload from a snapshot of the model.
            const present = [...members].map(([id, meta]) => ({ id, meta }));
            room.load(seq, present, new Map(states));
            break;
          }
        }
        room.pending = [];
        const snap = JSON.parse(room.snapshotFrame('{"t":"ok","id":1,', false));
        const where = `round ${round}, step ${step}`;
        assert.deepEqual(
          snap.present,
          [...members].map(([id, meta]) => ({ id, meta })),
          where,
        );
        const sorted = (list: Array<[string, unknown]>) =>
          [...list].sort((a, b) => a[0] < b[0] ? -1 : 1);
        assert.deepEqual(sorted(snap.states), sorted([...states]), where);
        assert.equal(snap.seq, seq, where);
        assert.equal(room.counts().c, members.size, where);
      }
    }
  });
});

/**
 * A memory store that can restart empty, as Redis does after `SHUTDOWN
 * NOSAVE`: a new inner store, the feed and room watches moved onto it, and
 * the reset listeners told.
 */
function restartable(): { store: PresenceStore; restart(): void } {
  let inner = new MemoryPresenceStore();
  const listeners = new Set<StoreListener>();
  const resets = new Set<(instanceId?: string) => void>();
  const watched = new Map<string, () => void>();
  let unfeed = inner.subscribe((ev) => listeners.forEach((l) => l(ev)));
  const own: Partial<PresenceStore> = {
    subscribe(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    watchRoom(room) {
      watched.set(room, inner.watchRoom(room));
      return () => {
        watched.get(room)?.();
        watched.delete(room);
      };
    },
    onReset(listener) {
      resets.add(listener);
      return () => void resets.delete(listener);
    },
  };
  const store = new Proxy(own, {
    get: (target, key) => {
      if (key in target) return target[key as keyof PresenceStore];
      const value = (inner as unknown as Record<string | symbol, unknown>)[key];
      return typeof value === "function" ? value.bind(inner) : value;
    },
  }) as PresenceStore;
  return {
    store,
    restart() {
      unfeed();
      inner = new MemoryPresenceStore();
      unfeed = inner.subscribe((ev) => listeners.forEach((l) => l(ev)));
      for (const room of watched.keys()) watched.set(room, inner.watchRoom(room));
      resets.forEach((l) => l());
    },
  };
}

describe("store reset: the settle window's snapshots", () => {
  it("carry k while the window lasts (the client keeps what they lack), and the reload ending it resyncs everyone without k", async () => {
    const lease = 3000;
    const { store, restart } = restartable();
    const { server, step } = make({ store, leaseTtlMs: lease });
    const a = await connect(server);
    const b = await connect(server);
    a.send("join", { room: "r", sub: true });
    b.send("join", { room: "r" });
    await step(10);
    const first = a.socket.sent.find((f) => f.t === "ok" && "present" in f)!;
    assert.equal(first.k, undefined, "no k outside a window");

    restart();
    await step(10);
    // The reload after the reset resyncs the subscriber: a window snapshot.
    const inWindow = a.socket.sent.filter((f) => f.t === "snap" && f.r === "r");
    assert.ok(inWindow.length >= 1, "a resync after the reset");
    assert.ok(inWindow.every((f) => f.k === 1), JSON.stringify(inWindow));
    // A new subscription in the window is answered from the kept view, with k.
    const c = await connect(server);
    const id = c.send("sub", { room: "r" });
    await step(10);
    const answer = c.answer(id)!;
    assert.equal(answer.t, "ok");
    assert.equal(answer.k, 1);
    assert.deepEqual(
      (answer.present as { id: string }[]).map((p) => p.id).sort(),
      [a.cid, b.cid].sort(),
    );

    // The window ends: one reload, and every subscriber gets a snapshot without k.
    const before = a.socket.sent.length;
    const beforeC = c.socket.sent.length;
    for (let t = 0; t < lease + 500; t += 100) await step(100);
    const after = a.socket.sent.slice(before).filter((f) => f.t === "snap" && f.r === "r");
    const afterC = c.socket.sent.slice(beforeC).filter((f) => f.t === "snap" && f.r === "r");
    assert.ok(after.length >= 1 && afterC.length >= 1, "a resync when the window ends");
    assert.equal(after.at(-1)!.k, undefined);
    assert.equal(afterC.at(-1)!.k, undefined);
    assert.deepEqual(
      (after.at(-1)!.present as { id: string }[]).map((p) => p.id).sort(),
      [a.cid, b.cid].sort(),
    );
    await server.close();
  });
});

describe("lease fence: a process that stalled past its lease", () => {
  /** A clock whose reading can jump ahead without running timers, as after a stall. */
  class StallClock extends ManualClock {
    stalledFor = 0;
    override now(): number {
      return super.now() + this.stalledFor;
    }
  }

  it("renews before it writes again, so a crash right after leaves no ghost", async () => {
    const store = new MemoryPresenceStore();
    const clockA = new StallClock();
    const clockB = new ManualClock();
    // A's feed: not read while A is stalled.
    let stalled = false;
    const feedA: PresenceStore = new Proxy(store, {
      get(target, key) {
        if (key === "subscribe") {
          return (listener: StoreListener) => target.subscribe((ev) => stalled || listener(ev));
        }
        const value = Reflect.get(target, key);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const a = new PresenceServer({ clock: clockA, store: feedA, leaseTtlMs: 3_000 });
    const b = new PresenceServer({ clock: clockB, store, leaseTtlMs: 3_000 });
    a.trackPresence(/^.+$/);
    b.trackPresence(/^.+$/);
    await settle();
    const ada = await connect(a);
    ada.send("join", { room: "r" });
    await settle();
    assert.deepEqual((await store.snapshot("r", clockB.now())).present.length, 1);
    // A stalls 10 s: nothing of it runs, and B reaps it meanwhile.
    stalled = true;
    for (let t = 0; t < 10_000; t += 500) {
      clockB.advance(500);
      await settle();
    }
    assert.deepEqual((await store.snapshot("r", clockB.now())).present, []);
    // A wakes up, and the first thing it does is a client's join, before
    // its own sweep: its lease is two thirds of a lease old or more.
    clockA.stalledFor = 10_000;
    ada.send("join", { room: "r2" });
    await settle();
    assert.equal((await store.snapshot("r2", clockB.now())).present.length, 1);
    // A dies right there, before it read the rest of its feed. Its lease,
    // renewed before the join, lapses and B reaps the member; written
    // without the lease, it would stay for good.
    for (let t = 0; t < 10_000; t += 500) {
      clockB.advance(500);
      await settle();
    }
    assert.deepEqual((await store.snapshot("r2", clockB.now())).present, []);
    assert.deepEqual((await store.snapshot("r", clockB.now())).present, []);
    await b.close();
  });
});
