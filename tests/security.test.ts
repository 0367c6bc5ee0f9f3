// Security features on the current runtime's adapter (docs/SECURITY.md):
// authentication at upgrade (query, header, subprotocol), the origin
// allow-list, private metadata, state validation and its types, the merged
// patch size limit, and connection limits under concurrent upgrades.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { InferState, Metadata, PresenceServerOptions, StandardSchemaLike } from "../mod.ts";
import { PresenceError, PresenceServer } from "../mod.ts";
import { PresenceClient } from "../client.ts";
import { RawClient, type Running, RUNTIME, startServer } from "./_harness.ts";
import { RawWs } from "./_rawws.ts";

const USERS = new Map([["t-ada", "ada"], ["t-bob", "bob"], ["t-eve", "eve"]]);

/** Reads a token from `?token=`, `Authorization: Bearer`, or a `token.<t>` subprotocol. */
function authenticate(req: Request): Metadata | null {
  const query = new URL(req.url).searchParams.get("token");
  const header = req.headers.get("authorization")?.match(/^Bearer (.+)$/)?.[1];
  const protocol = (req.headers.get("sec-websocket-protocol") ?? "").split(",")
    .map((p) => p.trim()).find((p) => p.startsWith("token."))?.slice(6);
  const via = query ? "query" : header ? "header" : protocol ? "subprotocol" : null;
  const user = USERS.get(query ?? header ?? protocol ?? "");
  if (!user || !via) return null;
  return { name: user, via, email: `${user}@example.com`, secret: `s-${user}` };
}

