// The auth recipe (examples/auth): signed tokens, and a server that verifies
// them from the query, a Bearer header or a subprotocol, takes metadata from the
// payload and hides the private fields. Refusals are HTTP 401 and make the
// client's connect() reject.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PresenceClient, PresenceError, type PresenceUpdate } from "../client.ts";
import { PresenceServer } from "../mod.ts";
import { signToken, type TokenPayload, verifyToken } from "../examples/auth/token.ts";
import { authOptions, bearerWebSocket, tokenFromRequest } from "../examples/auth/server.ts";
import { serve, type Served } from "../examples/_serve.ts";
import { RUNTIME, upgradeStatus, waitUntil } from "./_harness.ts";

const SECRET = "a-test-secret-that-is-at-least-32-bytes-long";
const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;
const payload = (sub: string, extra: Record<string, unknown> = {}): TokenPayload => ({
  sub,
  name: sub.toUpperCase(),
  email: `${sub}@example.com`,
  exp: inAnHour(),
  ...extra,
});

/** Flip one character of the token's payload part: the signature no longer matches. */
function tamper(token: string): string {
  const [body, sig] = token.split(".") as [string, string];
  const i = Math.floor(body.length / 2);
  const flipped = body[i] === "A" ? "B" : "A";
  return `${body.slice(0, i)}${flipped}${body.slice(i + 1)}.${sig}`;
}

describe("auth recipe: tokens", () => {
  it("verifyToken() returns the payload of a token signToken() made", async () => {
    const p = payload("ada");
    assert.deepEqual(await verifyToken(await signToken(p, SECRET), SECRET), p);
  });

  it("verifyToken() refuses a tampered payload or signature, another secret and garbage", async () => {
    const token = await signToken(payload("ada"), SECRET);
    const [body, sig] = token.split(".") as [string, string];
    assert.equal(await verifyToken(tamper(token), SECRET), null);
    // The signature's first character changed (six whole bits): the old test replaced the last
    // two with "AA", which left the signature as it was once in about a thousand runs (CI).
    const other = sig[0] === "A" ? "B" : "A";
    assert.equal(await verifyToken(`${body}.${other}${sig.slice(1)}`, SECRET), null);
    assert.equal(await verifyToken(token, `${SECRET}-but-another-one`), null);
    // A forged payload signed with nothing, or with the payload's own signature moved over.
    const forged = btoa(JSON.stringify(payload("root"))).replace(/=+$/, "");
    assert.equal(await verifyToken(`${forged}.${sig}`, SECRET), null);
    for (const junk of ["", ".", "abc", `${token}.x`, "!!.!!", `${body}.`]) {
      assert.equal(await verifyToken(junk, SECRET), null, `junk ${JSON.stringify(junk)}`);
    }
  });

  it("verifyToken() refuses an expired token (the clock is injected, nothing sleeps)", async () => {
    const exp = 1_700_000_000;
    const token = await signToken({ sub: "ada", exp }, SECRET);
    assert.notEqual(await verifyToken(token, SECRET, exp * 1000 - 1), null);
    assert.equal(await verifyToken(token, SECRET, exp * 1000), null);
  });

  it("signToken() refuses a secret shorter than 32 bytes", async () => {
    await assert.rejects(signToken(payload("ada"), "short"), RangeError);
  });

  it("tokenFromRequest() reads a Bearer header, a token.<value> subprotocol or ?token=", () => {
    const url = "http://x/?token=q";
    assert.equal(
      tokenFromRequest(new Request(url, { headers: { authorization: "Bearer h" } })),
      "h",
    );
    assert.equal(
      tokenFromRequest(
        new Request("http://x/", {
          headers: { "sec-websocket-protocol": "presently, token.p" },
        }),
      ),
      "p",
    );
    assert.equal(tokenFromRequest(new Request(url)), "q");
    assert.equal(tokenFromRequest(new Request("http://x/")), null);
  });
});

