// Benchmark ceiling: raw Bun.serve with native `server.publish`, no presence
// logic. Speaks just enough of the protocol for the load generator; every
// event is its own frame.

import { hello, parseRequest, randomId, RawRoom } from "./_raw_room.ts";
import { reportHeapOnSignal, traceHeap } from "./_heap.ts";

interface Ws {
  data: { cid: string; rooms: Set<RawRoom> };
  send(data: string): number;
  subscribe(topic: string): void;
}
interface Srv {
  port: number;
  upgrade(req: Request, opts: { data: unknown }): boolean;
  publish(topic: string, data: string): number;
}
interface BunLike {
  serve(options: unknown): Srv;
}
const Bun = (globalThis as unknown as { Bun: BunLike }).Bun;
const proc = (globalThis as unknown as {
  process: { on(sig: string, cb: () => void): void; exit(code: number): void };
}).process;

const rooms = new Map<string, RawRoom>();
const topic = (room: RawRoom) => `raw:${room.name}`;

const srv: Srv = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(req: Request, s: Srv) {
    if (s.upgrade(req, { data: { cid: randomId(), rooms: new Set() } })) return;
    return new Response("Expected a WebSocket upgrade", { status: 426 });
  },
  websocket: {
    open(ws: Ws) {
      ws.send(hello(ws.data.cid));
    },
    message(ws: Ws, message: string) {
      const f = parseRequest(message);
      if (!f || f.op === "pong") return;
      let room = rooms.get(f.room);
      if (!room) rooms.set(f.room, room = new RawRoom(f.room));
      const cid = ws.data.cid;
      if (f.op === "join") {
        ws.data.rooms.add(room);
        srv.publish(topic(room), room.join(cid));
        if (f.sub) ws.subscribe(topic(room));
        ws.send(room.snapshotAnswer(f.id));
      } else if (f.op === "state") {
        srv.publish(topic(room), room.state(cid, f.state));
        ws.send(`{"t":"ok","id":${f.id},"seq":${room.seq}}`);
      }
    },
    close(ws: Ws) {
      for (const room of ws.data.rooms) {
        const frame = room.leave(ws.data.cid);
        if (frame) srv.publish(topic(room), frame);
      }
    },
    perMessageDeflate: false,
    sendPings: false,
  },
});
console.log(`PORT ${srv.port}`);
proc.on("SIGTERM", () => proc.exit(0));
reportHeapOnSignal(proc);
traceHeap(proc);
