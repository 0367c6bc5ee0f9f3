// Benchmark ceiling: raw Deno.serve with a JS send loop, no presence logic.
// Speaks just enough of the protocol for the load generator; every event is
// its own frame, sent to each subscriber in turn.

import { hello, parseRequest, randomId, RawRoom } from "./_raw_room.ts";

const rooms = new Map<string, { room: RawRoom; subs: Set<WebSocket> }>();

function publish(subs: Set<WebSocket>, frame: string): void {
  for (const s of subs) {
    try {
      s.send(frame);
    } catch { /* closing */ }
  }
}

Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: ({ port }) => console.log(`PORT ${port}`),
}, (req) => {
  if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return new Response("Expected a WebSocket upgrade", { status: 426 });
  }
  const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 0 });
  const cid = randomId();
  const joined = new Set<{ room: RawRoom; subs: Set<WebSocket> }>();
  socket.onopen = () => socket.send(hello(cid));
  socket.onmessage = (e) => {
    const f = parseRequest(e.data);
    if (!f || f.op === "pong") return;
    let r = rooms.get(f.room);
    if (!r) rooms.set(f.room, r = { room: new RawRoom(f.room), subs: new Set() });
    if (f.op === "join") {
      joined.add(r);
      publish(r.subs, r.room.join(cid));
      if (f.sub) r.subs.add(socket);
      socket.send(r.room.snapshotAnswer(f.id));
    } else if (f.op === "state") {
      publish(r.subs, r.room.state(cid, f.state));
      socket.send(`{"t":"ok","id":${f.id},"seq":${r.room.seq}}`);
    }
  };
  socket.onclose = () => {
    for (const r of joined) {
      r.subs.delete(socket);
      const frame = r.room.leave(cid);
      if (frame) publish(r.subs, frame);
    }
  };
  socket.onerror = () => {};
  return response;
});
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