describe(`auth recipe: server (${RUNTIME})`, () => {
  let presence: PresenceServer;
  let served: Served;
  let url = "";
  const clients: PresenceClient[] = [];
  const client = (options: ConstructorParameters<typeof PresenceClient>[1] = {}) => {
    const c = new PresenceClient(url, { reconnect: false, ...options });
    clients.push(c);
    return c;
  };

  before(async () => {
    presence = new PresenceServer(authOptions(SECRET));
    presence.trackPresence(/^room:/);
    served = await serve(presence, { port: 0, hostname: "127.0.0.1" });
    url = `ws://127.0.0.1:${served.port}/`;
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await presence.close();
    await served.close();
  });

  it("tokens in the query, a subprotocol and a Bearer header connect; others see the public metadata only", async () => {
    const ada = client({ params: { token: await signToken(payload("ada"), SECRET) } });
    const bob = client({
      protocols: ["presently", `token.${await signToken(payload("bob"), SECRET)}`],
    });
    const cy = client({ WebSocket: bearerWebSocket(await signToken(payload("cy"), SECRET)) });
    await Promise.all([ada.connect(), bob.connect(), cy.connect()]);

    const seen: PresenceUpdate[] = [];
    assert.equal((await ada.subscribePresence("room:auth", (u) => seen.push(u))).success, true);
    assert.equal((await ada.joinRoom("room:auth")).success, true);
    const joined = await bob.joinRoom("room:auth");
    assert.deepEqual(
      joined.present.find((p) => p.id === ada.connectionId)?.meta,
      { name: "ADA", userId: "ada" },
      "no email in the join answer",
    );
    assert.equal((await cy.joinRoom("room:auth")).success, true);
    await waitUntil(() => seen.filter((u) => u.type === "join").length === 3, 3000, "joins");
    const metas = seen.flatMap((u) => u.type === "join" ? [u.meta] : []);
    assert.deepEqual(metas, [
      { name: "ADA", userId: "ada" },
      { name: "BOB", userId: "bob" },
      { name: "CY", userId: "cy" },
    ]);
    assert.deepEqual(await ada.getConnectionMetadata(bob.connectionId!), {
      name: "BOB",
      userId: "bob",
    });
    // The server keeps the private field for guards and hooks.
    assert.deepEqual(await presence.getConnectionMetadata(bob.connectionId!), {
      name: "BOB",
      email: "bob@example.com",
      userId: "bob",
    });
  });

  it("a tampered or missing token is refused with HTTP 401 and connect() rejects", async () => {
    const good = await signToken(payload("eve"), SECRET);
    const port = served.port;
    assert.equal(await upgradeStatus(port, `/?token=${good}`), 101);
    assert.equal(await upgradeStatus(port, "/", { authorization: `Bearer ${good}` }), 101);
    const bad = tamper(good);
    assert.equal(await upgradeStatus(port, `/?token=${bad}`), 401);
    assert.equal(await upgradeStatus(port, "/", { authorization: `Bearer ${bad}` }), 401);
    assert.equal(
      await upgradeStatus(port, "/", { "sec-websocket-protocol": `presently, token.${bad}` }),
      401,
    );
    assert.equal(await upgradeStatus(port, "/"), 401);

    for (
      const options of [
        { params: { token: bad } },
        { protocols: ["presently", `token.${bad}`] },
        { WebSocket: bearerWebSocket(bad) },
        {},
      ]
    ) {
      const c = client(options);
      await assert.rejects(c.connect(), (e) => e instanceof PresenceError);
      assert.equal(c.status, "closed");
    }
  });

  it("an expired token is refused after the upgrade (4401 token_expired); auth fetches a fresh one", async () => {
    const expired = await signToken(
      payload("eve", { exp: Math.floor(Date.now() / 1000) - 1 }),
      SECRET,
    );
    // On the wire: the upgrade succeeds, then the socket closes with 4401.
    const ws = new WebSocket(`ws://127.0.0.1:${served.port}/`, ["presently", `token.${expired}`]);
    const closed = await new Promise<CloseEvent>((r) => ws.onclose = r);
    assert.equal(closed.code, 4401);
    assert.equal(closed.reason, "token_expired");
    // Without `auth`, the client stops with "unauthorized" (no retry loop).
    const stale = client({ protocols: ["presently", `token.${expired}`] });
    await assert.rejects(
      stale.connect(),
      (e) => e instanceof PresenceError && e.code === "unauthorized",
    );
    assert.equal(stale.status, "unauthorized");
    // With `auth`: the stale token is refused, auth is asked again, the fresh one is accepted.
    let calls = 0;
    const fresh = client({
      auth: async () => {
        calls++;
        const token = calls === 1 ? expired : await signToken(payload("eve"), SECRET);
        return { protocols: ["presently", `token.${token}`] };
      },
    });
    await fresh.connect();
    assert.equal(calls, 2);
    assert.equal(fresh.status, "open");
  });
});
