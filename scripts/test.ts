// `deno task test`: install what the suites need (npm dev deps, redis-server,
// chromium), then run every test file under Deno and again under Bun.
//
// Env:
//   PRESENTLY_REQUIRE_ALL=1   a missing service fails the run instead of skipping
//   PRESENTLY_ONLY=deno|bun   run one runtime only
//   PRESENTLY_TESTS="a b"     run only these test files (paths under tests/)

const root = new URL("..", import.meta.url).pathname;
const requireAll = Deno.env.get("PRESENTLY_REQUIRE_ALL") === "1";
const only = Deno.env.get("PRESENTLY_ONLY");

async function run(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; quiet?: boolean } = {},
): Promise<{ code: number; out: string }> {
  const p = new Deno.Command(cmd, {
    args,
    cwd: root,
    env: opts.env ?? {},
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const dec = new TextDecoder();
  let out = "";
  const pump = async (s: ReadableStream<Uint8Array>, w: typeof Deno.stdout) => {
    for await (const chunk of s) {
      out += dec.decode(chunk, { stream: true });
      if (!opts.quiet) await w.write(chunk);
    }
  };
  const [status] = await Promise.all([
    p.status,
    pump(p.stdout, Deno.stdout),
    pump(p.stderr, Deno.stderr),
  ]);
  return { code: status.code, out };
}

async function which(bin: string): Promise<string | null> {
  try {
    const r = await run("sh", ["-c", `command -v ${bin}`], { quiet: true });
    return r.code === 0 ? r.out.trim() : null;
  } catch {
    return null;
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

const missing: string[] = [];
const env: Record<string, string> = {};

// 1. npm dev dependencies: bun, playwright-core, esbuild, the redis client.
const devDeps = Object.keys(
  JSON.parse(Deno.readTextFileSync(`${root}package.json`)).devDependencies ?? {},
);
if (devDeps.some((d) => !exists(`${root}node_modules/${d}/package.json`))) {
  console.log("[test] installing npm dev dependencies (bun, playwright-core, esbuild, redis)");
  const r = await run("npm", ["ci", "--no-audit", "--no-fund"]);
  if (r.code !== 0) await run("npm", ["install", "--no-audit", "--no-fund"]);
}
const bun = exists(`${root}node_modules/.bin/bun`)
  ? `${root}node_modules/.bin/bun`
  : await which("bun");
if (!bun) missing.push("bun (npm install bun failed)");

// 2. System services: redis-server and chromium, from apt when root.
const isRoot = Deno.uid?.() === 0;
let aptUpdated = false;
async function ensure(bin: string, pkg: string): Promise<string | null> {
  let path = await which(bin);
  if (path) return path;
  if (isRoot && (await which("apt-get"))) {
    console.log(`[test] installing ${pkg} with apt-get`);
    if (!aptUpdated) {
      await run("apt-get", ["update", "-qq"], { quiet: true });
      aptUpdated = true;
    }
    await run("apt-get", ["install", "-y", "-qq", pkg], {
      env: { DEBIAN_FRONTEND: "noninteractive" },
      quiet: true,
    });
    path = await which(bin);
  }
  return path;
}
const redis = await ensure("redis-server", "redis-server");
if (redis) env.PRESENTLY_REDIS_SERVER = redis;
else missing.push("redis-server");
const chromium = await ensure("chromium", "chromium");
if (chromium) env.PRESENTLY_CHROMIUM = chromium;
else missing.push("chromium");

for (const m of missing) {
  console.log(`\n!!!!! [test] MISSING: ${m} -- the suites that need it will be SKIPPED !!!!!\n`);
}
if (missing.length > 0 && requireAll) {
  console.error(`[test] PRESENTLY_REQUIRE_ALL=1 and missing: ${missing.join(", ")}`);
  Deno.exit(1);
}
if (requireAll) env.PRESENTLY_REQUIRE_ALL = "1";

// 3. Run the suites.
const selected = Deno.env.get("PRESENTLY_TESTS")?.split(/\s+/).filter(Boolean);
const files = selected ?? [...Deno.readDirSync(`${root}tests`)]
  .map((e) => e.name)
  .filter((n) => n.endsWith(".test.ts"))
  .sort()
  .map((n) => `tests/${n}`);

const results: Array<{ runtime: string; code: number; passed: number; failed: number }> = [];

if (only !== "bun") {
  console.log(`\n[test] ===== Deno: ${files.length} files =====`);
  const r = await run(Deno.execPath(), ["test", "-A", ...files], { env });
  // deno reports "N passed (M steps)": node:test `it`s are steps, and the
  // summary below counts those (top-level tests without steps are not added).
  const steps = r.out.match(
    /\| (\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed(?: \((\d+) steps?\))?/,
  );
  const passed = steps ? Number(steps[2] ?? steps[1]) : 0;
  const failed = steps ? Number(steps[4] ?? steps[3]) : (r.code === 0 ? 0 : 1);
  results.push({ runtime: "deno", code: r.code, passed, failed });
}
if (only !== "deno" && bun) {
  console.log(`\n[test] ===== Bun: ${files.length} files =====`);
  const r = await run(bun, ["test", "--timeout", "120000", ...files.map((f) => `./${f}`)], { env });
  const p = r.out.match(/(\d+) pass/);
  const f = r.out.match(/(\d+) fail/);
  results.push({
    runtime: "bun",
    code: r.code,
    passed: p ? Number(p[1]) : 0,
    failed: f ? Number(f[1]) : (r.code === 0 ? 0 : 1),
  });
}

// Node 20 (the Node adapter with the real `ws`): the runtime-agnostic suites,
// bundled to plain JS by esbuild (Node cannot run TypeScript), run by
// `node --test`. Node 20 needs --experimental-websocket for the clients.
const NODE_SUITES = ["tests/adapter.test.ts"];
const nodeFiles = files.filter((f) => NODE_SUITES.includes(f));
const node = await which("node");
if (!only && nodeFiles.length > 0) {
  if (!node) {
    console.log("\n!!!!! [test] MISSING: node -- the Node adapter suites are SKIPPED !!!!!\n");
    if (requireAll) results.push({ runtime: "node", code: 1, passed: 0, failed: 1 });
  } else {
    console.log(`\n[test] ===== Node: ${nodeFiles.length} files (bundled with esbuild) =====`);
    const outdir = `${root}.tmp/node-tests`;
    const bundled = await run(`${root}node_modules/.bin/esbuild`, [
      ...nodeFiles,
      "--bundle",
      "--platform=node",
      "--format=esm",
      "--target=node20",
      "--packages=external",
      `--outdir=${outdir}`,
      "--out-extension:.js=.mjs",
      "--log-level=warning",
    ]);
    const out = nodeFiles.map((f) => `${outdir}/${f.slice("tests/".length, -3)}.mjs`);
    const r = bundled.code !== 0 ? bundled : await run(node, [
      "--experimental-websocket",
      "--test",
      "--test-reporter=spec",
      ...out,
    ], { env });
    const p = r.out.match(/ℹ pass (\d+)/);
    const f = r.out.match(/ℹ fail (\d+)/);
    results.push({
      runtime: "node",
      code: r.code,
      passed: p ? Number(p[1]) : 0,
      failed: f ? Number(f[1]) : (r.code === 0 ? 0 : 1),
    });
  }
}

console.log("\n[test] ===== summary =====");
let passed = 0;
let failed = 0;
for (const r of results) {
  console.log(`[test] ${r.runtime}: ${r.passed} passed, ${r.failed} failed (exit ${r.code})`);
  passed += r.passed;
  failed += r.failed + (r.code !== 0 && r.failed === 0 ? 1 : 0);
}
console.log(`${passed} passed, ${failed} failed`);
Deno.exit(results.every((r) => r.code === 0) ? 0 : 1);
