// `deno task build`: bundle each client entry with esbuild into one minified
// ESM file under dist/, print its min+gzip size, enforce its budget, and check
// that no server or store code was pulled in.
//
// Entries and budgets (min+gzip, what a page ships for that import):
//   client.ts    the core PresenceClient              4096 B
//   presence.ts  createPresence + roomStore bindings  2048 B (no core inside)
//   throttle.ts  ThrottledPresenceClient, core incl.  4096 + 640 B

const root = new URL("..", import.meta.url).pathname;
const esbuild = `${root}node_modules/.bin/esbuild`;
const ENTRIES: Array<{ entry: string; out: string; budget: number }> = [
  { entry: "client.ts", out: "presently-client.min.js", budget: 4096 },
  { entry: "presence.ts", out: "presently-presence.min.js", budget: 2048 },
  { entry: "throttle.ts", out: "presently-throttle.min.js", budget: 4096 + 640 },
];

try {
  Deno.statSync(esbuild);
} catch {
  console.log("[build] installing npm dev dependencies (esbuild)");
  const r = await new Deno.Command("npm", { args: ["ci", "--no-audit", "--no-fund"], cwd: root })
    .output();
  if (!r.success) throw new Error("npm ci failed");
}

let failed = false;
for (const { entry, out, budget } of ENTRIES) {
  const file = `${root}dist/${out}`;
  const meta = `dist/${out}.meta.json`;
  const r = await new Deno.Command(esbuild, {
    args: [
      entry,
      "--bundle",
      "--minify",
      "--format=esm",
      "--target=es2022",
      `--outfile=${file}`,
      `--metafile=${meta}`,
      "--log-level=warning",
    ],
    cwd: root,
  }).output();
  if (!r.success) {
    console.error(new TextDecoder().decode(r.stderr));
    Deno.exit(1);
  }
  const bytes = Deno.readFileSync(file);
  const gz = new Uint8Array(
    await new Response(new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip")))
      .arrayBuffer(),
  );
  const inputs = Object.keys(JSON.parse(Deno.readTextFileSync(`${root}${meta}`)).inputs);
  const forbidden = inputs.filter((p) =>
    /src\/(server|store|adapters)\//.test(p) || p === "mod.ts"
  );
  console.log(`[build] ${entry} -> dist/${out}`);
  console.log(`[build]   inputs: ${inputs.join(", ")}`);
  console.log(
    `[build]   ${entry} minified: ${bytes.length} B, min+gzip: ${gz.length} B (budget ${budget} B)`,
  );
  if (forbidden.length > 0) {
    console.error(`[build]   server or store code in ${entry}: ${forbidden.join(", ")}`);
    failed = true;
  }
  if (gz.length > budget) {
    console.error(`[build]   ${entry} is over budget by ${gz.length - budget} B`);
    failed = true;
  }
}
if (failed) Deno.exit(1);