describe(`security features (${RUNTIME})`, () => {
  let srv: Running;
  const opened: Array<RawClient | RawWs> = [];
  const client = async (query: string, protocols?: string[]) => {
    const c = new RawClient(`${srv.url}?v=1${query}`, protocols);
    opened.push(c);
    await c.opened;
    return c;
  };
  const raw = async (path: string, headers: Record<string, string> = {}, protocols?: string[]) => {
    const c = await RawWs.connect(srv.port, { path, headers, ...(protocols ? { protocols } : {}) });
    opened.push(c);
    return c;
  };

  before(async () => {
    srv = await startServer({
      authenticate,
      allowedOrigins: ["https://app.example"],
      privateMetadata: ["email", "secret"],
    }, (server) => {
      server.trackPresence(/^room:/);
      server.trackPresence("staff", { guard: (c) => c.metadata.secret === "s-ada" });
    });
  });

  after(async () => {
    for (const c of opened) c instanceof RawWs ? c.destroy() : c.ws.close();
    await srv.close();
  });

  it("authenticate() reads a token from the query string", async () => {
    const a = await client("&token=t-ada");
    const meta = await srv.server.getConnectionMetadata(a.cid);
    assert.equal(meta?.via, "query");
    assert.equal(meta?.name, "ada");
    const denied = await raw("/?v=1&token=forged");
    assert.equal(denied.status, 401);
  });

  it("authenticate() reads a token from a header", async () => {
    const a = await raw("/?v=1", { authorization: "Bearer t-bob" });
    assert.equal(a.status, 101);
    await a.waitFor(() => a.texts.length > 0);
    const hello = a.json()[0]!;
    assert.equal(hello.t, "hello");
    assert.equal((await srv.server.getConnectionMetadata(hello.cid as string))?.via, "header");
    const denied = await raw("/?v=1", { authorization: "Bearer t-nobody" });
    assert.equal(denied.status, 401);
    assert.equal(denied.texts.length, 0, "a refused upgrade never reaches the core");
  });

  it('authenticate() reads a token from a subprotocol, and the server answers "presently"', async () => {
    const a = await client("", ["presently", "token.t-eve"]);
    assert.equal(a.ws.protocol, "presently");
    assert.equal((await srv.server.getConnectionMetadata(a.cid))?.via, "subprotocol");
    const r = await raw("/?v=1", {}, ["presently", "token.t-eve"]);
    assert.equal(r.headers.get("sec-websocket-protocol"), "presently", "the token is never echoed");
    const denied = await raw("/?v=1", {}, ["presently", "token.t-mallory"]);
    assert.equal(denied.status, 401);
  });

  it("an Origin outside allowedOrigins gets 403; an allowed one or none (non-browser) connects", async () => {
    assert.equal((await raw("/?v=1&token=t-ada", { origin: "https://evil.example" })).status, 403);
    assert.equal((await raw("/?v=1&token=t-ada", { origin: "https://app.example" })).status, 101);
    assert.equal((await raw("/?v=1&token=t-ada")).status, 101);
  });

  it("private metadata fields never reach other clients: not by meta, join events, join or sub answers", async () => {
    const watcher = await client("&token=t-bob");
    const sub = await watcher.request("sub", { room: "room:priv" });
    assert.equal(sub.t, "ok");
    const ada = await client("&token=t-ada");
    const joined = await ada.request("join", { room: "room:priv", sub: true });
    const pub = { name: "ada", via: "query" };
    assert.deepEqual(joined.present, [{ id: ada.cid, meta: pub }]);
    const ev = await watcher.waitFor((f) => f.t === "ev");
    assert.deepEqual((ev.e as unknown[][])[0], [1, "j", ada.cid, pub]);
    assert.deepEqual((await watcher.request("meta", { cid: ada.cid })).meta, pub);
    const again = await watcher.request("sub", { room: "room:priv" });
    assert.deepEqual(again.present, [{ id: ada.cid, meta: pub }]);
    // The server itself and guards see everything.
    assert.equal((await srv.server.getConnectionMetadata(ada.cid))?.secret, "s-ada");
    assert.equal((await ada.request("join", { room: "staff" })).t, "ok");
    assert.equal((await watcher.request("join", { room: "staff" })).code, "forbidden");
    const everything = JSON.stringify([...watcher.frames, ...ada.frames]);
    assert.ok(!everything.includes("@example.com") && !everything.includes("s-ada"), everything);
  });

  it("publicMetadata given a list (its meaning before 0.2: fields made private) is refused with bad_request", () => {
    assert.throws(
      () => new PresenceServer({ publicMetadata: ["email"] } as unknown as PresenceServerOptions),
      (e: unknown) =>
        e instanceof PresenceError && e.code === "bad_request" && /privateMetadata/.test(e.message),
    );
  });

  it("privateMetadata and publicMetadata together: the private fields go first, then the function", async () => {
    const h = await startServer({
      authenticate: () => ({ name: "Ada", email: "ada@example.com", team: "x" }),
      privateMetadata: ["email"],
      publicMetadata: (meta) => ({ ...meta, shown: Object.keys(meta).sort().join(",") }),
    }, (server) => server.trackPresence("r"));
    try {
      const a = new RawClient(`${h.url}?v=1`);
      const b = new RawClient(`${h.url}?v=1`);
      await Promise.all([a.opened, b.opened]);
      await a.request("join", { room: "r" });
      const answer = await b.request("join", { room: "r" });
      const present = answer.present as Array<{ id: string; meta: Record<string, unknown> }>;
      const seen = present.find((p) => p.id === a.cid)!.meta;
      assert.deepEqual(seen, { name: "Ada", team: "x", shown: "name,team" });
      a.ws.close();
      b.ws.close();
    } finally {
      await h.close();
    }
  });

  it("publicMetadata as a function keeps only what it returns", async () => {
    const s = await startServer({
      authenticate,
      publicMetadata: (meta) => ({ name: meta.name }),
    }, (server) => server.trackPresence("lobby"));
    try {
      const a = new RawClient(`${s.url}?v=1&token=t-ada`);
      const b = new RawClient(`${s.url}?v=1&token=t-bob`);
      await Promise.all([a.opened, b.opened]);
      await b.request("sub", { room: "lobby" });
      assert.deepEqual((await a.request("join", { room: "lobby" })).present, [{
        id: a.cid,
        meta: { name: "ada" },
      }]);
      assert.deepEqual((await b.request("meta", { cid: a.cid })).meta, { name: "ada" });
      const ev = await b.waitFor((f) => f.t === "ev");
      assert.deepEqual(ev.e, [[1, "j", a.cid, { name: "ada" }]]);
      a.ws.close();
      b.ws.close();
    } finally {
      await s.close();
    }
  });

  it("a patch cannot grow a state past maxStateBytes, one small patch at a time", async () => {
    const a = await client("&token=t-ada");
    await a.request("join", { room: "room:grow" });
    const chunk = "x".repeat(6000);
    const codes: unknown[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await a.request("state", { room: "room:grow", patch: { [`k${i}`]: chunk } });
      codes.push(r.t === "ok" ? "ok" : r.code);
    }
    assert.deepEqual(codes, ["ok", "ok", "too_large", "too_large"]);
    const state = (await srv.server.getPresenceStates("room:grow")).get(a.cid) as Record<
      string,
      string
    >;
    assert.deepEqual(Object.keys(state), ["k0", "k1"]);
  });
});

describe(`application code that throws (${RUNTIME})`, () => {
  it("a throwing publicMetadata closes that socket with 1011, reports to onError, and the server lives on", async () => {
    const errors: string[] = [];
    let fail = true;
    const s = await startServer({
      onError: (e) => errors.push(`${e.code}: ${e.message}`),
      publicMetadata: (meta) => {
        if (fail) throw new Error("boom");
        return meta;
      },
    }, (server) => server.trackPresence("lobby"));
    try {
      const a = new RawClient(s.url);
      await assert.rejects(a.opened);
      assert.equal(a.closed?.code, 1011);
      assert.deepEqual(errors, ["internal: Opening a connection failed"]);
      fail = false;
      const b = new RawClient(s.url);
      await b.opened;
      assert.equal((await b.request("join", { room: "lobby" })).t, "ok");
      b.ws.close();
    } finally {
      await s.close();
    }
  });
});

