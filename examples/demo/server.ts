// `deno task demo`: the demo on Deno.serve with the memory store.
// PORT (default 8000; 0 picks a free one). Prints the URL once listening.

import { presenceHandler } from "../../src/adapters/deno.ts";
import { createDemoPresence, type DemoAssets, demoRoute } from "./shared.ts";

const here = new URL(".", import.meta.url);

async function bundleClient(): Promise<string> {
  // `deno bundle` (esbuild inside) turns client.ts into one browser module.
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform=browser", new URL("client_entry.ts", here).pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

const assets: DemoAssets = {
  html: await Deno.readTextFile(new URL("index.html", here)),
  appJs: await Deno.readTextFile(new URL("app.js", here)),
  clientJs: await bundleClient(),
};

const presence = createDemoPresence();
const handler = presenceHandler(presence, {
  fallback: (req) => demoRoute(req, assets) ?? new Response("Not found", { status: 404 }),
});

const server = Deno.serve({
  port: Number(Deno.env.get("PORT") ?? 8000),
  hostname: Deno.env.get("HOST") ?? "0.0.0.0",
  onListen: ({ port }) => console.log(`Presently demo on http://localhost:${port}/`),
}, (req, info) => {
  // The page and the socket share one origin: the socket lives on /ws.
  if (new URL(req.url).pathname === "/ws") return handler(req, info);
  return demoRoute(req, assets) ?? new Response("Not found", { status: 404 });
});

Deno.addSignalListener("SIGINT", async () => {
  await presence.close();
  await server.shutdown();
  Deno.exit(0);
});
