// roomStore on real sockets, under Deno and Bun: the `{ subscribe,
// getSnapshot }` contract, one join per client and room whatever the number
// of subscribers, leave after the last one (with linger), snapshots that
// reuse what did not change, and a refused join reported in the snapshot.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PresenceClient } from "../client.ts";
import { createPresence, type RoomSnapshot, roomStore } from "../presence.ts";
import { type Running, startServer, waitUntil } from "./_harness.ts";

type S = { typing?: boolean; x?: number };
type M = { userId: string };

function recording(sent: Array<Record<string, unknown>>): typeof WebSocket {
  return class extends WebSocket {
    override send(data: string): void {
      sent.push(JSON.parse(data));
      super.send(data);
    }
  } as unknown as typeof WebSocket;
}

describe("roomStore", () => {
  let running: Running;
  const clients: PresenceClient<S, M>[] = [];
  const client = (user: string, sent: Array<Record<string, unknown>> = []) => {
    const c = new PresenceClient<S, M>(running.url, {
      params: { user },
      WebSocket: recording(sent),
    });
    clients.push(c);
    return c;
  };

  before(async () => {
    running = await startServer({
      userKey: "userId",
      authenticate: (req) => ({ userId: new URL(req.url).searchParams.get("user") ?? "anon" }),
      leaveGraceMs: 0,
    }, (s) => {
      s.trackPresence("doc");
      s.trackPresence("locked", { guard: () => false });
    });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await running.close();
  });

  it("subscribe calls the listener at once; two subscribers make one join; the last one leaves", async () => {
    const sent: Array<Record<string, unknown>> = [];
    const ada = client("ada", sent);
    const store = roomStore(ada, "doc");
    assert.equal(roomStore(ada, "doc"), store, "one store per client and room");
    const got: RoomSnapshot<S, M>[] = [];
    const off1 = store.subscribe((s) => got.push(s));
    assert.equal(got.length, 1, "called at once (Svelte's store contract)");
    assert.equal(got[0]!.joined, false);
    const off2 = store.subscribe(() => {});
    await waitUntil(() => store.getSnapshot().joined, 3_000);
    const snap = store.getSnapshot();
    assert.equal(snap.self?.connectionId, ada.connectionId);
    assert.deepEqual(snap.others, []);
    assert.deepEqual(snap.count, { connections: 1, users: 1 });
    assert.equal(got.at(-1), snap);
    assert.equal(sent.filter((f) => f.op === "join").length, 1);
    off1();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(sent.filter((f) => f.op === "leave").length, 0, "still one subscriber");
    off2();
    await waitUntil(() => sent.some((f) => f.op === "leave"), 3_000);
    assert.equal(store.getSnapshot().joined, false);
    await waitUntil(async () => (await running.server.getPresentConnections("doc")).length === 0);
  });

  it("a resubscribe within lingerMs keeps the one join (StrictMode, route changes)", async () => {
    const sent: Array<Record<string, unknown>> = [];
    const bob = client("bob", sent);
    const store = roomStore(bob, "doc", { lingerMs: 50 });
    let off = store.subscribe(() => {});
    await waitUntil(() => store.getSnapshot().joined, 3_000);
    off();
    off = store.subscribe(() => {}); // remount at once
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(sent.filter((f) => f.op === "join" || f.op === "leave").map((f) => f.op), [
      "join",
    ]);
    off();
    await waitUntil(() => sent.some((f) => f.op === "leave"), 3_000);
  });

  it("snapshots reuse what did not change: a state change keeps count, users stay per identity", async () => {
    const cy = client("cy"), dee = client("dee");
    const a = roomStore(cy, "doc"), b = roomStore(dee, "doc");
    const offA = a.subscribe(() => {}), offB = b.subscribe(() => {});
    await waitUntil(() => a.getSnapshot().count.connections === 2, 3_000);
    const s1 = a.getSnapshot();
    assert.equal(s1.users.length, 2);
    await b.update({ state: { x: 1 } });
    await waitUntil(() => a.getSnapshot().others[0]?.state?.x === 1, 3_000);
    const s2 = a.getSnapshot();
    assert.notEqual(s2, s1, "a new snapshot");
    assert.equal(s2.count, s1.count, "count is the same object");
    assert.equal(s2.self, s1.self, "self did not change");
    assert.notEqual(s2.others, s1.others, "others changed");
    const cyUser = (s: RoomSnapshot<S, M>) =>
      s.users.find((u) => u.connections.includes(cy.connectionId!));
    assert.equal(cyUser(s2), cyUser(s1), "cy's user object is reused");
    assert.equal(a.getSnapshot(), s2, "stable until something changes");
    offB();
    await waitUntil(() => a.getSnapshot().count.connections === 1, 3_000);
    assert.notEqual(a.getSnapshot().count, s1.count);
    offA();
  });

  it("coexists with createPresence on one room: one wire join, each listens on its own", async () => {
    const sent: Array<Record<string, unknown>> = [];
    const eve = client("eve", sent);
    const store = roomStore(eve, "doc");
    const off = store.subscribe(() => {});
    const p = createPresence({ client: eve, room: "doc" });
    await p.ready;
    await waitUntil(() => store.getSnapshot().joined, 3_000);
    assert.equal(sent.filter((f) => f.op === "join").length, 1);
    await p.destroy();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(sent.filter((f) => f.op === "leave").length, 0, "the store still holds the room");
    assert.equal(store.getSnapshot().joined, true);
    off();
    await waitUntil(() => sent.some((f) => f.op === "leave"), 3_000);
  });

  it("a refused join shows in the snapshot's error", async () => {
    const fay = client("fay");
    const store = roomStore(fay, "locked");
    const off = store.subscribe(() => {});
    await waitUntil(() => store.getSnapshot().error !== null, 3_000);
    assert.equal(store.getSnapshot().error?.code, "forbidden");
    assert.equal(store.getSnapshot().joined, false);
    off();
  });
});
