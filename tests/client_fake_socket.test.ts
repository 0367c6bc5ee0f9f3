// PresenceClient and createPresence against an in-memory fake WebSocket.

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  PresenceClient,
  type PresenceClientOptions,
  PresenceError,
  type PresenceSync,
  type PresenceUpdate,
} from "../client.ts";
import { createPresence, type PresenceUser } from "../presence.ts";
import { ThrottledPresenceClient } from "../throttle.ts";

// Captured before any test spies on the globals.
const realSetTimeout = globalThis.setTimeout;
const realRandom = Math.random;
const sleep = (ms = 0) => new Promise<void>((r) => realSetTimeout(r, ms));
async function until(cond: () => boolean, ms = 500): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("Condition not met in time");
    await sleep(1);
  }
}

/** A frame the client sent. */
interface Sent {
  op: string;
  id: number;
  room?: string;
  cid?: string;
  state?: unknown;
  patch?: unknown;
  expireAfter?: number;
  users?: boolean;
  sub?: boolean;
  rs?: number;
  q?: number;
  mode?: string;
}

/** Answers a request: fields for `ok`, an `Error` for `err`, `undefined` for no answer. */
type Auto = (
  f: Sent,
  ws: FakeSocket,
) => Record<string, unknown> | Error | undefined;

class FakeSocket {
  readyState = 0;
  url: URL;
  protocols: string | string[] | undefined;
  sent: Sent[] = [];
  closeCode: number | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number }) => void) | null = null;

  constructor(
    readonly net: Net,
    url: string | URL,
    protocols?: string | string[],
  ) {
    this.url = new URL(url);
    this.protocols = protocols;
    net.sockets.push(this);
    net.onSocket?.(this);
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("Socket is not open");
    const f = JSON.parse(data) as Sent;
    this.sent.push(f);
    const answer = f.op === "pong" ? undefined : this.net.auto?.(f, this);
    if (answer instanceof Error) {
      realSetTimeout(() => this.err(f.id, answer.message as never, "Refused"));
    } else if (answer) realSetTimeout(() => this.ok(f.id, answer));
  }

  close(code = 1000): void {
    if (this.readyState > 1) return;
    this.closeCode = code;
    this.readyState = 3;
    realSetTimeout(() => this.onclose?.({ code }));
  }

  // Server side.
  emit(frame: unknown): void {
    if (this.readyState === 1) {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }
  }
  hello(
    cid: string,
    o: { resumed?: boolean; hb?: [number, number] } = {},
  ): void {
    this.readyState = 1;
    this.emit({
      t: "hello",
      v: 1,
      cid,
      token: `token-${cid}-${this.net.sockets.length}`,
      hb: o.hb ?? [60_000, 60_000],
      resumed: o.resumed ?? false,
    });
  }
  ok(id: number, fields: Record<string, unknown> = {}): void {
    this.emit({ t: "ok", id, ...fields });
  }
  err(id: number, code: string, message = "Refused"): void {
    this.emit({ t: "err", id, code, message });
  }
  drop(code = 1006): void {
    this.readyState = 3;
    this.onclose?.({ code });
  }
  ops(): string[] {
    return this.sent.map((f) => f.op);
  }
}

interface Net {
  sockets: FakeSocket[];
  auto?: Auto;
  onSocket?: (ws: FakeSocket) => void;
  last(): FakeSocket;
  WebSocket: typeof WebSocket;
}

function fakeNet(auto?: Auto): Net {
  const net: Net = {
    sockets: [],
    last: () => net.sockets[net.sockets.length - 1]!,
    WebSocket: null as unknown as typeof WebSocket,
  };
  if (auto) net.auto = auto;
  net.WebSocket = class extends FakeSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(net, url, protocols);
    }
  } as unknown as typeof WebSocket;
  return net;
}

