// `deno task build`: bundle client.ts with esbuild into one minified ESM file
// (dist/presently-client.min.js), print its min+gzip size, enforce the budget,
// and check that no server or store code was pulled in.

const root = new URL("..", import.meta.url).pathname;
const BUDGET = 4096;
const out = `${root}dist/presently-client.min.js`;
const esbuild = `${root}node_modules/.bin/esbuild`;

try {
  Deno.statSync(esbuild);
} catch {
  console.log("[build] installing npm dev dependencies (esbuild)");
  const r = await new Deno.Command("npm", { args: ["ci", "--no-audit", "--no-fund"], cwd: root })
    .output();
  if (!r.success) throw new Error("npm ci failed");
}

const r = await new Deno.Command(esbuild, {
  args: [
    "client.ts",
    "--bundle",
    "--minify",
    "--format=esm",
    "--target=es2022",
    `--outfile=${out}`,
    "--metafile=dist/meta.json",
    "--log-level=warning",
  ],
  cwd: root,
}).output();
if (!r.success) {
  console.error(new TextDecoder().decode(r.stderr));
  Deno.exit(1);
}

const bytes = Deno.readFileSync(out);
const gz = new Uint8Array(
  await new Response(new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip")))
    .arrayBuffer(),
);
const meta = JSON.parse(Deno.readTextFileSync(`${root}dist/meta.json`));
const inputs = Object.keys(meta.inputs as Record<string, unknown>);
const forbidden = inputs.filter((p) => /src\/(server|store|adapters)\//.test(p) || p === "mod.ts");

console.log(`[build] ${out.slice(root.length)}`);
console.log(`[build] inputs: ${inputs.join(", ")}`);
console.log(`[build] minified: ${bytes.length} B, min+gzip: ${gz.length} B (budget ${BUDGET} B)`);
if (forbidden.length > 0) {
  console.error(`[build] server or store code in the client bundle: ${forbidden.join(", ")}`);
  Deno.exit(1);
}
if (gz.length > BUDGET) {
  console.error(`[build] over budget by ${gz.length - BUDGET} B`);
  Deno.exit(1);
}
