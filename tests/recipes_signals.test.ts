// The framework-free presence store (examples/signals/presence_signal.ts) on a
// real server, and its pure reducer.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PresenceClient } from "../client.ts";
import {
  emptySnapshot,
  presenceSignal,
  type PresenceSnapshot,
  reducePresence,
} from "../examples/signals/presence_signal.ts";
import { type Running, RUNTIME, startServer, waitUntil } from "./_harness.ts";

describe("reducePresence()", () => {
  it("applies a sync, joins, states and leaves, and keeps the snapshot when nothing changed", () => {
    const room = "room:1";
    let s = emptySnapshot<{ x: number }, { name: string }>("loading");
    s = reducePresence(s, {
      type: "sync",
      room,
      present: ["a"],
      members: [{ id: "a", meta: { name: "A" } }],
      states: new Map([["a", { x: 1 }]]),
    });
    assert.equal(s.status, "ready");
    assert.deepEqual([...s.members], [["a", { name: "A" }]]);
    const before = s;
    s = reducePresence(s, { type: "join", room, connectionId: "b", meta: { name: "B" }, seq: 2 });
    assert.notEqual(s, before);
    assert.deepEqual([...before.members.keys()], ["a"], "the previous snapshot is untouched");
    assert.deepEqual([...s.members.keys()], ["a", "b"]);
    s = reducePresence(s, { type: "state", room, connectionId: "b", state: { x: 2 }, seq: 3 });
    assert.deepEqual(s.states.get("b"), { x: 2 });
    s = reducePresence(s, { type: "state", room, connectionId: "b", state: null, seq: 4 });
    assert.equal(s.states.has("b"), false);
    const same = reducePresence(s, { type: "userOnline", room, userId: "u" });
    assert.equal(same, s, "updates outside the view return the same snapshot");
    assert.equal(
      reducePresence(s, { type: "state", room, connectionId: "zz", state: null, seq: 5 }),
      s,
    );
    s = reducePresence(s, { type: "leave", room, connectionId: "a", seq: 6 });
    assert.deepEqual([...s.members.keys()], ["b"]);
    assert.equal(s.states.has("a"), false);
  });
});

describe(`presenceSignal() on a real server (${RUNTIME})`, () => {
  let srv: Running;
  const clients: PresenceClient[] = [];
  const client = (user: string) => {
    const c = new PresenceClient<{ typing: boolean }, { userId: string }>(
      `${srv.url}?user=${user}`,
    );
    clients.push(c as unknown as PresenceClient);
    return c;
  };

  before(async () => {
    srv = await startServer({
      authenticate: (req) => ({ userId: new URL(req.url).searchParams.get("user") ?? "anon" }),
    }, (server) => server.trackPresence(/^room:/));
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await srv.close();
  });

  it("follows members and states, with a new snapshot per change and the same one between", async () => {
    const ada = client("ada");
    const bob = client("bob");
    await ada.connect();
    await bob.connect();
    await ada.joinRoom("room:sig");

    const lobby = presenceSignal(ada, "room:sig");
    assert.equal(lobby.get().status, "idle");
    const seen: PresenceSnapshot<{ typing: boolean }, { userId: string }>[] = [];
    const stop = lobby.subscribe(() => seen.push(lobby.get()));
    await waitUntil(() => lobby.get().status === "ready", 3000, "ready");
    assert.deepEqual([...lobby.get().members.values()], [{ userId: "ada" }]);
    assert.equal(lobby.get(), lobby.get(), "get() is stable between changes");

    await bob.joinRoom("room:sig");
    await bob.publishPresenceState("room:sig", { state: { typing: true } });
    await waitUntil(() => lobby.get().states.size === 1, 3000, "bob's state");
    const now = lobby.get();
    assert.deepEqual([...now.members.values()], [{ userId: "ada" }, { userId: "bob" }]);
    assert.deepEqual(now.states.get(bob.connectionId!), { typing: true });

    await bob.leaveRoom("room:sig");
    await waitUntil(() => lobby.get().members.size === 1, 3000, "bob's leave");
    assert.equal(lobby.get().states.size, 0);
    assert.deepEqual(seen.map((s) => s.status).slice(0, 2), ["loading", "ready"]);
    assert.equal(new Set(seen).size, seen.length, "each notification brings a new snapshot");
    stop();
  });

  it("is one store per client and room: listeners share one subscription, the last one out stops it", async () => {
    const cy = client("cy");
    await cy.connect();
    const a = presenceSignal(cy, "room:shared");
    assert.equal(presenceSignal(cy, "room:shared"), a);
    assert.notEqual(presenceSignal(cy, "room:other"), a);

    const subscribers = () => srv.server.stats().subscribers;
    // The previous test's store unsubscribes a tick after its last listener left.
    await waitUntil(() => subscribers() === 0, 3000, "no subscriptions left");
    const base = 0;
    const stop1 = a.subscribe(() => {});
    const stop2 = a.subscribe(() => {});
    await waitUntil(() => a.get().status === "ready", 3000, "ready");
    assert.equal(subscribers(), base + 1, "one subscription for two listeners");
    stop1();
    stop2();
    // A resubscribe in the same tick (React StrictMode) keeps the subscription.
    const stop3 = a.subscribe(() => {});
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(a.get().status, "ready");
    assert.equal(subscribers(), base + 1);
    stop3();
    await waitUntil(() => subscribers() === base, 3000, "unsubscribed after the last listener");
    assert.equal(a.get().status, "idle");
  });

  it("reports a refused room as status error with the server's code", async () => {
    const dee = client("dee");
    await dee.connect();
    const s = presenceSignal(dee, "not-tracked");
    const stop = s.subscribe(() => {});
    await waitUntil(() => s.get().status === "error", 3000, "error");
    assert.equal((s.get().error as { code?: string }).code, "not_tracked");
    stop();
  });
});
