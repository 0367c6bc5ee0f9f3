// server.inProcessWebSocket(): PresenceClients in the server's own process,
// with no network, through the same admission and handlers as the adapters
// (Deno and Bun).

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { PresenceServer } from "../mod.ts";
import { PresenceClient, type PresenceUpdate } from "../client.ts";
import { waitUntil } from "./_harness.ts";

describe("in-process WebSocket", () => {
  it("clients join, see each other and leave; authenticate reads the URL; a refusal closes", async () => {
    const presence = new PresenceServer({
      authenticate: (req) => {
        const name = new URL(req.url).searchParams.get("name");
        return name === null ? null : { name };
      },
    });
    presence.trackPresence("lobby");
    const WS = presence.inProcessWebSocket();
    const ann = new PresenceClient("ws://presence/", { WebSocket: WS, params: { name: "ann" } });
    const bob = new PresenceClient("ws://presence/", { WebSocket: WS, params: { name: "bob" } });
    try {
      await ann.connect();
      await bob.connect();
      const seen: PresenceUpdate[] = [];
      await bob.subscribePresence("lobby", (u) => seen.push(u));
      const joined = await ann.joinRoom("lobby");
      assert.equal(joined.success, true);
      await waitUntil(() => seen.some((u) => u.type === "join"), 2_000, "ann's join");
      const join = seen.find((u) => u.type === "join")!;
      assert.ok(join.type === "join" && join.connectionId === ann.connectionId);
      assert.deepEqual(join.type === "join" && join.meta, { name: "ann" });
      assert.deepEqual(await presence.getPresentConnections("lobby"), [ann.connectionId]);
      await ann.close();
      await waitUntil(() => seen.some((u) => u.type === "leave"), 2_000, "ann's leave");
      assert.deepEqual(await presence.getPresentConnections("lobby"), []);

      // No name: authenticate refuses, the socket closes, connect() rejects.
      const nobody = new PresenceClient("ws://presence/", { WebSocket: WS, reconnect: false });
      await assert.rejects(nobody.connect());
      assert.equal(presence.stats().connections, 1); // bob only
    } finally {
      await ann.close();
      await bob.close();
      await presence.close();
    }
  });
});

describe("openPair (@presently/presently/testing)", () => {
  it("a connected client and more on demand, server options and rooms applied, all closed with the pair", async () => {
    const { openPair } = await import("../testing.ts");
    let other: PresenceClient | undefined;
    let presence: PresenceServer | undefined;
    let first: PresenceClient | undefined;
    {
      await using pair = await openPair({
        rooms: /^doc:/,
        privateMetadata: ["email"],
        authenticate: () => ({ name: "ann", email: "ann@example.com" }),
      });
      ({ presence, client: first } = pair);
      assert.equal(first.status, "open");
      other = await pair.connect();
      assert.equal(other.status, "open");
      const refused = await first.joinRoom("lobby");
      assert.equal(refused.error?.code, "not_tracked");
      const seen: PresenceUpdate[] = [];
      await other.subscribePresence("doc:1", (u) => seen.push(u));
      await first.joinRoom("doc:1");
      await waitUntil(() => seen.some((u) => u.type === "join"), 2_000, "the join");
      const join = seen.find((u) => u.type === "join")!;
      assert.deepEqual(join.type === "join" && join.meta, { name: "ann" });
      assert.equal(presence.stats().connections, 2);
    }
    // Disposed at the end of the block: both clients and the server closed.
    assert.equal(first.status, "closed");
    assert.equal(other.status, "closed");
    assert.equal(presence.stats().connections, 0);
  });
});
