// The client in real apps, on real sockets (127.0.0.1, port 0), under Deno
// and Bun: short-lived tokens refreshed on every dial (and after a 4401
// token_expired refusal) resume the same connection with no leave seen by
// others; a throttled client sends at most one state request per window.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PresenceError } from "../mod.ts";
import { PresenceClient, type PresenceUpdate } from "../client.ts";
import { ThrottledPresenceClient } from "../throttle.ts";
import { type Running, startServer, waitUntil } from "./_harness.ts";
import { type CuttableProxy, startProxy } from "./_proxy.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A token: `user.expiresAtMs`. */
const token = (user: string, ttlMs: number) => `${user}.${Date.now() + ttlMs}`;

/** A WebSocket that records the frames the client sends and its close codes. */
function recordingWebSocket(sent: Array<Record<string, unknown>>, closes: number[]) {
  return class extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      this.addEventListener("close", (e) => closes.push(e.code));
    }
    override send(data: string): void {
      sent.push(JSON.parse(data));
      super.send(data);
    }
  } as unknown as typeof WebSocket;
}

describe("auth on every dial, with short-lived tokens", () => {
  let running: Running;
  let proxy: CuttableProxy;
  const clients: PresenceClient[] = [];

  before(async () => {
    running = await startServer({
      leaveGraceMs: 5_000,
      userKey: "userId",
      authenticate: (req) => {
        const t = new URL(req.url).searchParams.get("token") ?? "";
        const [user, exp] = t.split(".");
        if (!user || !exp) return null;
        if (Number(exp) < Date.now()) throw new PresenceError("token_expired", "Token expired");
        return { userId: user };
      },
    }, (s) => s.trackPresence("doc"));
    proxy = await startProxy(running.port);
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await proxy.close();
    await running.close();
  });

  /** An observer in the room, recording every update. */
  async function observer(): Promise<PresenceUpdate[]> {
    const seen: PresenceUpdate[] = [];
    const c = new PresenceClient(running.url, { params: { token: token("obs", 60_000) } });
    clients.push(c);
    await c.connect();
    const r = await c.subscribePresence("doc", (u) => seen.push(u));
    assert.equal(r.success, true);
    return seen;
  }

  it("a token that lives 1 s, a drop at 2 s: the client resumes the same id on a fresh token, no leave", async () => {
    const seen = await observer();
    let dials = 0;
    const statuses: string[] = [];
    const client = new PresenceClient(proxy.url("/"), {
      reconnect: { minDelayMs: 50, maxDelayMs: 200 },
      auth: () => {
        dials++;
        return { params: { token: token("ada", 1_000) } };
      },
    });
    clients.push(client);
    client.onStatus((s) => statuses.push(s));
    await client.connect();
    assert.equal((await client.joinRoom("doc")).success, true);
    const id = client.connectionId!;
    await sleep(2_000); // the first token has expired
    proxy.cut();
    // (The reconnect can be faster than a poll: watch the status events.)
    await waitUntil(() => dials === 2 && client.status === "open", 5_000, "reconnected");
    assert.deepEqual(statuses.slice(-2), ["reconnecting", "open"]);
    assert.equal(dials, 2, "auth was called again for the reconnect");
    assert.equal(client.connectionId, id, "same connection id");
    assert.equal(client.resumed, true);
    await sleep(300);
    const mine = seen.filter((u) => "connectionId" in u && u.connectionId === id);
    assert.deepEqual(mine.map((u) => u.type), ["join"], "one join, no leave");
    const present = await running.server.getPresentConnections("doc");
    assert.ok(present.includes(id));
  });

  it("a stale token is refused with 4401 token_expired after the upgrade; auth is called again", async () => {
    const seen = await observer();
    const sent: Array<Record<string, unknown>> = [], closes: number[] = [];
    let current = token("bob", 1_000), calls = 0;
    const client = new PresenceClient(proxy.url("/"), {
      reconnect: { minDelayMs: 50, maxDelayMs: 200 },
      WebSocket: recordingWebSocket(sent, closes),
      // Like an app's cache: the cached token until a refusal makes it refresh.
      auth: () => {
        calls++;
        if (closes.at(-1) === 4401) current = token("bob", 60_000);
        return { params: { token: current } };
      },
    });
    clients.push(client);
    await client.connect();
    await client.joinRoom("doc");
    const id = client.connectionId!;
    await sleep(1_500);
    proxy.cut();
    await waitUntil(() => client.status === "open" && closes.includes(4401), 5_000);
    assert.equal(calls, 3, "first dial, stale token refused, fresh token");
    assert.equal(client.connectionId, id);
    await sleep(300);
    const mine = seen.filter((u) => "connectionId" in u && u.connectionId === id);
    assert.deepEqual(mine.map((u) => u.type), ["join"], "no leave for bob");
  });

  it("refused twice in a row, the client stops with status unauthorized (no retry loop)", async () => {
    let calls = 0;
    const client = new PresenceClient(running.url, {
      auth: () => ({ params: { token: token("cy", -1_000) } }),
    });
    clients.push(client);
    client.onStatus(() => calls++);
    await assert.rejects(
      client.connect(),
      (e) => e instanceof PresenceError && e.code === "unauthorized",
    );
    assert.equal(client.status, "unauthorized");
    await sleep(300);
    assert.equal(client.status, "unauthorized");
    assert.equal(calls, 2, "connecting, then unauthorized");
  });
});

