// Pure room-view sync: snapshots, sequenced events, buffering, gaps, diffs.

import { describe, it } from "node:test";
import { PROTOCOL_PARAM, PROTOCOL_VERSION } from "../src/constants.ts";
import assert from "node:assert/strict";
import {
  applyEvent,
  applySnapshot,
  createRoomView,
  type PresenceUpdate,
  type RoomView,
  type WireEvent,
  type WireSnapshot,
} from "../client.ts";

const snap = (
  seq: number,
  ids: string[],
  states: Array<[string, unknown]> = [],
  users?: string[],
): WireSnapshot => {
  const s: WireSnapshot = {
    seq,
    present: ids.map((id) => ({ id, meta: { name: id } })),
    states,
  };
  if (users) s.users = users;
  return s;
};

const ready = (
  seq = 0,
  ids: string[] = [],
  states: Array<[string, unknown]> = [],
): RoomView => {
  const view = createRoomView("r");
  assert.deepEqual(applySnapshot(view, snap(seq, ids, states)), []);
  return view;
};

const apply = (view: RoomView, ...events: WireEvent[]): PresenceUpdate[] =>
  events.flatMap((ev) => {
    const { updates, gap } = applyEvent(view, ev);
    assert.equal(gap, false);
    return updates;
  });

describe("createRoomView()", () => {
  it("starts empty and not ready", () => {
    const view = createRoomView("lobby");
    assert.equal(view.room, "lobby");
    assert.equal(view.ready, false);
    assert.equal(view.members.size, 0);
  });
});

describe("applySnapshot() then applyEvent()", () => {
  it("applies join, state, patch and leave in order with their seq", () => {
    const view = ready(5, ["a"]);
    const updates = apply(
      view,
      [6, "j", "b", { name: "b" }],
      [7, "s", "b", { typing: true, pos: { x: 1, y: 2 } }],
      [8, "p", "b", { typing: null, pos: { y: 3 } }],
      [9, "l", "a"],
    );
    assert.deepEqual(updates, [
      {
        type: "join",
        room: "r",
        connectionId: "b",
        meta: { name: "b" },
        seq: 6,
      },
      {
        type: "state",
        room: "r",
        connectionId: "b",
        state: { typing: true, pos: { x: 1, y: 2 } },
        seq: 7,
      },
      {
        type: "state",
        room: "r",
        connectionId: "b",
        state: { pos: { x: 1, y: 3 } },
        seq: 8,
      },
      { type: "leave", room: "r", connectionId: "a", seq: 9 },
    ]);
    assert.equal(view.seq, 9);
    assert.deepEqual([...view.members.keys()], ["b"]);
    assert.deepEqual(view.states.get("b"), { pos: { x: 1, y: 3 } });
  });

  it("a null state deletes it and a leave removes the member's state", () => {
    const view = ready(1, ["a", "b"], [["a", 1], ["b", 2]]);
    const updates = apply(view, [2, "s", "a", null], [3, "l", "b"]);
    assert.deepEqual(updates.map((u) => u.type), ["state", "leave"]);
    assert.equal((updates[0] as { state: unknown }).state, null);
    assert.equal(view.states.size, 0);
  });

  it("a patch on a connection without state starts from null", () => {
    const view = ready(1, ["a"]);
    apply(view, [2, "p", "a", { x: 1 }]);
    assert.deepEqual(view.states.get("a"), { x: 1 });
  });

  it("drops duplicates (seq <= view.seq)", () => {
    const view = ready(3, ["a"]);
    assert.deepEqual(apply(view, [3, "l", "a"], [2, "j", "z", {}]), []);
    assert.deepEqual([...view.members.keys()], ["a"]);
    assert.equal(view.seq, 3);
  });

  it("reports a gap without applying the event", () => {
    const view = ready(3, ["a"]);
    const { updates, gap } = applyEvent(view, [5, "l", "a"]);
    assert.equal(gap, true);
    assert.deepEqual(updates, []);
    assert.equal(view.resync, true);
    assert.ok(view.members.has("a"));
    // Later events keep signalling until a snapshot arrives, and are buffered.
    assert.equal(applyEvent(view, [6, "j", "b", {}]).gap, true);
    assert.equal(view.buffer.length, 2);
  });

  it("user online/offline does not advance seq", () => {
    const view = ready(1);
    const updates = apply(
      view,
      [2, "j", "a", {}],
      [2, "u", "ada", 1],
      [3, "j", "b", {}],
      [4, "l", "a"],
      [5, "l", "b"],
      [5, "u", "ada", 0],
    );
    assert.deepEqual(updates.map((u) => u.type), [
      "join",
      "userOnline",
      "join",
      "leave",
      "leave",
      "userOffline",
    ]);
    assert.deepEqual(updates[1], {
      type: "userOnline",
      room: "r",
      userId: "ada",
    });
    assert.equal(view.seq, 5);
    assert.equal(view.users.size, 0);
  });
});

