// The real PresenceClient against the real adapter of this runtime, written the
// way a new user would from the Mesh snippets; then the resilience features
// (resume through a cut, rejoin after the grace window, streams, users).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PresenceClient, type PresenceUpdate } from "../client.ts";
import { createPresence } from "../presence.ts";
import { type Running, RUNTIME, startServer, waitUntil } from "./_harness.ts";
import { startProxy } from "./_proxy.ts";

describe(`client scenario (${RUNTIME})`, () => {
  let srv: Running;
  const clients: PresenceClient[] = [];
  const client = (url = srv.url, options = {}) => {
    const c = new PresenceClient(url, options);
    clients.push(c);
    return c;
  };

  before(async () => {
    srv = await startServer({
      leaveGraceMs: 1500,
      userKey: "userId",
      authenticate: (req) => ({ userId: new URL(req.url).searchParams.get("user") ?? "anon" }),
    }, (server) => {
      // Enable tracking for a single room, or for all matching rooms.
      server.trackPresence("lobby");
      server.trackPresence(/^doc:.+$/);
    });
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await srv.close();
  });

  it("Mesh snippets: subscribe, join, typing with expireAfter, metadata, leave, unsubscribe", async () => {
    const watcher = client(`${srv.url}?user=watcher`);
    const ada = client(`${srv.url}?user=ada`);
    await watcher.connect();
    await ada.connect();

    const updates: PresenceUpdate[] = [];
    const { success, present, states } = await watcher.subscribePresence(
      "lobby",
      (update) => {
        if (update.type === "join") updates.push(update);
        else if (update.type === "leave") updates.push(update);
        else if (update.type === "state") updates.push(update);
      },
    );
    assert.equal(success, true);
    assert.deepEqual(present, []);
    assert.equal(states.size, 0);

    const joined = await ada.joinRoom("lobby");
    assert.equal(joined.success, true);
    assert.deepEqual(joined.present.map((p) => p.id), [ada.connectionId]);

    const pub = await ada.publishPresenceState("lobby", {
      state: { status: "typing" },
      expireAfter: 400,
    });
    assert.equal(pub.success, true);

    await waitUntil(() => updates.length >= 3, 3000, "join, state, expiry");
    assert.deepEqual(updates.map((u) => [u.type, "connectionId" in u ? u.connectionId : ""]), [
      ["join", ada.connectionId],
      ["state", ada.connectionId],
      ["state", ada.connectionId],
    ]);
    assert.deepEqual((updates[1] as { state: unknown }).state, { status: "typing" });
    assert.equal((updates[2] as { state: unknown }).state, null, "expired state is null");

    // Metadata lookup by connection id, to group by user in the UI.
    assert.deepEqual(await watcher.getConnectionMetadata(ada.connectionId!), { userId: "ada" });

    await ada.leaveRoom("lobby");
    await waitUntil(() => updates.length === 4, 2000, "leave");
    assert.equal(updates[3]!.type, "leave");

    await watcher.unsubscribePresence("lobby");
    await ada.joinRoom("lobby");
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(updates.length, 4, "no updates after unsubscribePresence");
  });

  it("an untracked room is refused with not_tracked", async () => {
    const c = client();
    await c.connect();
    const r = await c.joinRoom("not-a-tracked-room");
    assert.equal(r.success, false);
    assert.equal(r.error?.code, "not_tracked");
    const s = await c.subscribePresence("not-a-tracked-room", () => {});
    assert.equal(s.error?.code, "not_tracked");
  });

  it("publishing outside a joined room is refused with not_member", async () => {
    const c = client();
    await c.connect();
    const r = await c.publishPresenceState("doc:1", { state: { x: 1 } });
    assert.equal(r.success, false);
    assert.equal(r.error?.code, "not_member");
    const cl = await c.clearPresenceState("doc:1");
    assert.equal(cl.error?.code, "not_member");
  });

  it("merge patches are applied and subscribers keep the merged state", async () => {
    const a = client();
    const b = client();
    await a.connect();
    await b.connect();
    const seen: PresenceUpdate[] = [];
    await b.subscribePresence("doc:patch", (u) => seen.push(u));
    await a.joinRoom("doc:patch");
    await a.publishPresenceState("doc:patch", { state: { cursor: { x: 1, y: 1 }, name: "a" } });
    await a.publishPresenceState("doc:patch", { patch: { cursor: { y: 5 }, name: null } });
    await waitUntil(() => seen.filter((u) => u.type === "state").length === 2, 2000, "two states");
    const last = seen.filter((u) => u.type === "state").at(-1) as { state: unknown };
    assert.deepEqual(last.state, { cursor: { x: 1, y: 5 } });
    assert.equal(seen.filter((u) => u.type === "leave").length, 0, "an update is never leave+join");
  });

  it("presence(room) streams a sync snapshot, then updates", async () => {
    const a = client();
    const b = client();
    await a.connect();
    await b.connect();
    await b.joinRoom("doc:stream");
    const reader = a.presence("doc:stream").getReader();
    const first = await reader.read();
    assert.equal(first.value?.type, "sync");
    assert.deepEqual((first.value as { present: string[] }).present, [b.connectionId]);
    await b.publishPresenceState("doc:stream", { state: 7 });
    const next = await reader.read();
    assert.equal(next.value?.type, "state");
    await reader.cancel();
  });

  it("users: true delivers userOnline for the first tab and userOffline after the last", async () => {
    const w = client();
    await w.connect();
    const users: string[] = [];
    await w.subscribePresence("doc:users", (u) => {
      if (u.type === "userOnline" || u.type === "userOffline") users.push(`${u.type}:${u.userId}`);
    }, { users: true });
    const tab1 = client(`${srv.url}?user=grace`);
    const tab2 = client(`${srv.url}?user=grace`);
    await tab1.connect();
    await tab2.connect();
    await tab1.joinRoom("doc:users");
    await tab2.joinRoom("doc:users");
    await tab1.leaveRoom("doc:users");
    await tab2.leaveRoom("doc:users");
    await waitUntil(() => users.length === 2, 2000, "online and offline");
    assert.deepEqual(users, ["userOnline:grace", "userOffline:grace"]);
  });

  it("createPresence groups two tabs of one user with tabCount 2", async () => {
    const tab1 = client(`${srv.url}?user=linus`);
    const tab2 = client(`${srv.url}?user=linus`);
    const other = client(`${srv.url}?user=ken`);
    await Promise.all([tab1.connect(), tab2.connect(), other.connect()]);
    const p = createPresence({
      client: other,
      room: "doc:unified",
      metadataIdentifier: (m) => m.userId as string,
    });
    await p.ready;
    await tab1.joinRoom("doc:unified");
    await tab2.joinRoom("doc:unified");
    await tab2.publishPresenceState("doc:unified", { state: { status: "away" } });
    await waitUntil(() => p.users.find((u) => u.id === "linus")?.tabCount === 2, 2000, "two tabs");
    await waitUntil(() => p.users.find((u) => u.id === "linus")?.state !== null, 2000, "state");
    const linus = p.users.find((u) => u.id === "linus")!;
    assert.deepEqual(linus.connections.sort(), [tab1.connectionId, tab2.connectionId].sort());
    assert.deepEqual(linus.state, { status: "away" });
    assert.deepEqual(p.users.map((u) => u.id).sort(), ["ken", "linus"]);
    await p.destroy();
  });

  it("a cut connection resumes inside the grace window: same id, no leave or join seen", async () => {
    const proxy = await startProxy(srv.port);
    try {
      const w = client();
      await w.connect();
      const seen: PresenceUpdate[] = [];
      await w.subscribePresence("doc:resume", (u) => seen.push(u));
      const a = client(proxy.url("/"), { reconnect: { minDelayMs: 50, maxDelayMs: 200 } });
      await a.connect();
      await a.joinRoom("doc:resume");
      await a.publishPresenceState("doc:resume", { state: { s: 1 } });
      await waitUntil(() => seen.length === 2, 2000, "join + state");
      const id = a.connectionId;
      const statuses: string[] = [];
      a.onStatus((s) => statuses.push(s));
      const t0 = Date.now();
      proxy.cut();
      await waitUntil(() => a.status === "open" && a.resumed, 4000, "resumed");
      const took = Date.now() - t0;
      assert.equal(a.connectionId, id);
      assert.deepEqual(statuses.slice(0, 1), ["reconnecting"]);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(seen.length, 2, `no leave and no join (${took} ms to resume)`);
      // It still works.
      await a.publishPresenceState("doc:resume", { state: { s: 2 } });
      await waitUntil(() => seen.length === 3, 2000, "new state");
    } finally {
      await proxy.close();
    }
  });

  it("after the grace window a reconnect gets a new id and re-joins, re-subscribes and re-publishes", async () => {
    const proxy = await startProxy(srv.port);
    try {
      const w = client();
      await w.connect();
      const seen: PresenceUpdate[] = [];
      await w.subscribePresence("doc:rejoin", (u) => seen.push(u));
      const a = client(proxy.url("/"), { reconnect: { minDelayMs: 50, maxDelayMs: 100 } });
      await a.connect();
      const mine: PresenceUpdate[] = [];
      await a.joinRoom("doc:rejoin", (u) => mine.push(u));
      await a.publishPresenceState("doc:rejoin", { state: { keep: true } });
      const oldId = a.connectionId;
      proxy.pause();
      proxy.cut();
      await new Promise((r) => setTimeout(r, 1900)); // past leaveGraceMs (1500)
      proxy.resume();
      await waitUntil(() => a.status === "open", 4000, "reconnected");
      assert.equal(a.resumed, false);
      assert.notEqual(a.connectionId, oldId);
      await waitUntil(
        () => seen.some((u) => u.type === "state" && u.connectionId === a.connectionId),
        3000,
        "republished state under the new id",
      );
      const snap = await w.subscribePresence("doc:rejoin", () => {});
      assert.deepEqual(snap.present, [a.connectionId]);
      assert.deepEqual(snap.states.get(a.connectionId!), { keep: true });
      // Its own subscription was restored too.
      await waitUntil(
        () => mine.some((u) => u.type === "join" && u.connectionId === a.connectionId),
        3000,
        "own resubscribe",
      );
    } finally {
      await proxy.close();
    }
  });
});
