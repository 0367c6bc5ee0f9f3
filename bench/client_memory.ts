// Memory of N clients in one process: PresenceClient against a minimal raw
// WebSocket client that speaks just enough of the protocol (join, answer
// pings, keep the room's members), on the runtime that runs it:
//   deno run -A --v8-flags=--expose-gc bench/client_memory.ts raw|presence [N=500]
//   bun bench/client_memory.ts raw|presence [N=500]
// One kind per process, so neither inherits the other's freed pages.
// The server is the benchmark's Presently server on Bun, in its own process
// (one room per kind, all N joined and subscribed). Reported: heap and RSS
// per client after a forced GC, from the same baseline (no clients).

import { spawn } from "node:child_process";
import { PresenceClient } from "../client.ts";

const argv = (globalThis as unknown as { process: { argv: string[] } }).process.argv;
const KIND = argv.includes("presence") ? "presence" : "raw";
const N = Number(argv.at(-1)) || 500;
const runtime = "Bun" in globalThis ? "bun" : "deno";

function gc(): void {
  const g = globalThis as unknown as { gc?: () => void; Bun?: { gc(force: boolean): void } };
  if (g.Bun) g.Bun.gc(true);
  else g.gc?.();
}

function usage(): { heap: number; rss: number } {
  const p = (globalThis as unknown as {
    process: { memoryUsage(): { heapUsed: number; rss: number } };
  }).process.memoryUsage();
  return { heap: p.heapUsed, rss: p.rss };
}

async function settle(): Promise<{ heap: number; rss: number }> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 100));
  }
  return usage();
}

/** The least a client can be: a socket, the room's members, pong. */
class RawClient {
  readonly members = new Map<string, unknown>();
  ws: WebSocket;
  constructor(url: string, room: string, ready: () => void) {
    this.ws = new WebSocket(url);
    this.ws.onmessage = (e) => {
      const f = JSON.parse(String(e.data));
      if (f.t === "hello") this.ws.send(`{"op":"join","id":1,"room":"${room}","sub":true}`);
      else if (f.t === "ok" && f.id === 1) {
        for (const p of f.present) this.members.set(p.id, p.meta);
        ready();
      } else if (f.t === "ev") {
        for (const e of f.e) {
          if (e[1] === "j") this.members.set(e[2], e[3]);
          else if (e[1] === "l") this.members.delete(e[2]);
        }
      } else if (f.t === "ping") this.ws.send('{"op":"pong"}');
    };
  }
}

const root = new URL("..", import.meta.url).pathname;
const server = spawn(`${root}node_modules/.bin/bun`, [`${root}bench/servers/presently_bun.ts`], {
  stdio: ["ignore", "pipe", "ignore"],
});
const port = await new Promise<number>((resolve) => {
  let buf = "";
  server.stdout!.on("data", (chunk: Uint8Array) => {
    buf += new TextDecoder().decode(chunk);
    const m = buf.match(/PORT (\d+)/);
    if (m) resolve(Number(m[1]));
  });
});
const running = { url: `ws://127.0.0.1:${port}/` };
const out: string[] = [];
for (const kind of [KIND]) {
  const base = await settle();
  const holders: unknown[] = [];
  const room = `mem-${kind}`;
  await Promise.all(Array.from({ length: N }, async () => {
    if (kind === "raw") {
      await new Promise<void>((ready) => holders.push(new RawClient(running.url, room, ready)));
    } else {
      const c = new PresenceClient(running.url);
      holders.push(c);
      await c.connect();
      await c.joinRoom(room, () => {});
    }
  }));
  await new Promise((r) => setTimeout(r, 500));
  const loaded = await settle();
  const heapKb = (loaded.heap - base.heap) / 1024 / N;
  const rssKb = (loaded.rss - base.rss) / 1024 / N;
  out.push(
    `| ${runtime} | ${kind === "raw" ? "raw WebSocket client" : "PresenceClient"} | ${N} | ${
      heapKb.toFixed(1)
    } | ${rssKb.toFixed(1)} |`,
  );
  for (const h of holders) {
    if (h instanceof PresenceClient) await h.close();
    else (h as RawClient).ws.close();
  }
  await new Promise((r) => setTimeout(r, 500));
}
server.kill("SIGTERM");
for (const line of out) console.log(line);
(globalThis as unknown as { process: { exit(c: number): void } }).process.exit(0);
