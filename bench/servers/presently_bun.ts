// Benchmark target: Presently on the Bun adapter (Bun.serve on 127.0.0.1:0,
// native topic publish).

import { bunPresence } from "../../src/adapters/bun.ts";
import { benchPresence } from "./_presently.ts";
import { reportHeapOnSignal, traceHeap } from "./_heap.ts";

interface BunLike {
  env: Record<string, string | undefined>;
  serve(options: unknown): { port: number };
}
const Bun = (globalThis as unknown as { Bun: BunLike }).Bun;
const proc = (globalThis as unknown as {
  process: { on(sig: string, cb: () => void): void; exit(code: number): void };
}).process;

const presence = benchPresence((k) => Bun.env[k]);
const p = bunPresence(presence);
const srv = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch: p.fetch,
  websocket: p.websocket,
});
console.log(`PORT ${srv.port}`);
// Exit on SIGTERM so `--cpu-prof` can write its profile.
proc.on("SIGTERM", () => proc.exit(0));
reportHeapOnSignal(proc);
traceHeap(proc);