describe("buffering before the snapshot", () => {
  it("buffers events and replays only those newer than the snapshot", () => {
    const view = createRoomView("r");
    for (
      const ev of [[4, "j", "a", {}], [5, "j", "b", {}], [
        6,
        "s",
        "b",
        1,
      ]] as WireEvent[]
    ) {
      assert.deepEqual(applyEvent(view, ev), { updates: [], gap: false });
    }
    const updates = applySnapshot(view, snap(4, ["a"]));
    assert.deepEqual(updates.map((u) => [u.type, (u as { seq: number }).seq]), [
      ["join", 5],
      ["state", 6],
    ]);
    assert.equal(view.ready, true);
    assert.equal(view.seq, 6);
    assert.equal(view.buffer.length, 0);
    assert.deepEqual([...view.members.keys()], ["a", "b"]);
  });

  it("drops buffered user events already reflected in the snapshot", () => {
    const view = createRoomView("r");
    applyEvent(view, [4, "j", "a", {}]);
    applyEvent(view, [4, "u", "ada", 1]);
    assert.deepEqual(applySnapshot(view, snap(4, ["a"], [], ["ada"])), []);
    assert.deepEqual([...view.users], ["ada"]);
  });

  it("bounds the buffer, keeps the newest, and marks a resync", () => {
    const view = createRoomView("r", 2);
    applyEvent(view, [1, "j", "a", {}]);
    applyEvent(view, [2, "j", "b", {}]);
    applyEvent(view, [3, "j", "c", {}]);
    assert.deepEqual(view.buffer.map((e) => e[0]), [2, 3]);
    assert.equal(view.resync, true);
    // A snapshot at 1 means event 1 was not needed: nothing is missing.
    applySnapshot(view, snap(1, ["a"]));
    assert.equal(view.resync, false);
    assert.deepEqual([...view.members.keys()], ["a", "b", "c"]);
  });

  it("a buffered event past a hole after the snapshot is dropped, not replayed or kept", () => {
    const view = createRoomView("r");
    applyEvent(view, [7, "j", "x", {}]);
    const updates = applySnapshot(view, snap(4, []));
    assert.deepEqual(updates, []);
    // No resync loop: the event cannot follow this snapshot, so it came from
    // another stream (sim seed 326: a store before its restart).
    assert.equal(view.resync, false);
    assert.deepEqual(view.buffer, []);
    // A real hole shows at the next event, which asks for a resync.
    assert.equal(applyEvent(view, [6, "j", "y", {}]).gap, true);
  });

  it("a state event for a connection not in the view is ignored, so it cannot outlive it (sim seed 717)", () => {
    const view = ready(3, ["a"]);
    const { updates } = applyEvent(view, [4, "s", "ghost", { v: 1 }]);
    assert.deepEqual(updates, []);
    assert.equal(view.seq, 4); // the sequence still moves on: no gap later
    assert.equal(view.states.has("ghost"), false);
  });

  it("a leave for a connection not in the view is no news (a ghost dropped after a failover)", () => {
    // tests/failover_redis_cluster.test.ts: the server left the rolled-back
    // ghost out of its view, then its instance dropped it from the store.
    const view = ready(3, ["a"]);
    const { updates, gap } = applyEvent(view, [4, "l", "ghost"]);
    assert.deepEqual(updates, []);
    assert.equal(gap, false);
    assert.equal(view.seq, 4); // the sequence still moves on
    assert.deepEqual([...view.members.keys()], ["a"]);
  });

  it("a stale event from before a store restart never lands on a later snapshot (sim seed 326)", () => {
    const view = ready(14, ["a"]);
    // From the old store: seq 16, while the new store is at 14.
    assert.equal(applyEvent(view, [16, "j", "ghost", {}]).gap, true);
    assert.deepEqual(applySnapshot(view, snap(14, ["a"])), []);
    assert.equal(view.resync, false); // no endless resync
    // The store moves on to 15: the old event must not apply as 16.
    applySnapshot(view, snap(15, ["a"]));
    assert.deepEqual([...view.members.keys()], ["a"]);
    assert.equal(applyEvent(view, [16, "j", "b", {}]).gap, false);
    assert.deepEqual([...view.members.keys()], ["a", "b"]);
  });
});