describe("auth headers (Deno and Bun clients can set them; browsers cannot)", () => {
  it("the headers auth returns reach authenticate", async () => {
    let calls = 0;
    const s = await startServer({
      authenticate: (req) =>
        req.headers.get("authorization") === "Bearer abc" ? { userId: "ada" } : null,
    });
    const c = new PresenceClient(s.url, {
      auth: () => {
        calls++;
        return { headers: { authorization: "Bearer abc" } };
      },
    });
    await c.connect();
    assert.equal(c.status, "open");
    assert.equal(calls, 1);
    assert.deepEqual(await c.getConnectionMetadata(c.connectionId!), { userId: "ada" });
    await c.close();
    await s.close();
  });
});

describe("ThrottledPresenceClient on a real server", () => {
  let running: Running;
  after(() => running?.close());

  it("1000 publishes in 1 s at 50 ms: at most 21 state frames, the final state exact, none rate_limited", async () => {
    running = await startServer({}, (s) => s.trackPresence("board"));
    const sent: Array<Record<string, unknown>> = [];
    const client = new ThrottledPresenceClient<Record<string, unknown>>(running.url, {
      throttleMs: 50,
      WebSocket: recordingWebSocket(sent, []),
    });
    await client.connect();
    await client.joinRoom("board");
    const results = [];
    let expected: Record<string, unknown> = {};
    const t0 = Date.now();
    for (let i = 0; i < 1000; i++) {
      // Mostly cursor patches, a full state now and then, a field removed.
      if (i % 250 === 0) {
        expected = { name: "ada", cursor: { x: i, y: 0 }, tool: "pen" };
        results.push(client.publishPresenceState("board", { state: expected }));
      } else {
        const patch = i % 97 === 0 ? { tool: null } : { cursor: { x: i } };
        if ("tool" in patch) delete expected.tool;
        else expected = { ...expected, cursor: { ...(expected.cursor as object), x: i } };
        results.push(client.publishPresenceState("board", { patch }));
      }
      // Paced over 950 ms, so all 1000 calls fall inside the second even
      // when a timer fires late on a loaded machine.
      const due = t0 + Math.floor((i + 1) * 0.95);
      if (Date.now() < due) await sleep(due - Date.now());
    }
    const span = Date.now() - t0;
    const out = await Promise.all(results);
    const frames = sent.filter((f) => f.op === "state").length;
    const elapsed = Date.now() - t0;
    console.log(
      `[throttle] 1000 publishes over ${span} ms (answered by ${elapsed} ms) -> ${frames} state frames`,
    );
    // One request at once, then at most one per 50 ms window while calls come
    // in, plus the trailing one: floor(span / 50) + 2, which is 21 for a
    // span under 1 s.
    assert.ok(frames <= Math.floor(span / 50) + 2, `${frames} state frames over ${span} ms`);
    if (span < 1000) assert.ok(frames <= 21, `${frames} state frames`);
    assert.ok(frames >= 2);
    assert.ok(out.every((r) => r.success), "nothing refused (rate_limited or other)");
    assert.equal(out.filter((r) => !r.superseded).length, frames, "one real answer per frame");
    const states = await running.server.getPresenceStates("board");
    assert.deepEqual(states.get(client.connectionId!), expected);
    await client.close();
  });
});
