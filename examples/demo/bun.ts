// `bun examples/demo/bun.ts`: the same demo on Bun.serve (native topic publish).
// PORT (default 8000; 0 picks a free one). Prints the URL once listening.

import { bunPresence } from "../../src/adapters/bun.ts";
import { createDemoPresence, type DemoAssets, demoRoute } from "./shared.ts";

interface BunLike {
  build(o: { entrypoints: string[]; target: string; format: string }): Promise<{
    success: boolean;
    logs: unknown[];
    outputs: { text(): Promise<string> }[];
  }>;
  file(path: string): { text(): Promise<string> };
  serve(o: unknown): { port: number; stop(closeActive?: boolean): void };
  env: Record<string, string | undefined>;
}
const Bun = (globalThis as unknown as { Bun: BunLike }).Bun;
const here = new URL(".", import.meta.url).pathname;

const built = await Bun.build({
  entrypoints: [`${here}client_entry.ts`],
  target: "browser",
  format: "esm",
});
if (!built.success) throw new Error(`client bundle failed: ${JSON.stringify(built.logs)}`);

const assets: DemoAssets = {
  html: await Bun.file(`${here}index.html`).text(),
  appJs: await Bun.file(`${here}app.js`).text(),
  clientJs: await built.outputs[0]!.text(),
};

const presence = createDemoPresence();
const p = bunPresence(presence);
const server = Bun.serve({
  port: Number(Bun.env.PORT ?? 8000),
  hostname: Bun.env.HOST ?? "0.0.0.0",
  fetch(req: Request, srv: Parameters<typeof p.fetch>[1]) {
    if (new URL(req.url).pathname === "/ws") return p.fetch(req, srv);
    return demoRoute(req, assets) ?? new Response("Not found", { status: 404 });
  },
  websocket: p.websocket,
});
console.log(`Presently demo on http://localhost:${server.port}/`);

const proc = (globalThis as unknown as {
  process: { on(s: string, f: () => void): void; exit(code: number): never };
}).process;
proc.on("SIGINT", async () => {
  await presence.close();
  server.stop(true);
  proc.exit(0);
});
