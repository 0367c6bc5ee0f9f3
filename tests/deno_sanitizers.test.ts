// Deno.test with the op and resource sanitizers on: the Deno adapter leaks
// no timer, socket or listener after close(). (node:test tests are not
// sanitized by Deno, hence these.) Under Bun this file only reports a skip.

import { it } from "node:test";
import { PresenceServer } from "../mod.ts";

// deno-lint-ignore no-explicit-any
const D = (globalThis as any).Deno as typeof Deno | undefined;

async function scenario(closeClientFirst: boolean): Promise<void> {
  const { presenceHandler } = await import("../src/adapters/deno.ts");
  const server = new PresenceServer({ leaveGraceMs: 1000 });
  server.trackPresence(/^.+$/);
  const ac = new AbortController();
  const listening = Promise.withResolvers<number>();
  const http = D!.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: ac.signal,
    onListen: ({ port }) => listening.resolve(port),
  }, presenceHandler(server));
  const port = await listening.promise;
  const ws = new WebSocket(`ws://127.0.0.1:${port}/?v=1`);
  const closed = new Promise<void>((r) => ws.addEventListener("close", () => r()));
  const answered = Promise.withResolvers<void>();
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (f.t === "hello") {
      ws.send(JSON.stringify({ op: "join", id: 1, room: "r", sub: true }));
      ws.send(JSON.stringify({ op: "state", id: 2, room: "r", state: 1, expireAfter: 50_000 }));
    }
    if (f.t === "ok" && f.id === 2) answered.resolve();
  };
  await answered.promise;
  if (closeClientFirst) {
    ws.close();
    await closed;
  }
  await server.close();
  await closed;
  ac.abort();
  await http.finished;
}

if (D) {
  D.test({
    name: "Deno adapter: server.close() leaves no ops or resources behind (server closes sockets)",
    sanitizeOps: true,
    sanitizeResources: true,
  }, () => scenario(false));
  D.test({
    name: "Deno adapter: a client close then server.close() leaves no ops or resources behind",
    sanitizeOps: true,
    sanitizeResources: true,
  }, () => scenario(true));
  D.test({
    name: "PresenceServer without sockets: close() clears its sweep timer",
    sanitizeOps: true,
    sanitizeResources: true,
  }, async () => {
    const server = new PresenceServer();
    await server.close();
  });
} else {
  it.skip("Deno.test sanitizer checks run under Deno only", () => {});
}