const clients: PresenceClient<never, never>[] = [];
afterEach(async () => {
  globalThis.setTimeout = realSetTimeout;
  Math.random = realRandom;
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

function makeClient<
  S = unknown,
  M extends Record<string, unknown> = Record<string, unknown>,
>(
  net: Net,
  options: PresenceClientOptions = {},
): PresenceClient<S, M> {
  const client = new PresenceClient<S, M>("ws://presence.test/ws", {
    WebSocket: net.WebSocket,
    reconnect: { minDelayMs: 2, maxDelayMs: 10 },
    requestTimeoutMs: 1000,
    ...options,
  });
  clients.push(client as unknown as PresenceClient<never, never>);
  return client;
}

async function open<
  S = unknown,
  M extends Record<string, unknown> = Record<string, unknown>,
>(
  net: Net,
  options: PresenceClientOptions = {},
  cid = "c1",
): Promise<{ client: PresenceClient<S, M>; ws: FakeSocket }> {
  const client = makeClient<S, M>(net, options);
  const p = client.connect();
  const ws = net.last();
  ws.hello(cid);
  await p;
  return { client, ws };
}

/** A tiny room server: join/sub/state answers from a fixed room view. */
function roomServer(
  present: () => Array<{ id: string; meta: Record<string, unknown> }>,
  states: () => Array<[string, unknown]> = () => [],
  seq = () => 1,
): Auto {
  return (f) => {
    switch (f.op) {
      case "join":
      case "sub":
        // A join answers the members; with `sub` it answers the snapshot, as sub does.
        if (f.op === "join" && !f.sub) return { present: present() };
        return f.mode === "count"
          ? { c: present().length, u: present().length }
          : { seq: seq(), present: present(), states: states() };
      case "state":
      case "clear":
        return { seq: seq() + 1 };
      case "leave":
        return { left: true };
      default:
        return {};
    }
  };
}

describe("PresenceClient: connecting", () => {
  it("connect() resolves on hello and puts v=1, params and protocols on the socket", async () => {
    const net = fakeNet();
    const client = makeClient(net, {
      params: { token: "t0" },
      protocols: ["presently", "auth.t0"],
    });
    const statuses: string[] = [];
    client.onStatus((s) => statuses.push(s));
    assert.equal(client.status, "closed");
    const p = client.connect();
    assert.equal(client.status, "connecting");
    const ws = net.last();
    assert.equal(ws.url.origin + ws.url.pathname, "ws://presence.test/ws");
    assert.equal(ws.url.searchParams.get("v"), "1");
    assert.equal(ws.url.searchParams.get("token"), "t0");
    assert.equal(ws.url.searchParams.get("resume"), null);
    assert.deepEqual(ws.protocols, ["presently", "auth.t0"]);
    ws.hello("c1");
    await p;
    assert.equal(client.connectionId, "c1");
    assert.equal(client.status, "open");
    assert.equal(client.resumed, false);
    assert.deepEqual(statuses, ["connecting", "open"]);
    await client.connect(); // already open
    assert.equal(net.sockets.length, 1);
  });

  it("connect() rejects with unauthorized on 4401 and closed on other closes", async () => {
    const net = fakeNet();
    const client = makeClient(net);
    const p = client.connect();
    net.last().drop(4401);
    await assert.rejects(
      p,
      (e) => e instanceof PresenceError && e.code === "unauthorized",
    );
    assert.equal(client.status, "unauthorized");
    const q = client.connect();
    net.last().drop(1006);
    await assert.rejects(
      q,
      (e) => e instanceof PresenceError && e.code === "closed",
    );
    assert.equal(net.sockets.length, 2);
  });

  it("a server close with 4401 or 4400 after open is not retried", async () => {
    for (const code of [4401, 4400]) {
      const net = fakeNet();
      const { client, ws } = await open(net);
      ws.drop(code);
      assert.equal(client.status, code === 4401 ? "unauthorized" : "closed");
      assert.equal(client.connectionId, null);
      await sleep(20);
      assert.equal(net.sockets.length, 1);
    }
  });
});

describe("PresenceClient: requests", () => {
  it("matches answers to requests by id, in any order", async () => {
    const net = fakeNet();
    const { client, ws } = await open(net);
    const a = client.joinRoom("a");
    const b = client.joinRoom("b");
    const [ja, jb] = ws.sent;
    assert.deepEqual(ja, { op: "join", room: "a", id: ja!.id });
    assert.notEqual(ja!.id, jb!.id);
    ws.ok(jb!.id, { present: [{ id: "c1", meta: {} }] });
    ws.ok(ja!.id, { present: [{ id: "x", meta: {} }, { id: "c1", meta: {} }] });
    assert.deepEqual(await b, {
      success: true,
      present: [{ id: "c1", meta: {} }],
      states: undefined, // only joinRoom(room, cb) answers with the states
    });
    assert.deepEqual((await a).present.map((p) => p.id), ["x", "c1"]);
  });

  it("a refusal resolves success:false; getConnectionMetadata() rejects with its code", async () => {
    const net = fakeNet((f) => {
      if (f.op === "join") return new Error("forbidden");
      if (f.op === "meta") {
        return f.cid === "limited" ? new Error("rate_limited") : {
          meta: f.cid === "x" ? { userId: "ada" } : null,
        };
      }
      return {};
    });
    const { client } = await open<unknown, { userId: string }>(net);
    const r = await client.joinRoom("admin");
    assert.equal(r.success, false);
    assert.deepEqual(r.present, []);
    assert.ok(r.error instanceof PresenceError);
    assert.equal(r.error.code, "forbidden");
    assert.deepEqual(await client.getConnectionMetadata("x"), {
      userId: "ada",
    });
    assert.equal(await client.getConnectionMetadata("nobody"), null);
    await assert.rejects(
      client.getConnectionMetadata("limited"),
      (e) => e instanceof PresenceError && e.code === "rate_limited",
    );
  });

  it("joinRoom(room, cb) joins and subscribes in one request; leaveRoom() drops both", async () => {
    const net = fakeNet(roomServer(() => [{ id: "c1", meta: {} }], () => [["c1", "hi"]]));
    const { client, ws } = await open(net);
    const updates: PresenceUpdate[] = [];
    const r = await client.joinRoom("a", (u) => updates.push(u));
    assert.deepEqual(r, {
      success: true,
      present: [{ id: "c1", meta: {} }],
      states: new Map([["c1", "hi"]]),
    });
    assert.deepEqual(ws.ops(), ["join"]);
    assert.equal(ws.sent[0]!.sub, true);
    ws.emit({ t: "ev", r: "a", e: [[2, "j", "x", {}]] });
    assert.deepEqual(updates.map((u) => u.type), ["join"]);
    assert.deepEqual(await client.leaveRoom("a"), { success: true });
    assert.deepEqual(ws.ops(), ["join", "unsub", "leave"]);
    ws.emit({ t: "ev", r: "a", e: [[3, "l", "x"]] });
    assert.equal(updates.length, 1);
  });

  it("joinRoom(room, cb) refused as a whole: nothing to undo, the callback never fires", async () => {
    const net = fakeNet((f) =>
      f.op === "join" && f.sub ? new Error("too_many_subscriptions") : { present: [] }
    );
    const { client, ws } = await open(net);
    const updates: PresenceUpdate[] = [];
    const r = await client.joinRoom("a", (u) => updates.push(u));
    assert.equal(r.success, false);
    assert.equal(r.error?.code, "too_many_subscriptions");
    ws.emit({ t: "ev", r: "a", e: [[1, "j", "x", {}]] });
    await sleep(5);
    assert.deepEqual(ws.ops(), ["join"]);
    assert.equal(updates.length, 0);
  });

  it("publishPresenceState() and clearPresenceState() send state/patch/clear and return seq", async () => {
    const net = fakeNet(roomServer(() => [], () => [], () => 6));
    const { client, ws } = await open(net);
    await client.joinRoom("a");
    const r = await client.publishPresenceState("a", {
      state: { x: 1 },
      expireAfter: 500,
    });
    assert.deepEqual(r, { success: true, seq: 7 });
    await client.publishPresenceState("a", { patch: { y: 2 } });
    assert.deepEqual(await client.clearPresenceState("a"), { success: true });
    assert.deepEqual(ws.sent.slice(1).map(({ id: _, ...f }) => f), [
      { op: "state", room: "a", state: { x: 1 }, expireAfter: 500 },
      { op: "state", room: "a", patch: { y: 2 } },
      { op: "clear", room: "a" },
    ]);
  });
});

describe("PresenceClient: queue and timeouts", () => {
  it("requests made while reconnecting are queued, bounded and time out", async () => {
    const net = fakeNet();
    const { client, ws } = await open(net, {
      requestTimeoutMs: 40,
      maxQueuedRequests: 2,
      reconnect: { minDelayMs: 5_000 },
    });
    ws.drop();
    assert.equal(client.status, "reconnecting");
    const a = client.leaveRoom("a");
    const b = client.clearPresenceState("a");
    const c = await client.unsubscribePresence("b");
    assert.equal(c.success, false);
    assert.equal(c.error?.code, "queue_full");
    const t0 = Date.now();
    const [ra, rb] = await Promise.all([a, b]);
    assert.equal(ra.error?.code, "timeout");
    assert.equal(rb.error?.code, "timeout");
    assert.ok(Date.now() - t0 >= 30);
    assert.equal(ws.sent.length, 0);
  });

  it("queued requests are sent after the reconnect, with the resume token", async () => {
    const net = fakeNet();
    const { client, ws } = await open(net);
    const token = "token-c1-1";
    ws.drop();
    const p = client.publishPresenceState("a", { state: 1 });
    await until(() => net.sockets.length === 2);
    const ws2 = net.last();
    assert.equal(ws2.url.searchParams.get("resume"), token);
    ws2.hello("c1", { resumed: true });
    assert.equal(client.resumed, true);
    assert.deepEqual(ws2.ops(), ["state"]);
    ws2.ok(ws2.sent[0]!.id, { seq: 3 });
    assert.deepEqual(await p, { success: true, seq: 3 });
  });

  it("requests in flight when the socket drops are sent again on the next socket", async () => {
    const net = fakeNet();
    const { client, ws } = await open(net);
    const p = client.getConnectionMetadata("x");
    assert.deepEqual(ws.ops(), ["meta"]);
    ws.drop();
    await until(() => net.sockets.length === 2);
    net.last().hello("c1", { resumed: true });
    const again = net.last().sent[0]!;
    assert.equal(again.op, "meta");
    net.last().ok(again.id, { meta: { a: 1 } });
    assert.deepEqual(await p, { a: 1 });
  });

  it("close() resolves pending requests with closed and never reconnects", async () => {
    const net = fakeNet();
    const { client, ws } = await open(net);
    const statuses: string[] = [];
    client.onStatus((s) => statuses.push(s));
    const p = client.joinRoom("a");
    await client.close();
    assert.equal(ws.closeCode, 1000);
    const r = await p;
    assert.equal(r.success, false);
    assert.equal(r.error?.code, "closed");
    assert.equal(client.status, "closed");
    assert.deepEqual(statuses, ["closed"]);
    assert.equal((await client.leaveRoom("a")).error?.code, "closed");
    await assert.rejects(
      client.getConnectionMetadata("x"),
      (e) => (e as PresenceError).code === "closed",
    );
    await sleep(20);
    assert.equal(net.sockets.length, 1);
  });
});

describe("PresenceClient: reconnect", () => {
  it("backs off exponentially with full jitter up to maxRetries, then closes", async () => {
    const net = fakeNet();
    const { client, ws } = await open(net, {
      requestTimeoutMs: 5_000,
      reconnect: { minDelayMs: 4, maxDelayMs: 20, maxRetries: 5 },
    });
    net.onSocket = (s) => realSetTimeout(() => s.drop());
    const rolls = [1, 0.5, 0, 1, 1];
    Math.random = () => rolls.shift() ?? 1;
    const delays: number[] = [];
    globalThis.setTimeout = ((fn: () => void, ms?: number) => {
      if ((ms ?? 0) < 1_000) delays.push(ms ?? 0);
      return realSetTimeout(fn, ms);
    }) as typeof setTimeout;
    const pending = client.leaveRoom("a");
    ws.drop();
    await until(() => client.status === "closed");
    globalThis.setTimeout = realSetTimeout;
    // Caps: 4, 8, 16, 20 (max), 20; multiplied by the rolls.
    assert.deepEqual(delays, [4, 4, 0, 20, 20]);
    assert.equal(net.sockets.length, 6);
    assert.equal((await pending).error?.code, "closed");
  });

  it("keeps every delay within [0, min(max, min * 2^attempt)] and resets after a hello", async () => {
    const net = fakeNet();
    const { client, ws } = await open(net, {
      requestTimeoutMs: 5_000,
      reconnect: { minDelayMs: 3, maxDelayMs: 12 },
    });
    let drops = 4;
    net.onSocket = (s) =>
      realSetTimeout(() => drops-- > 0 ? s.drop() : s.hello("c1", { resumed: true }));
    const delays: number[] = [];
    globalThis.setTimeout = ((fn: () => void, ms?: number) => {
      if ((ms ?? 0) < 1_000) delays.push(ms ?? 0);
      return realSetTimeout(fn, ms);
    }) as typeof setTimeout;
    ws.drop();
    await until(() => client.status === "open");
    net.onSocket = (s) => realSetTimeout(() => s.hello("c1", { resumed: true }));
    net.last().drop();
    await until(() => client.status === "open" && net.sockets.length === 7);
    globalThis.setTimeout = realSetTimeout;
    const caps = [3, 6, 12, 12, 12, 3];
    assert.equal(delays.length, caps.length);
    delays.forEach((d, i) => assert.ok(d >= 0 && d <= caps[i]!, `delay ${d} over ${caps[i]}`));
  });

  it("after a non-resumed reconnect it rejoins, resubscribes and republishes", async () => {
    let me = "c1";
    let seq = 2;
    const net = fakeNet(roomServer(
      () => [{ id: "x", meta: {} }, { id: me, meta: {} }],
      () => [["x", "hi"]],
      () => seq,
    ));
    const { client, ws } = await open(net);
    const updates: PresenceUpdate[] = [];
    await client.joinRoom("a", (u) => updates.push(u));
    await client.joinRoom("b");
    await client.joinRoom("c");
    await client.publishPresenceState("a", {
      state: { n: 1, m: 1 },
      expireAfter: 5_000,
    });
    await client.publishPresenceState("a", {
      patch: { m: 2 },
      expireAfter: 5_000,
    });
    await client.publishPresenceState("b", { state: "short", expireAfter: 15 });
    await client.publishPresenceState("c", { state: "kept" });
    await sleep(25);
    ws.drop();
    const queued = client.getConnectionMetadata("x");
    await until(() => net.sockets.length === 2);
    me = "c2";
    seq = 9;
    const ws2 = net.last();
    ws2.hello("c2");
    assert.equal(client.resumed, false);
    assert.equal(client.connectionId, "c2");
    assert.deepEqual(ws2.ops(), [
      "join",
      "state",
      "join",
      "join",
      "state",
      "sub",
      "meta",
    ]);
    const [, stateA, , , stateC, sub] = ws2.sent;
    assert.deepEqual(stateA!.state, { n: 1, m: 2 });
    assert.ok(stateA!.expireAfter! > 4_000 && stateA!.expireAfter! <= 5_000);
    assert.deepEqual({ ...stateC, id: 0 }, {
      op: "state",
      room: "c",
      state: "kept",
      rs: 1, // a restore: paid from the connection's restore credit
      id: 0,
    });
    assert.equal(sub!.room, "a");
    await client.joinRoom("a"); // settle the answers
    // The resubscribe's snapshot is delivered as a diff: c1 left, c2 joined.
    assert.deepEqual(updates, [
      { type: "leave", room: "a", connectionId: "c1", seq: 9 },
      { type: "join", room: "a", connectionId: "c2", meta: {}, seq: 9 },
    ]);
    assert.equal(await queued, null);
  });

  it("after a resumed reconnect it sends nothing and applies snap frames as a diff", async () => {
    const net = fakeNet(
      roomServer(() => [{ id: "c1", meta: {} }, { id: "x", meta: {} }]),
    );
    const { client, ws } = await open(net);
    const updates: PresenceUpdate[] = [];
    await client.joinRoom("a", (u) => updates.push(u));
    await client.publishPresenceState("a", { state: 1 });
    ws.drop();
    await until(() => net.sockets.length === 2);
    const ws2 = net.last();
    ws2.hello("c1", { resumed: true });
    assert.equal(client.resumed, true);
    assert.equal(client.status, "open");
    ws2.emit({
      t: "snap",
      r: "a",
      seq: 5,
      present: [{ id: "c1", meta: {} }, { id: "y", meta: {} }],
      states: [],
    });
    assert.deepEqual(updates, [
      { type: "leave", room: "a", connectionId: "x", seq: 5 },
      { type: "join", room: "a", connectionId: "y", meta: {}, seq: 5 },
    ]);
    ws2.emit({ t: "ev", r: "a", e: [[6, "s", "y", "hi"]] });
    assert.equal(updates.length, 3);
    assert.deepEqual(ws2.sent, []);
  });

  it("a join answered just before a fresh reconnect is restored while its subscription is still pending (sim seed 30123)", async () => {
    // Joined on the old connection, the callback's subscription not answered
    // yet when the socket drops: the new connection must join the room too.
    let answerFull = true;
    const net = fakeNet((f) => {
      if (f.op === "join") return { present: [] };
      if (f.op === "sub" && f.mode === "count") return { c: 0, u: 0 };
      if (f.op === "sub") return answerFull ? { seq: 1, present: [], states: [] } : undefined;
      return {};
    });
    const { client, ws } = await open(net);
    await client.subscribePresence("r", () => {}, { mode: "count" });
    answerFull = false;
    const joined = client.joinRoom("r", () => {});
    await until(() => ws.sent.some((f) => f.op === "sub" && f.mode !== "count"));
    assert.deepEqual(ws.ops(), ["sub", "join", "sub"]);
    ws.drop();
    await until(() => net.sockets.length === 2);
    answerFull = true;
    const ws2 = net.last();
    ws2.hello("c2");
    assert.equal((await joined).success, true);
    assert.ok(
      ws2.sent.some((f) => f.op === "join" && f.room === "r"),
      `the new connection joins r: ${ws2.ops()}`,
    );
  });
});

describe("PresenceClient: heartbeat", () => {
  it("answers pings and reconnects when the server goes silent past the deadline", async () => {
    const net = fakeNet();
    const client = makeClient(net);
    const p = client.connect();
    const ws = net.last();
    ws.hello("c1", { hb: [10, 80] });
    await p;
    // 200 ms of pings every 10 ms: well past the 80 ms deadline, still alive.
    let lastPingAt = 0;
    for (let i = 0; i < 20; i++) {
      lastPingAt = Date.now();
      ws.emit({ t: "ping" });
      await sleep(10);
    }
    assert.equal(ws.sent.filter((f) => f.op === "pong").length, 20);
    assert.equal(net.sockets.length, 1);
    assert.equal(ws.closeCode, null);
    await until(() => net.sockets.length === 2, 500);
    // Not before the deadline, counted from the last ping the client got
    // (counting from after the loop's last sleep made a slow timer look early):
    // no ping or answer for (I + T) / 2 = 45 ms is a dead link (before
    // 2026-12-07 the client waited for T = 80 ms of silence).
    assert.ok(
      Date.now() - lastPingAt >= (10 + 80) / 2,
      `reconnected ${Date.now() - lastPingAt} ms after the last ping`,
    );
    assert.equal(ws.closeCode, 4408);
    assert.equal(net.last().url.searchParams.get("resume"), "token-c1-1");
  });
});

describe("PresenceClient: heartbeat, events alone", () => {
  it("resumes once no ping or answer came for (I + T) / 2, even while events keep arriving (simulation seed 40454)", async () => {
    // The server closes a connection T after it last heard from it. Events
    // keep the link looking alive from the client's side while its own
    // frames may be lost: waiting for T of silence could resume past the
    // server's grace window, a leave for a live client.
    const I = 40, T = 200;
    const net = fakeNet();
    const client = makeClient(net);
    const p = client.connect();
    const ws = net.last();
    ws.hello("c1", { hb: [I, T] });
    await p;
    const events = setInterval(() => ws.emit({ t: "ev", r: "elsewhere", e: [] }), 10);
    try {
      // Pings on the server's schedule (one per I of our silence): alive.
      let lastPingAt = Date.now();
      for (let i = 0; i < 8; i++) {
        await sleep(I);
        lastPingAt = Date.now();
        ws.emit({ t: "ping" });
      }
      assert.equal(net.sockets.length, 1, "pings on schedule keep the link");
      // The pings stop (our pongs are lost); events still arrive every 10 ms.
      await until(() => net.sockets.length === 2, 1000);
      const after = Date.now() - lastPingAt;
      assert.ok(
        after >= (I + T) / 2 && after < T,
        `resumed ${after} ms after the last ping: not before (I + T) / 2, well before T`,
      );
      assert.equal(ws.closeCode, 4408);
      assert.equal(net.last().url.searchParams.get("resume"), "token-c1-1");
    } finally {
      clearInterval(events);
      client.close();
    }
  });
});

describe("PresenceClient: subscriptions", () => {
  it("buffers events that arrive before the sub answer and resyncs once on a gap", async () => {
    const net = fakeNet();
    const { client, ws } = await open(net);
    const updates: PresenceUpdate[] = [];
    const p = client.subscribePresence("a", (u) => updates.push(u), {
      users: true,
    });
    const sub = ws.sent[0]!;
    assert.deepEqual({ ...sub, id: 0 }, {
      op: "sub",
      room: "a",
      users: true,
      q: 0, // the sequence its view has seen: none yet
      id: 0,
    });
    ws.emit({
      t: "ev",
      r: "a",
      e: [[2, "j", "y", { n: 1 }], [2, "u", "ada", 1]],
    });
    ws.ok(sub.id, {
      seq: 1,
      present: [{ id: "x", meta: {} }],
      states: [["x", 5]],
      users: [],
    });
    const r = await p;
    assert.equal(r.success, true);
    assert.deepEqual(r.present, ["x", "y"]);
    assert.deepEqual(r.members, [{ id: "x", meta: {} }, {
      id: "y",
      meta: { n: 1 },
    }]);
    assert.deepEqual([...r.states], [["x", 5]]);
    assert.deepEqual(r.users, ["ada"]);
    assert.deepEqual(updates, []);
    // seq 3 is missing: one re-sub, whatever else arrives meanwhile.
    ws.emit({ t: "ev", r: "a", e: [[4, "l", "x"]] });
    ws.emit({ t: "ev", r: "a", e: [[5, "s", "y", "hi"]] });
    assert.deepEqual(ws.ops(), ["sub", "sub"]);
    assert.deepEqual(updates, []);
    ws.ok(ws.sent[1]!.id, {
      seq: 4,
      present: [{ id: "y", meta: { n: 1 } }, { id: "z", meta: {} }],
      states: [],
      users: ["ada"],
    });
    await until(() => updates.length === 3);
    assert.deepEqual(updates, [
      { type: "leave", room: "a", connectionId: "x", seq: 4 },
      { type: "join", room: "a", connectionId: "z", meta: {}, seq: 4 },
      { type: "state", room: "a", connectionId: "y", state: "hi", seq: 5 },
    ]);
  });

  it("delivers user online/offline only to users: true subscriptions", async () => {
    const net = fakeNet(roomServer(() => []));
    const { client, ws } = await open(net);
    const plain: PresenceUpdate[] = [];
    const withUsers: PresenceUpdate[] = [];
    await client.subscribePresence("a", (u) => plain.push(u));
    await client.subscribePresence("b", (u) => withUsers.push(u), {
      users: true,
    });
    for (const r of ["a", "b"]) {
      ws.emit({ t: "ev", r, e: [[2, "j", "x", {}], [2, "u", "ada", 1]] });
    }
    assert.deepEqual(plain.map((u) => u.type), ["join"]);
    assert.deepEqual(withUsers.map((u) => u.type), ["join", "userOnline"]);
  });

  it("count mode reports occupancy from the answer and cnt frames", async () => {
    const net = fakeNet((f) => (f.op === "sub" ? { c: 3, u: 2 } : {}));
    const { client, ws } = await open(net);
    const updates: PresenceUpdate[] = [];
    const r = await client.subscribePresence("a", (u) => updates.push(u), {
      mode: "count",
    });
    assert.equal(ws.sent[0]!.mode, "count");
    assert.deepEqual(r.count, { connections: 3, users: 2 });
    ws.emit({ t: "cnt", r: "a", c: 4, u: 2 });
    assert.deepEqual(updates, [{
      type: "count",
      room: "a",
      connections: 4,
      users: 2,
    }]);
  });

  it("presence() streams a sync chunk, then updates, and unsubscribes on cancel", async () => {
    const net = fakeNet(
      roomServer(() => [{ id: "x", meta: {} }], () => [["x", 1]]),
    );
    const { client, ws } = await open(net);
    const reader = client.presence("a").getReader();
    const first = await reader.read();
    assert.deepEqual(
      first.value,
      {
        type: "sync",
        room: "a",
        present: ["x"],
        states: new Map([["x", 1]]),
        members: [{ id: "x", meta: {} }],
      } satisfies PresenceSync,
    );
    ws.emit({ t: "ev", r: "a", e: [[2, "l", "x"]] });
    assert.deepEqual((await reader.read()).value, {
      type: "leave",
      room: "a",
      connectionId: "x",
      seq: 2,
    });
    await reader.cancel();
    assert.deepEqual(ws.ops(), ["sub", "unsub"]);
  });

  it("presence() ends when the client closes", async () => {
    const net = fakeNet(roomServer(() => []));
    const { client } = await open(net);
    const reader = client.presence("a").getReader();
    assert.equal((await reader.read()).value?.type, "sync");
    await client.close();
    assert.equal((await reader.read()).done, true);
  });

  it("a refused presence() stream errors with the PresenceError", async () => {
    const net = fakeNet(() => new Error("not_tracked"));
    const { client } = await open(net);
    await assert.rejects(
      client.presence("nope").getReader().read(),
      (e) => e instanceof PresenceError && e.code === "not_tracked",
    );
  });
});

describe("createPresence()", () => {
  type State = { name: string; n?: number };
  type Meta = { userId: string };

  function setup(saved?: string) {
    const store = new Map<string, string>(saved ? [["me", saved]] : []);
    const desc = Object.getOwnPropertyDescriptor(globalThis, "localStorage");
    Object.defineProperty(globalThis, "localStorage", {
      configurable: true,
      value: {
        getItem: (k: string) => store.get(k) ?? null,
        setItem: (k: string, v: string) => store.set(k, v),
      },
    });
    const restore = () => {
      if (desc) Object.defineProperty(globalThis, "localStorage", desc);
      else delete (globalThis as { localStorage?: unknown }).localStorage;
    };
    const net = fakeNet(roomServer(
      () => [
        { id: "c1", meta: { userId: "me" } },
        { id: "x1", meta: { userId: "ada" } },
        { id: "x2", meta: { userId: "ada" } },
        { id: "anon", meta: {} },
      ],
      () => [["x1", { name: "Ada", n: 1 }]],
    ));
    return { store, restore, net };
  }

  it("groups connections into users and coalesces updates", async () => {
    const { restore, net } = setup();
    try {
      const { client, ws } = await open<State, Meta>(net);
      const calls: PresenceUser<State>[][] = [];
      const presence = createPresence<State, Meta>({
        client,
        room: "doc",
        metadataIdentifier: (m) => m.userId,
        onUpdate: (users) => calls.push(users),
      });
      await presence.ready;
      await sleep();
      assert.equal(calls.length, 1);
      assert.deepEqual(presence.users, [
        {
          id: "me",
          meta: { userId: "me" },
          state: null,
          connections: ["c1"],
          tabCount: 1,
        },
        {
          id: "ada",
          meta: { userId: "ada" },
          state: { name: "Ada", n: 1 },
          connections: ["x1", "x2"],
          tabCount: 2,
        },
        {
          id: "anon",
          meta: {},
          state: null,
          connections: ["anon"],
          tabCount: 1,
        },
      ]);
      ws.emit({
        t: "ev",
        r: "doc",
        e: [[2, "s", "x2", { name: "Ada", n: 2 }], [3, "l", "x1"], [
          4,
          "j",
          "b1",
          { userId: "bob" },
        ]],
      });
      await sleep();
      assert.equal(calls.length, 2);
      assert.deepEqual(calls[1], [
        {
          id: "me",
          meta: { userId: "me" },
          state: null,
          connections: ["c1"],
          tabCount: 1,
        },
        {
          id: "ada",
          meta: { userId: "ada" },
          state: { name: "Ada", n: 2 },
          connections: ["x2"],
          tabCount: 1,
        },
        {
          id: "anon",
          meta: {},
          state: null,
          connections: ["anon"],
          tabCount: 1,
        },
        {
          id: "bob",
          meta: { userId: "bob" },
          state: null,
          connections: ["b1"],
          tabCount: 1,
        },
      ]);
      // The most recently updated connection with a state wins.
      ws.emit({
        t: "ev",
        r: "doc",
        e: [[5, "j", "x3", { userId: "ada" }], [6, "s", "x3", {
          name: "Ada 3",
        }]],
      });
      ws.emit({ t: "ev", r: "doc", e: [[7, "s", "x3", null]] });
      await sleep();
      assert.deepEqual(presence.users[1], {
        id: "ada",
        meta: { userId: "ada" },
        state: { name: "Ada", n: 2 },
        connections: ["x2", "x3"],
        tabCount: 2,
      });
    } finally {
      restore();
    }
  });

  it("falls back to stateIdentifier, then the connection id", async () => {
    const { restore, net } = setup();
    try {
      const { client } = await open<State, Meta>(net);
      const presence = createPresence<State, Meta>({
        client,
        room: "doc",
        stateIdentifier: (s) => s.name,
      });
      await presence.ready;
      assert.deepEqual(presence.users.map((u) => u.id), [
        "c1",
        "Ada",
        "x2",
        "anon",
      ]);
    } finally {
      restore();
    }
  });

  it("publish() stores the state; a stored state is republished on creation; destroy() leaves", async () => {
    const { store, restore, net } = setup(JSON.stringify({ name: "Me" }));
    try {
      const { client, ws } = await open<State, Meta>(net);
      const presence = createPresence<State, Meta>({
        client,
        room: "doc",
        storageKey: "me",
      });
      await presence.ready;
      const republished = ws.sent.find((f) => f.op === "state");
      assert.deepEqual(republished?.state, { name: "Me" });
      const r = await presence.publish({ name: "Me", n: 2 });
      assert.equal(r.success, true);
      assert.equal(store.get("me"), JSON.stringify({ name: "Me", n: 2 }));
      await presence.destroy();
      assert.deepEqual(ws.ops().slice(-2), ["unsub", "leave"]);
    } finally {
      restore();
    }
  });

  it("ready rejects with the PresenceError when the room is refused", async () => {
    const net = fakeNet(() => new Error("forbidden"));
    const { client } = await open(net);
    const presence = createPresence({ client, room: "admin" });
    await assert.rejects(
      presence.ready,
      (e) => e instanceof PresenceError && e.code === "forbidden",
    );
  });
});

describe("PresenceClient: shared subscriptions and holds", () => {
  it("listeners on one room share one server subscription; the last to go unsubscribes", async () => {
    const net = fakeNet(roomServer(() => [{ id: "x", meta: {} }]));
    const { client, ws } = await open(net);
    const a: string[] = [], b: string[] = [];
    const cbA = (u: PresenceUpdate) => a.push(u.type);
    const cbB = (u: PresenceUpdate) => b.push(u.type);
    const [ra, rb] = await Promise.all([
      client.subscribePresence("r", cbA),
      client.subscribePresence("r", cbB),
    ]);
    assert.deepEqual(ws.ops(), ["sub"], "one server subscription");
    assert.deepEqual(ra.present, ["x"]);
    assert.deepEqual(rb.present, ["x"]);
    ws.emit({ t: "ev", r: "r", e: [[2, "j", "y", {}]] });
    assert.deepEqual(a, ["join"]);
    assert.deepEqual(b, ["join"]);
    assert.deepEqual(await client.unsubscribePresence("r", cbA), { success: true });
    assert.deepEqual(ws.ops(), ["sub"], "another listener remains");
    ws.emit({ t: "ev", r: "r", e: [[3, "l", "y"]] });
    assert.deepEqual(a, ["join"]);
    assert.deepEqual(b, ["join", "leave"]);
    // A late listener gets the current view without a request.
    const late: string[] = [];
    const rl = await client.subscribePresence("r", (u) => late.push(u.type));
    assert.deepEqual(rl.present, ["x"]);
    assert.deepEqual(ws.ops(), ["sub"]);
    await client.unsubscribePresence("r", cbB);
    assert.deepEqual(ws.ops(), ["sub"]);
    await client.unsubscribePresence("r");
    assert.deepEqual(ws.ops(), ["sub", "unsub"], "the last one unsubscribes");
  });

  it("a joinRoom whose join landed but whose subscription failed leaves again: the server would keep it in the room (found reviewing the client after an instrumented simulation run, seed 10302, made a join fail after it landed)", async () => {
    let subs = 0;
    const net = fakeNet((f) => {
      if (f.op === "sub") return subs++ === 0 ? { c: 0, u: 0 } : new Error("forbidden");
      return f.op === "join" ? { present: [] } : {};
    });
    const { client, ws } = await open(net);
    const counted = await client.subscribePresence("r", () => {}, { mode: "count" });
    assert.equal(counted.success, true);
    // Needs members: widens the shared subscription with a second `sub`, which fails.
    const r = await client.joinRoom("r", () => {});
    assert.equal(r.success, false);
    assert.equal(r.error?.code, "forbidden");
    await until(() => ws.ops().includes("leave"));
    assert.deepEqual(ws.ops(), ["sub", "join", "sub", "leave"]);
    // Not joined as far as the client knows, so a reconnect restores nothing.
    ws.drop();
    await until(() => net.sockets.length === 2);
    net.last().hello("c2");
    await sleep(20);
    assert.ok(!net.last().ops().includes("join"), `no join restored: ${net.last().ops()}`);
  });

  it("a listener that needs more widens the subscription; count listeners get counts from the view", async () => {
    let seq = 1;
    const net = fakeNet((f) => {
      if (f.op !== "sub") return {};
      return f.mode === "count"
        ? { c: 1, u: 1 }
        : { seq, present: [{ id: "x", meta: {} }], states: [], users: ["ux"] };
    });
    const { client, ws } = await open(net);
    const counts: unknown[] = [], full: string[] = [];
    const rc = await client.subscribePresence("r", (u) => counts.push(u), { mode: "count" });
    assert.deepEqual(rc.count, { connections: 1, users: 1 });
    assert.equal(ws.sent[0]!.mode, "count");
    const rf = await client.subscribePresence("r", (u) => full.push(u.type), { users: true });
    assert.deepEqual(ws.ops(), ["sub", "sub"], "widened to full with users");
    assert.equal(ws.sent[1]!.mode, undefined);
    assert.equal(ws.sent[1]!.users, true);
    assert.deepEqual(rf.users, ["ux"]);
    assert.deepEqual(counts, [], "the widening itself changes no count");
    seq = 2;
    ws.emit({ t: "ev", r: "r", e: [[2, "j", "y", {}], [2, "u", "uy", 1]] });
    assert.deepEqual(full, ["join", "userOnline"]);
    assert.deepEqual(counts, [
      { type: "count", room: "r", connections: 2, users: 1 },
      { type: "count", room: "r", connections: 2, users: 2 },
    ]);
    // A state change is no count change: count listeners hear nothing.
    ws.emit({ t: "ev", r: "r", e: [[3, "s", "y", { x: 1 }]] });
    assert.equal(counts.length, 2);
    assert.deepEqual(full, ["join", "userOnline", "state"]);
    // A count listener added to the full subscription needs no request.
    const rc2 = await client.subscribePresence("r", () => {}, { mode: "count" });
    assert.deepEqual(rc2.count, { connections: 2, users: 2 });
    assert.equal(ws.sent.length, 2);
  });

  it("joinRoom holds: two listeners make one join; the room is left when the last lets go", async () => {
    const net = fakeNet(roomServer(() => [{ id: "c1", meta: {} }]));
    const { client, ws } = await open(net);
    const a: string[] = [], b: string[] = [];
    const cbA = (u: PresenceUpdate) => a.push(u.type);
    const cbB = (u: PresenceUpdate) => b.push(u.type);
    const ra = await client.joinRoom("r", cbA);
    const rb = await client.joinRoom("r", cbB);
    assert.equal(ra.success && rb.success, true);
    assert.deepEqual(rb.present, [{ id: "c1", meta: {} }]);
    assert.deepEqual(ws.ops(), ["join"], "one join with sub on the wire");
    ws.emit({ t: "ev", r: "r", e: [[2, "j", "z", {}]] });
    assert.deepEqual([a, b], [["join"], ["join"]]);
    assert.deepEqual(await client.leaveRoom("r", cbA), { success: true });
    assert.deepEqual(ws.ops(), ["join"], "still held by B");
    ws.emit({ t: "ev", r: "r", e: [[3, "l", "z"]] });
    assert.deepEqual([a, b], [["join"], ["join", "leave"]]);
    assert.deepEqual(await client.leaveRoom("r", cbB), { success: true });
    assert.deepEqual(ws.ops(), ["join", "unsub", "leave"]);
  });

  it("joinRoom(room, cb, { mode: 'count' }) joins and subscribes to counts in one request", async () => {
    const net = fakeNet((f) => (f.op === "join" ? { c: 2, u: 1 } : {}));
    const { client, ws } = await open(net);
    const got: unknown[] = [];
    const r = await client.joinRoom("r", (u) => got.push(u), { mode: "count" });
    assert.equal(r.success, true);
    assert.deepEqual(ws.ops(), ["join"]);
    assert.equal(ws.sent[0]!.sub, true);
    assert.equal(ws.sent[0]!.mode, "count");
    ws.emit({ t: "cnt", r: "r", c: 3, u: 2 });
    assert.deepEqual(got, [{ type: "count", room: "r", connections: 3, users: 2 }]);
  });

  it("createPresence, presence() and subscribePresence coexist on one room", async () => {
    const net = fakeNet(roomServer(() => [{ id: "c1", meta: { userId: "ada" } }]));
    const { client, ws } = await open(net);
    const seen: string[] = [];
    await client.subscribePresence("r", (u) => seen.push(u.type));
    const p = createPresence({ client, room: "r", metadataIdentifier: (m) => m.userId as string });
    await p.ready;
    const reader = client.presence("r").getReader();
    assert.equal((await reader.read()).value?.type, "sync");
    ws.emit({ t: "ev", r: "r", e: [[2, "j", "c2", { userId: "bob" }]] });
    await sleep();
    assert.deepEqual(seen, ["join"]);
    assert.deepEqual(p.users.map((u) => u.id), ["ada", "bob"]);
    assert.equal((await reader.read()).value?.type, "join");
    await p.destroy();
    // destroy() released createPresence's hold only: the others still listen.
    ws.emit({ t: "ev", r: "r", e: [[3, "l", "c2"]] });
    assert.deepEqual(seen, ["join", "leave"]);
    assert.equal((await reader.read()).value?.type, "leave");
    assert.equal(ws.ops().filter((o) => o === "unsub").length, 0);
    await reader.cancel();
  });
});

describe("PresenceClient: auth on every dial", () => {
  it("calls auth before every dial and uses its params and protocols", async () => {
    const net = fakeNet();
    let n = 0;
    const client = makeClient(net, {
      params: { keep: "1", token: "stale" },
      auth: async () => {
        await sleep(1);
        n++;
        return { params: { token: `t${n}` }, protocols: ["presently", `p${n}`] };
      },
    });
    const p = client.connect();
    await until(() => net.sockets.length === 1);
    assert.equal(net.last().url.searchParams.get("token"), "t1");
    assert.equal(net.last().url.searchParams.get("keep"), null, "auth's params replace params");
    assert.deepEqual(net.last().protocols, ["presently", "p1"]);
    net.last().hello("c1");
    await p;
    net.last().drop(1006);
    await until(() => net.sockets.length === 2);
    assert.equal(n, 2);
    assert.equal(net.last().url.searchParams.get("token"), "t2");
    assert.equal(net.last().url.searchParams.get("resume"), "token-c1-1");
  });

  it("a 4401 refusal calls auth again at once; a second in a row stops with unauthorized", async () => {
    const net = fakeNet();
    let n = 0;
    const client = makeClient(net, { auth: () => ({ params: { token: `t${++n}` } }) });
    const p = client.connect();
    await until(() => net.sockets.length === 1);
    net.last().hello("c1");
    await p;
    const statuses: string[] = [];
    client.onStatus((s) => statuses.push(s));
    net.last().drop(4401); // token expired on the live socket
    await until(() => net.sockets.length === 2);
    assert.equal(net.last().url.searchParams.get("token"), "t2");
    net.last().hello("c1", { resumed: true }); // the fresh token is accepted
    assert.equal(client.status, "open");
    net.last().drop(4401);
    await until(() => net.sockets.length === 3);
    net.last().drop(4401); // refused again: final
    await until(() => client.status === "unauthorized");
    assert.deepEqual(statuses, ["reconnecting", "open", "reconnecting", "unauthorized"]);
    await sleep(20);
    assert.equal(net.sockets.length, 3, "no retry loop");
    assert.equal(n, 3);
  });

  it("auth that throws stops the client with unauthorized, and connect() rejects", async () => {
    const net = fakeNet();
    const client = makeClient(net, {
      auth: () => Promise.reject(new Error("no session")),
    });
    await assert.rejects(
      client.connect(),
      (e) => e instanceof PresenceError && e.code === "unauthorized",
    );
    assert.equal(client.status, "unauthorized");
    assert.equal(net.sockets.length, 0);
  });
});

describe("ThrottledPresenceClient", () => {
  it("sends one request per window, one in flight, merges patches, supersedes the rest", async () => {
    const net = fakeNet(roomServer(() => [{ id: "c1", meta: {} }]));
    const client = new ThrottledPresenceClient<Record<string, unknown>>("ws://presence.test/ws", {
      WebSocket: net.WebSocket,
      throttleMs: 40,
    });
    clients.push(client as unknown as PresenceClient<never, never>);
    const p = client.connect();
    net.last().hello("c1");
    await p;
    const ws = net.last();
    await client.joinRoom("r");
    const results = [];
    results.push(client.publishPresenceState("r", { state: { a: 1 } }));
    for (let i = 0; i < 5; i++) {
      results.push(client.publishPresenceState("r", { patch: { cur: { x: i } } }));
    }
    results.push(client.publishPresenceState("r", { patch: { cur: { y: 9 } }, expireAfter: 500 }));
    const out = await Promise.all(results);
    const states = ws.sent.filter((f) => f.op === "state");
    assert.equal(states.length, 2, "the first at once, the rest merged into one");
    assert.deepEqual(states[0]!.state, { a: 1 });
    assert.deepEqual(states[1]!.patch, { cur: { x: 4, y: 9 } });
    assert.equal(states[1]!.expireAfter, 500);
    assert.deepEqual(out.map((r) => r.superseded === true), [
      false,
      true,
      true,
      true,
      true,
      true,
      false,
    ]);
    // A patch into a value an earlier patch deleted cannot merge: sent next, in order.
    const q = [
      client.publishPresenceState("r", { patch: { cur: null } }),
      client.publishPresenceState("r", { patch: { cur: { x: 1 } } }),
    ];
    await Promise.all(q);
    const tail = ws.sent.filter((f) => f.op === "state").slice(2).map((f) => f.patch);
    assert.deepEqual(tail, [{ cur: null }, { cur: { x: 1 } }]);
    // clearPresenceState drops what is queued.
    const a = client.publishPresenceState("r", { state: { a: 2 } });
    const b = client.publishPresenceState("r", { state: { a: 3 } });
    await client.clearPresenceState("r");
    assert.equal((await b).superseded, true);
    await a;
    assert.equal(ws.sent.at(-1)!.op, "clear");
  });
});

describe("PresenceClient: shared subscription regressions (simulation seeds)", () => {
  it("a count listener after a full one widens to users, whatever the order (sim seed 4)", async () => {
    const net = fakeNet(roomServer(() => [{ id: "x", meta: {} }]));
    const { client, ws } = await open(net);
    await client.joinRoom("r", () => {});
    await client.subscribePresence("r", () => {}, { mode: "count" });
    assert.deepEqual(ws.ops(), ["join", "sub"]);
    assert.equal(ws.sent[1]!.users, true, "user counts need the user list");
    assert.equal(ws.sent[1]!.mode, undefined);
  });

  it("a resync retry stops once a widening request took over (sim seed 23)", async () => {
    let refuse = true;
    const net = fakeNet((f) => {
      if (f.op !== "sub") return {};
      if (refuse && f.rs) return new Error("store_error");
      return { seq: 1, present: [], states: [], users: [] };
    });
    const { client } = await open(net);
    await client.subscribePresence("r", () => {});
    net.last().drop(1006); // a new connection: the subscription is restored
    await until(() => net.sockets.length === 2);
    const ws2 = net.last();
    ws2.hello("c2");
    await until(() => ws2.sent.some((f) => f.op === "sub"));
    // While the restore is failing and retried, a listener widens the subscription.
    const widened = client.subscribePresence("r", () => {}, { users: true });
    await until(() => ws2.sent.some((f) => f.op === "sub" && f.users));
    refuse = false;
    await widened;
    await sleep(400); // past the restore's next retry
    const subs = ws2.sent.filter((f) => f.op === "sub");
    const after = subs.slice(subs.findIndex((f) => f.users));
    assert.ok(after.every((f) => f.users === true), JSON.stringify(subs));
  });
});
