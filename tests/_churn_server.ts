// A server in its own process for churn measurements, on the runtime that
// runs it (Deno or Bun): `presently` mounts a PresenceServer with a memory
// store, `echo` is a bare WebSocket echo server to compare against. It prints
// `LISTENING <port> <pid>`; `GET /stats` answers counters (and, for
// presently, what is left in the store), `GET /gc` forces a full GC.
//
//   deno run -A --v8-flags=--expose-gc tests/_churn_server.ts presently
//   bun tests/_churn_server.ts echo

import process from "node:process";
import { MemoryPresenceStore, PresenceServer } from "../mod.ts";

const mode = process.argv[process.argv.length - 1] === "echo" ? "echo" : "presently";
// deno-lint-ignore no-explicit-any
const G = globalThis as any;

let connects = 0;
let disconnects = 0;
let staleMetadata = 0;
const store = new MemoryPresenceStore();
// The echo server stays bare: no PresenceServer (and no sweep loop) at all.
const presence = mode === "presently" ? new PresenceServer({ store, leaveGraceMs: 300 }) : null;
presence?.trackPresence("churn");
presence?.onConnection(() => connects++);
presence?.onDisconnection((c) => {
  disconnects++;
  store.getMetadata(c.id).then((m) => {
    if (m !== null) staleMetadata++;
  });
});
let echoOpen = 0;
let echoOpened = 0;

async function http(req: Request): Promise<Response> {
  const path = new URL(req.url).pathname;
  if (path === "/gc") {
    for (let i = 0; i < 3; i++) {
      if (G.Bun) G.Bun.gc(true);
      else G.gc?.();
      await new Promise((r) => setTimeout(r, 20));
    }
    return new Response("ok");
  }
  if (path === "/stats") {
    const body: Record<string, unknown> = { mode, heapUsed: process.memoryUsage().heapUsed };
    if (presence) {
      Object.assign(body, {
        stats: presence.stats(),
        present: (await presence.getPresentConnections("churn")).length,
        states: (await presence.getPresenceStates("churn")).size,
        connects,
        disconnects,
        staleMetadata,
      });
    } else Object.assign(body, { open: echoOpen, opened: echoOpened });
    return Response.json(body);
  }
  return new Response("not found", { status: 404 });
}

let port: number;
if (G.Bun) {
  const { bunPresence } = await import("../src/adapters/bun.ts");
  const p = presence ? bunPresence(presence, { fallback: http }) : null;
  const echo = {
    open() {
      echoOpen++;
      echoOpened++;
    },
    message(ws: { send(d: string | Uint8Array): number }, m: string | Uint8Array) {
      ws.send(m);
    },
    close() {
      echoOpen--;
    },
    sendPings: false,
    perMessageDeflate: false,
  };
  const server = G.Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: p ? p.fetch : (req: Request, srv: { upgrade(r: Request): boolean }) => {
      if (req.headers.get("upgrade") === "websocket") {
        return srv.upgrade(req) ? undefined : new Response("no", { status: 400 });
      }
      return http(req);
    },
    websocket: p ? p.websocket : echo,
  });
  port = server.port;
} else {
  const { presenceHandler } = await import("../src/adapters/deno.ts");
  const D = G.Deno as typeof Deno;
  const handler = presence ? presenceHandler(presence, { fallback: http }) : (req: Request) => {
    if (req.headers.get("upgrade") !== "websocket") return http(req);
    const { socket, response } = D.upgradeWebSocket(req, { idleTimeout: 0 });
    socket.onopen = () => {
      echoOpen++;
      echoOpened++;
    };
    socket.onmessage = (e) => socket.send(e.data);
    socket.onclose = () => echoOpen--;
    socket.onerror = () => {};
    return response;
  };
  const ready = Promise.withResolvers<number>();
  D.serve({ hostname: "127.0.0.1", port: 0, onListen: (a) => ready.resolve(a.port) }, handler);
  port = await ready.promise;
}
console.log(`LISTENING ${port} ${process.pid}`);