describe("resync (snapshot on a ready view)", () => {
  it("emits a diff: no leave+join for members present in both", () => {
    const view = ready(10, ["a", "b", "c"], [["a", { v: 1 }], ["b", { v: 1 }]]);
    applyEvent(view, [12, "l", "c"]); // gap: seq 11 missing
    const updates = applySnapshot(
      view,
      snap(13, ["a", "b", "d"], [["a", { v: 1 }], ["b", { v: 2 }], [
        "d",
        "hi",
      ]]),
    );
    assert.deepEqual(updates, [
      { type: "leave", room: "r", connectionId: "c", seq: 13 },
      {
        type: "join",
        room: "r",
        connectionId: "d",
        meta: { name: "d" },
        seq: 13,
      },
      { type: "state", room: "r", connectionId: "b", state: { v: 2 }, seq: 13 },
      { type: "state", room: "r", connectionId: "d", state: "hi", seq: 13 },
    ]);
    assert.equal(view.resync, false);
    assert.equal(view.seq, 13);
  });

  it("keeps the user set when the snapshot has no user list", () => {
    const view = ready(1, ["a"]);
    apply(view, [1, "u", "ada", 1]);
    assert.deepEqual(applySnapshot(view, snap(2, ["a"])), []);
    assert.deepEqual([...view.users], ["ada"]);
  });

  it("reports cleared states as null and diffs online users", () => {
    const view = createRoomView("r");
    applySnapshot(view, snap(1, ["a"], [["a", 1]], ["u1", "u2"]));
    const updates = applySnapshot(view, snap(2, ["a"], [], ["u2", "u3"]));
    assert.deepEqual(updates, [
      { type: "state", room: "r", connectionId: "a", state: null, seq: 2 },
      { type: "userOffline", room: "r", userId: "u1" },
      { type: "userOnline", room: "r", userId: "u3" },
    ]);
  });

  it("a snapshot with k (a store reset's settle window) keeps the members, states and users it lacks; the next one without k drops them", () => {
    const view = createRoomView("r");
    applySnapshot(view, snap(5, ["a", "m"], [["m", { x: 1 }]], ["ada", "max"]));
    // The answering instance never saw m (it missed the store's life m
    // joined in): m, its state and its user stay, without a leave.
    const kept = applySnapshot(view, { ...snap(2, ["a", "b"], [], ["ada", "bo"]), k: 1 });
    assert.deepEqual(kept, [
      { type: "join", room: "r", connectionId: "b", meta: { name: "b" }, seq: 2 },
      { type: "userOnline", room: "r", userId: "bo" },
    ]);
    assert.deepEqual([...view.members.keys()].sort(), ["a", "b", "m"]);
    assert.deepEqual(view.states.get("m"), { x: 1 });
    assert.deepEqual([...view.users].sort(), ["ada", "bo", "max"]);
    assert.equal(view.seq, 2);
    // m's instance registers it again: a join for a member it has, and its
    // user coming online, are no news (seed 185: userOnline twice).
    assert.deepEqual(apply(view, [3, "j", "m", { name: "m" }], [3, "u", "max", 1]), []);
    // The window's end: a full snapshot; who is not in it now left.
    const end = applySnapshot(view, snap(4, ["a", "b"], [], ["ada", "bo"]));
    assert.deepEqual(end, [
      { type: "leave", room: "r", connectionId: "m", seq: 4 },
      { type: "userOffline", room: "r", userId: "max" },
    ]);
    assert.equal(view.states.has("m"), false);
  });

  it("replays events buffered during the resync after the diff", () => {
    const view = ready(1, ["a"]);
    assert.equal(applyEvent(view, [3, "j", "c", {}]).gap, true);
    assert.equal(applyEvent(view, [4, "s", "c", "x"]).gap, true);
    const updates = applySnapshot(view, snap(3, ["a", "b", "c"]));
    assert.deepEqual(
      updates.map((
        u,
      ) => [u.type, (u as { connectionId: string }).connectionId]),
      [
        ["join", "b"],
        ["join", "c"],
        ["state", "c"],
      ],
    );
    assert.equal(view.seq, 4);
  });
});

describe("hostile keys", () => {
  it("__proto__ as connection id, user id and state key is harmless", () => {
    const view = ready(0);
    apply(
      view,
      [1, "j", "__proto__", { ["__proto__"]: 1 } as Record<string, unknown>],
      [1, "u", "__proto__", 1],
      [2, "s", "__proto__", JSON.parse('{"__proto__":{"polluted":true}}')],
      [
        3,
        "p",
        "__proto__",
        JSON.parse('{"__proto__":{"more":1},"constructor":{"x":1}}'),
      ],
    );
    assert.ok(view.members.has("__proto__"));
    assert.ok(view.users.has("__proto__"));
    const state = view.states.get("__proto__") as Record<string, unknown>;
    assert.deepEqual(Object.keys(state), ["__proto__", "constructor"]);
    assert.equal(Object.getPrototypeOf(state), Object.prototype);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(({} as Record<string, unknown>).more, undefined);
    assert.deepEqual(JSON.parse(JSON.stringify(state)), {
      ["__proto__"]: { polluted: true, more: 1 },
      constructor: { x: 1 },
    });
  });
});

describe("wire constants", () => {
  it("the version the client sends is the protocol version", () => {
    assert.equal(PROTOCOL_PARAM, String(PROTOCOL_VERSION));
  });
});