describe(`state validation (${RUNTIME})`, () => {
  /** A Standard Schema written by hand, shaped like Zod's or Valibot's. */
  const cursor = {
    "~standard": {
      version: 1 as const,
      vendor: "test",
      validate(value: unknown) {
        const v = value as { x?: unknown; y?: unknown } | null;
        return typeof v?.x === "number" && typeof v?.y === "number"
          ? { value: { x: v.x, y: v.y } }
          : { issues: [{ message: "x and y must be numbers" }] };
      },
    },
  };
  const asSchema: StandardSchemaLike<{ x: number; y: number }> = cursor;
  const isTyping = (s: unknown): s is { typing: boolean } =>
    typeof (s as { typing?: unknown })?.typing === "boolean";

  it("InferState gives the client the schema's (or type guard's) state type", () => {
    type Cursor = InferState<typeof cursor>;
    const ok: Cursor = { x: 1, y: 2 };
    // @ts-expect-error x must be a number
    const bad: Cursor = { x: "1", y: 2 };
    type Typing = InferState<typeof isTyping>;
    const typing: Typing = { typing: true };
    const c = new PresenceClient<Cursor>("ws://127.0.0.1:9/", { reconnect: false });
    const publish = (s: Cursor) => c.publishPresenceState("doc", { state: s });
    assert.equal(typeof publish, "function");
    assert.deepEqual([ok, bad, typing, asSchema].length, 4);
  });

  it("the server enforces both validators; the state type flows to PresenceClient<State>", async () => {
    const s = await startServer({}, (server) => {
      server.trackPresence("doc", { validateState: cursor });
      server.trackPresence("chat", { validateState: isTyping });
    });
    const c = new PresenceClient<InferState<typeof cursor>>(s.url, { reconnect: false });
    try {
      await c.connect();
      await c.joinRoom("doc");
      assert.equal((await c.publishPresenceState("doc", { state: { x: 1, y: 2 } })).success, true);
      const bad = await c.publishPresenceState("doc", {
        state: { x: "no" } as unknown as { x: number; y: number },
      });
      assert.equal(bad.error?.code, "invalid_state");
      assert.equal(bad.error?.message, "State refused: x and y must be numbers");
      const t = new RawClient(s.url);
      await t.opened;
      await t.request("join", { room: "chat" });
      assert.equal(
        (await t.request("state", { room: "chat", state: { typing: 1 } })).code,
        "invalid_state",
      );
      assert.equal((await t.request("state", { room: "chat", state: { typing: true } })).t, "ok");
      t.ws.close();
    } finally {
      c.close();
      await s.close();
    }
  });
});

describe(`connection limits under concurrent upgrades (${RUNTIME})`, () => {
  it("maxConnections holds even when many upgrades are in flight at once (4503 for the extra)", async () => {
    const s = await startServer(
      { limits: { maxConnections: 5 } },
      (server) => server.trackPresence("lobby"),
    );
    try {
      const tries = await Promise.all(
        Array.from({ length: 40 }, () => RawWs.connect(s.port).catch(() => null)),
      );
      await new Promise((r) => setTimeout(r, 300));
      const hellos = tries.filter((c) => c?.texts.some((t) => t.includes('"hello"')));
      const refused = tries.filter((c) =>
        c === null || c.status === 503 || c.closeFrame?.code === 4503
      );
      assert.equal(hellos.length, 5, `${hellos.length} got in`);
      assert.equal(refused.length, 35);
      assert.equal(s.server.stats().connections, 5);
      for (const c of tries) c?.destroy();
    } finally {
      await s.close();
    }
  });

  it("maxConnectionsPerUser holds under concurrent upgrades too", async () => {
    const s = await startServer({
      authenticate,
      userKey: "name",
      limits: { maxConnectionsPerUser: 2 },
    }, (server) => server.trackPresence("lobby"));
    try {
      const tries = await Promise.all(
        Array.from({ length: 12 }, () => RawWs.connect(s.port, { path: "/?v=1&token=t-ada" })),
      );
      const other = await RawWs.connect(s.port, { path: "/?v=1&token=t-bob" });
      await new Promise((r) => setTimeout(r, 300));
      const hellos = tries.filter((c) => c.texts.some((t) => t.includes('"hello"')));
      assert.equal(hellos.length, 2);
      assert.ok(other.texts.some((t) => t.includes('"hello"')), "another user still gets in");
      for (const c of [...tries, other]) c.destroy();
    } finally {
      await s.close();
    }
  });
});
