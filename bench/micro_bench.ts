// Micro benchmarks (`deno task bench:micro`): the wire protocol and a state
// merge patch, one event fanned out to 1000 local subscribers on fake
// sockets, and the memory store.

import {
  ManualClock,
  MemoryPresenceStore,
  PresenceServer,
  type SocketHandlers,
  type SocketLike,
} from "../mod.ts";
import { encodeEvents, parseClientFrame, type WireEvent } from "../src/protocol.ts";
import { applyMergePatch } from "../src/merge_patch.ts";

const LIMITS = { maxFrameBytes: 65536, maxStateBytes: 16384, maxJsonDepth: 16, maxRoomLength: 256 };
const STATE_FRAME =
  '{"op":"state","id":42,"room":"doc:1","state":{"cursor":{"x":120,"y":348},"typing":false}}';
const ONE: WireEvent[] = [[7, "s", "Zm9vYmFyYmF6cXV4cXV1eA", {
  cursor: { x: 120, y: 348 },
  typing: false,
}]];
const MANY: WireEvent[] = Array.from(
  { length: 30 },
  (_, i) => [i + 1, "s", "Zm9vYmFyYmF6cXV4cXV1eA", { p: i, v: 1000 + i, t: 12345.678 }],
);

Deno.bench("protocol: parse a state request", { group: "protocol" }, () => {
  const r = parseClientFrame(STATE_FRAME, LIMITS);
  if (!r.ok) throw new Error("parse failed");
});

Deno.bench("protocol: encode a frame of 1 event", { group: "protocol" }, () => {
  encodeEvents("doc:1", ONE);
});

Deno.bench("protocol: encode a frame of 30 events", { group: "protocol" }, () => {
  encodeEvents("doc:1", MANY);
});

Deno.bench("protocol: merge-patch a cursor into a state", { group: "protocol" }, () => {
  applyMergePatch({ cursor: { x: 1, y: 2 }, typing: false, name: "ada" }, {
    cursor: { x: 3, y: 4 },
  });
});

// ---------------------------------------------------------------------------
// Fan-out: one state request from a member, delivered to 1000 subscribers.

class CountingSocket implements SocketLike {
  frames = 0;
  bytes = 0;
  bufferedAmount = 0;
  send(data: string): number {
    this.frames++;
    this.bytes += data.length;
    return data.length;
  }
  close(): void {}
}

async function fanoutFixture(subscribers: number) {
  const clock = new ManualClock();
  const server = new PresenceServer({
    clock,
    limits: { requestsPerSecond: 1e9, requestBurst: 1e9 },
  });
  server.trackPresence(/^.+$/);
  const sockets: CountingSocket[] = [];
  let publisher: SocketHandlers | null = null;
  for (let i = 0; i < subscribers; i++) {
    const admission = await server.admit(
      new Request("http://bench/?v=1", { headers: { upgrade: "websocket" } }),
    );
    if (!admission.ok) throw new Error("refused");
    const socket = new CountingSocket();
    const handlers = server.open(socket, admission.ticket);
    handlers.message(`{"op":"join","id":1,"room":"doc:1","sub":true}`);
    sockets.push(socket);
    publisher ??= handlers;
  }
  const settle = async () => {
    for (let i = 0; i < 10; i++) await Promise.resolve();
    clock.advance(0);
  };
  for (let i = 0; i < 1000 && sockets.some((s) => s.frames < 2); i++) await settle();
  if (sockets.some((s) => s.frames < 2)) throw new Error("fan-out fixture: joins did not complete");
  let v = 0;
  return {
    sockets,
    server,
    async publishOne() {
      publisher!.message(`{"op":"state","id":2,"room":"doc:1","state":{"v":${++v}}}`);
      await settle();
    },
  };
}

const fixture = await fanoutFixture(1000);
{
  const before = fixture.sockets[999]!.frames;
  await fixture.publishOne();
  if (fixture.sockets[999]!.frames !== before + 1) throw new Error("fan-out fixture: no delivery");
}

Deno.bench(
  "fan-out: one state event to 1000 subscribers (request to frames)",
  { group: "fanout" },
  async () => {
    await fixture.publishOne();
  },
);

// ---------------------------------------------------------------------------
// Memory store

const store = new MemoryPresenceStore();
const now = Date.now();
for (let i = 0; i < 1000; i++) await store.join("room", `c${i}`, "i1", {}, now);
let k = 0;

Deno.bench("memory store: join + leave", { group: "store" }, async () => {
  const id = `x${k++}`;
  await store.join("room", id, "i1", {}, now);
  await store.leave("room", id, "leave", now);
});

Deno.bench("memory store: setState", { group: "store" }, async () => {
  await store.setState("room", `c${k++ % 1000}`, { kind: "set", state: { v: k } }, null, now);
});

Deno.bench("memory store: setState with expiry", { group: "store" }, async () => {
  await store.setState(
    "room",
    `c${k++ % 1000}`,
    { kind: "set", state: { v: k } },
    now + 60_000,
    now,
  );
});
