// The framework recipes' page server (Deno): builds the four pages with Bun
// (build.ts), then serves /?fw=react|vue|svelte|solid&user=ada&name=Ada and
// the presence socket on /ws. Run it:
//   deno run -A examples/frameworks/server.ts   (PORT, default 8010)
// The Chromium test (tests/frameworks_browser.test.ts) starts the same thing.

import { PresenceServer } from "../../mod.ts";
import { presenceHandler } from "../../src/adapters/deno.ts";

const here = new URL(".", import.meta.url).pathname;
const root = `${here}../../`;

/** The frameworks with a recipe. */
export const FRAMEWORKS = ["react", "vue", "svelte", "solid"] as const;

/** Build the pages into `outdir` with Bun and esbuild (see build.ts). */
export async function buildPages(outdir: string): Promise<void> {
  const bun = Deno.env.get("PRESENTLY_BUN") ?? `${root}node_modules/.bin/bun`;
  const out = await new Deno.Command(bun, {
    args: [`${here}build.ts`, outdir],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
}

const page = (fw: string) =>
  `<!doctype html><meta charset="utf-8"><title>Presently + ${fw}</title>
<div id="app"></div><script type="module" src="/fw/${fw}.js"></script>`;

/** Serve the pages from `outdir` and presence on /ws; metadata comes from `user`/`name`. */
export function serveFrameworks(
  outdir: string,
  port = 0,
): { presence: PresenceServer; server: Deno.HttpServer<Deno.NetAddr>; ready: Promise<number> } {
  const presence = new PresenceServer({
    userKey: "userId",
    authenticate: (req) => {
      const q = new URL(req.url).searchParams;
      return { userId: q.get("user") ?? "anon", name: q.get("name") ?? "Anon" };
    },
  });
  presence.trackPresence("doc");
  const ws = presenceHandler(presence);
  const ready = Promise.withResolvers<number>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port,
    onListen: ({ port }) => ready.resolve(port),
  }, async (req, info) => {
    const url = new URL(req.url);
    if (url.pathname === "/ws") return ws(req, info);
    const fw = url.searchParams.get("fw");
    if (url.pathname === "/" && FRAMEWORKS.includes(fw as never)) {
      return new Response(page(fw!), { headers: { "content-type": "text/html" } });
    }
    const m = url.pathname.match(/^\/fw\/(\w+)\.js$/);
    if (m && FRAMEWORKS.includes(m[1] as never)) {
      const js = await Deno.readFile(`${outdir}/${m[1]}.js`);
      return new Response(js, { headers: { "content-type": "text/javascript" } });
    }
    return new Response("Not found", { status: 404 });
  });
  return { presence, server, ready: ready.promise };
}

if (import.meta.main) {
  const outdir = `${root}test-output/frameworks`;
  await buildPages(outdir);
  const { ready } = serveFrameworks(outdir, Number(Deno.env.get("PORT") ?? 8010));
  const port = await ready;
  for (const fw of FRAMEWORKS) {
    console.log(`${fw}: http://localhost:${port}/?fw=${fw}&user=ada&name=Ada`);
  }
}
