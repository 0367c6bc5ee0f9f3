// `deno task bench`: the load benchmark. Installs what it needs, then for each
// size N runs every target as its own server process on 127.0.0.1:0 against
// the load generator (bench/gen.ts on Bun), samples the server's peak RSS, and
// writes the table to stdout, bench/RESULTS.md and bench/chart.svg.
//
// Flags (or env): --n 500,2000 (BENCH_N) --p 50 (BENCH_P) --window 10
// (BENCH_WINDOW, seconds) --fixed 5 (BENCH_FIXED, seconds) --rate 10
// (BENCH_RATE, offered publishes/s: N times as many deliveries/s) --state-bytes 0 (BENCH_STATE_BYTES)
// --leave-share 0.1 --targets raw-bun,presently-bun,raw-deno,presently-deno,mesh
// (BENCH_TARGETS) --mesh-max-n 500 (BENCH_MESH_MAX_N) --count-n 10000
// (BENCH_COUNT_N, 0 skips) --rounds 1 (BENCH_ROUNDS: best of k) --join-rounds 3
// (BENCH_JOIN_ROUNDS: join storm and peak RSS as the median of k runs with the spread, except
// Mesh and storms over 30 s) --no-micro
// --quiet-wait 90 (BENCH_QUIET_WAIT: seconds per run to wait for other work on a shared
// machine to pause before a target starts) --no-write (do not touch RESULTS.md / chart.svg)
// --profile (servers write CPU profiles to bench/out/prof) --phases join,loop,fixed,leave.

import { renderChart } from "./_chart.ts";
import { renderCount, renderTable, renderTargets, type Row, type Settings } from "./_report.ts";

const root = new URL("..", import.meta.url).pathname;
const benchDir = `${root}bench/`;
const outDir = `${benchDir}out/`;

function arg(name: string, env: string, dflt: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < Deno.args.length) return Deno.args[i + 1]!;
  return Deno.env.get(env) ?? dflt;
}
const has = (name: string) => Deno.args.includes(`--${name}`);

const settings: Settings = {
  sizes: arg("n", "BENCH_N", "500,2000").split(",").map(Number).filter((n) => n > 0),
  p: Number(arg("p", "BENCH_P", "50")),
  windowS: Number(arg("window", "BENCH_WINDOW", "10")),
  fixedS: Number(arg("fixed", "BENCH_FIXED", "5")),
  rate: Number(arg("rate", "BENCH_RATE", "10")),
  stateBytes: Number(arg("state-bytes", "BENCH_STATE_BYTES", "0")),
  leaveShare: Number(arg("leave-share", "BENCH_LEAVE_SHARE", "0.1")),
  graceMs: 1000,
  sweepMs: 25,
  countMs: 100,
  meshMaxN: Number(arg("mesh-max-n", "BENCH_MESH_MAX_N", "500")),
  countN: Number(arg("count-n", "BENCH_COUNT_N", "10000")),
  rounds: Math.max(1, Number(arg("rounds", "BENCH_ROUNDS", "1"))),
  joinRounds: Math.max(1, Number(arg("join-rounds", "BENCH_JOIN_ROUNDS", "3"))),
  targets: arg(
    "targets",
    "BENCH_TARGETS",
    "raw-bun,presently-bun,raw-deno,presently-deno,mesh",
  ).split(","),
};
const profile = has("profile");
const command = `deno task bench${Deno.args.length ? " " + Deno.args.join(" ") : ""}`;

// ---------------------------------------------------------------------------
// Processes

async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; quiet?: boolean; env?: Record<string, string> } = {},
): Promise<{ code: number; out: string }> {
  const p = new Deno.Command(cmd, {
    args,
    cwd: opts.cwd ?? root,
    stdout: "piped",
    stderr: "piped",
    ...(opts.env ? { env: opts.env } : {}),
  }).spawn();
  const [status, out, err] = await Promise.all([
    p.status,
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
  ]);
  if (!opts.quiet) {
    if (out) console.log(out.trimEnd());
    if (err) console.error(err.trimEnd());
  }
  return { code: status.code, out: out + err };
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

async function firstLine(cmd: string, args: string[]): Promise<string> {
  try {
    const r = await run(cmd, args, { quiet: true });
    return r.out.split("\n")[0]!.trim();
  } catch {
    return "missing";
  }
}

// ---------------------------------------------------------------------------
// 1. What the benchmark needs

const deno = Deno.execPath();
let bun = `${root}node_modules/.bin/bun`;
if (!exists(bun)) {
  console.log("[bench] installing npm dev dependencies (bun)");
  const r = await run("npm", ["ci", "--no-audit", "--no-fund"]);
  if (r.code !== 0) await run("npm", ["install", "--no-audit", "--no-fund"]);
}
if (!exists(bun)) bun = (await which("bun")) ?? "";
if (!bun) {
  console.error("[bench] Bun is missing and could not be installed: cannot run the generator");
  Deno.exit(1);
}
const node = await which("node");
let redis = await which("redis-server");
const skipped: string[] = [];
if (settings.targets.includes("mesh")) {
  if (!exists(`${benchDir}mesh/node_modules/@prsm/realtime`)) {
    console.log("[bench] installing @prsm/realtime in bench/mesh (with the @prsm/log stand-in)");
    const r = await run("npm", ["install", "--no-audit", "--no-fund"], { cwd: `${benchDir}mesh` });
    if (r.code !== 0) skipped.push("mesh: npm install in bench/mesh failed");
  }
  if (!redis && Deno.uid?.() === 0 && (await which("apt-get"))) {
    console.log("[bench] installing redis-server with apt-get");
    await run("apt-get", ["update"], { quiet: true });
    await run("apt-get", ["install", "-y", "--no-install-recommends", "redis-server"], {
      quiet: true,
      env: { DEBIAN_FRONTEND: "noninteractive" },
    });
    redis = await which("redis-server");
  }
  if (!redis) skipped.push("mesh: redis-server is missing");
  if (!node) skipped.push("mesh: node is missing");
  if (skipped.length > 0) {
    console.error(`[bench] SKIPPING @prsm/realtime: ${skipped.join("; ")}`);
    settings.targets = settings.targets.filter((t) => t !== "mesh");
  }
}
Deno.mkdirSync(`${outDir}prof`, { recursive: true });

// ---------------------------------------------------------------------------
// 2. Targets

interface Target {
  id: string;
  label: string;
  runtime: "bun" | "deno" | "node";
  cmd: () => [string, string[]];
  proto: "presently" | "mesh";
}

const denoProf = (name: string) =>
  profile
    ? [
      "--cpu-prof",
      `--cpu-prof-dir=${outDir}prof`,
      `--cpu-prof-name=${name}.cpuprofile`,
      "--cpu-prof-md",
    ]
    : [];
const bunProf = denoProf;

const TARGETS: Record<string, Target> = {
  "presently-deno": {
    id: "presently-deno",
    label: "Presently (Deno adapter)",
    runtime: "deno",
    proto: "presently",
    cmd: () => [deno, [
      "run",
      "-A",
      ...denoProf("presently-deno"),
      `${benchDir}servers/presently_deno.ts`,
    ]],
  },
  "presently-bun": {
    id: "presently-bun",
    label: "Presently (Bun adapter)",
    runtime: "bun",
    proto: "presently",
    cmd: () => [bun, [...bunProf("presently-bun"), `${benchDir}servers/presently_bun.ts`]],
  },
  "raw-bun": {
    id: "raw-bun",
    label: "raw Bun.serve (native publish)",
    runtime: "bun",
    proto: "presently",
    cmd: () => [bun, [...bunProf("raw-bun"), `${benchDir}servers/raw_bun.ts`]],
  },
  "raw-deno": {
    id: "raw-deno",
    label: "raw Deno.serve (send loop)",
    runtime: "deno",
    proto: "presently",
    cmd: () => [deno, ["run", "-A", ...denoProf("raw-deno"), `${benchDir}servers/raw_deno.ts`]],
  },
  mesh: {
    id: "mesh",
    label: "@prsm/realtime (Node + Redis)",
    runtime: "node",
    proto: "mesh",
    cmd: () => [node ?? "node", [`${benchDir}mesh/server.mjs`]],
  },
};

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function procStatus(pid: number, field: string): number {
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = s.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* gone */ }
  const t = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 5000);
  await child.status;
  clearTimeout(t);
}

async function startRedis(): Promise<{ port: number; child: Deno.ChildProcess }> {
  const port = freePort();
  const child = new Deno.Command(redis!, {
    args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0; i < 100; i++) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return { port, child };
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error("redis-server did not start");
}

function cpuTimes(): { busy: number; total: number } {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0]!.trim().split(/\s+/).slice(1).map(
    Number,
  );
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

const quietWaitS = Number(arg("quiet-wait", "BENCH_QUIET_WAIT", "90"));
let quietBudgetMs = quietWaitS * 1000;

/**
 * On a shared machine, wait (within a budget for the whole run) until other
 * work leaves the cores mostly idle, so consecutive targets see alike noise.
 */
async function waitQuiet(): Promise<void> {
  while (quietBudgetMs > 0) {
    const a = cpuTimes();
    await new Promise((r) => setTimeout(r, 500));
    const b = cpuTimes();
    const busy = (b.busy - a.busy) / Math.max(1, b.total - a.total);
    if (busy < 0.2) return;
    quietBudgetMs -= 500;
    if (quietBudgetMs <= 0) {
      console.log(`[bench] machine still busy (${Math.round(busy * 100)} %): going on`);
    }
  }
}

/** Start a target, run the generator against it, return the generator's result plus RSS. */
async function measure(
  target: Target,
  n: number,
  extra: string[] = [],
): Promise<Record<string, unknown>> {
  await waitQuiet();
  let redisProc: { port: number; child: Deno.ChildProcess } | null = null;
  const env: Record<string, string> = {};
  if (target.proto === "mesh") {
    redisProc = await startRedis();
    env.REDIS_PORT = String(redisProc.port);
  }
  const [cmd, args] = target.cmd();
  const log = await Deno.open(`${outDir}${target.id}-${n}.log`, {
    write: true,
    create: true,
    truncate: true,
  });
  const child = new Deno.Command(cmd, {
    args,
    cwd: root,
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logged = child.stderr.pipeTo(log.writable).catch(() => {});
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let port = 0;
  const deadline = Date.now() + 30_000;
  while (port === 0 && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    const m = buf.match(/PORT (\d+)/);
    if (m) port = Number(m[1]);
  }
  void (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })().catch(() => {});
  if (port === 0) {
    await stop(child);
    if (redisProc) await stop(redisProc.child);
    throw new Error(`${target.id} did not print its port`);
  }
  console.log(`[bench] ${target.label}: N=${n} on port ${port} (pid ${child.pid})`);
  let peakRss = 0;
  const idleRss = procStatus(child.pid, "VmRSS");
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, procStatus(child.pid, "VmRSS"));
  }, 100);
  const genArgs = [
    `${benchDir}gen.ts`,
    "--url",
    `ws://127.0.0.1:${port}/`,
    "--proto",
    target.proto,
    "--n",
    String(n),
    "--p",
    String(settings.p),
    "--window",
    String(settings.windowS),
    "--fixed",
    String(settings.fixedS),
    "--rate",
    String(settings.rate),
    "--state-bytes",
    String(settings.stateBytes),
    "--leave-share",
    String(settings.leaveShare),
    "--grace",
    String(settings.graceMs),
    "--server-pid",
    String(child.pid),
    "--phases",
    arg("phases", "BENCH_PHASES", "join,loop,fixed,leave"),
    ...extra,
  ];
  const gen = await run(bun, genArgs, { quiet: true });
  clearInterval(sampler);
  const hwm = procStatus(child.pid, "VmHWM");
  const redisHwm = redisProc ? procStatus(redisProc.child.pid, "VmHWM") : null;
  await stop(child);
  await logged;
  if (redisProc) await stop(redisProc.child);
  for (const line of gen.out.split("\n")) {
    if (line.startsWith("[gen")) console.log(`  ${line}`);
  }
  const line = gen.out.split("\n").find((l) => l.startsWith("RESULT "));
  if (!line) {
    console.error(gen.out.slice(-2000));
    throw new Error(`generator failed against ${target.id}`);
  }
  const result = JSON.parse(line.slice(7));
  result.rssMb = Math.round(Math.max(hwm, peakRss));
  result.idleRssMb = Math.round(idleRss);
  if (redisHwm !== null) result.redisRssMb = Math.round(redisHwm);
  return result;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function spread(xs: number[]): [number, number] {
  return [Math.min(...xs), Math.max(...xs)];
}

/** Keep the better of two rounds, figure by figure. */
function best(
  a: Record<string, unknown> | undefined,
  b: Record<string, unknown>,
): Record<string, unknown> {
  if (!a) return b;
  const pick = (x: unknown, y: unknown, higher: boolean) => {
    if (typeof x !== "number") return y;
    if (typeof y !== "number") return x;
    return higher ? Math.max(x, y) : Math.min(x, y);
  };
  const merge = (k: string, fields: Record<string, boolean>) => {
    const x = (a[k] ?? {}) as Record<string, unknown>;
    const y = (b[k] ?? {}) as Record<string, unknown>;
    const out: Record<string, unknown> = { ...y };
    for (const [f, higher] of Object.entries(fields)) out[f] = pick(x[f], y[f], higher);
    return out;
  };
  return {
    ...b,
    join: merge("join", { ms: false, joinedMs: false }),
    loop: merge("loop", { deliveriesPerSec: true, p50: false, p99: false }),
    fixed: merge("fixed", { p50: false, p99: false, p999: false }),
    leave: merge("leave", { ms: false }),
    rssMb: pick(a.rssMb, b.rssMb, false),
  };
}

// ---------------------------------------------------------------------------
// 3. Run

const started = new Date();
const machine = {
  cpu: (Deno.readTextFileSync("/proc/cpuinfo").match(/model name\s*:\s*(.+)/)?.[1] ?? "unknown")
    .trim(),
  cores: navigator.hardwareConcurrency,
  memGb: Math.round(Deno.systemMemoryInfo().total / 2 ** 30),
  load: Deno.loadavg().map((x) => x.toFixed(2)).join(" "),
  deno: Deno.version.deno,
  bun: await firstLine(bun, ["--version"]),
  node: node ? await firstLine(node, ["--version"]) : "missing",
  redis: redis ? await firstLine(redis, ["--version"]) : "missing",
};
console.log(`[bench] ${command}`);
console.log(`[bench] ${machine.cores} cores (${machine.cpu}), load ${machine.load}`);

const rows: Row[] = [];
for (const n of settings.sizes) {
  for (const id of settings.targets) {
    const target = TARGETS[id];
    if (!target) {
      console.error(`[bench] unknown target "${id}"`);
      continue;
    }
    if (id === "mesh" && n > settings.meshMaxN) {
      console.log(
        `[bench] ${target.label}: N=${n} skipped (over --mesh-max-n ${settings.meshMaxN})`,
      );
      continue;
    }
    let result: Record<string, unknown> | undefined;
    for (let r = 0; r < settings.rounds; r++) {
      try {
        result = best(result, await measure(target, n));
      } catch (e) {
        console.error(`[bench] ${target.label} N=${n}: ${e instanceof Error ? e.message : e}`);
      }
    }
    // The join storm and the peak RSS (a join-storm spike) are short and
    // noisy: extra storm-only runs; the median of all runs is reported, with
    // the spread (min–max).
    const join = result?.join as Record<string, unknown> | undefined;
    if (result && join && id !== "mesh" && typeof join.ms === "number" && join.ms < 30_000) {
      const storms = [join.ms as number];
      const peaks = typeof result.rssMb === "number" ? [result.rssMb] : [];
      for (let r = 1; r < settings.joinRounds; r++) {
        try {
          const extra = await measure(target, n, ["--phases", "join"]);
          const ms = (extra.join as Record<string, unknown>).ms;
          if (typeof ms === "number") storms.push(ms);
          if (typeof extra.rssMb === "number") peaks.push(extra.rssMb);
        } catch (e) {
          console.error(
            `[bench] ${target.label} N=${n} join round: ${e instanceof Error ? e.message : e}`,
          );
        }
      }
      result.join = {
        ...join,
        ms: median(storms),
        msSpread: spread(storms),
        rounds: storms.length,
      };
      if (peaks.length > 0) {
        result.rssMb = median(peaks);
        result.rssSpread = spread(peaks);
      }
    }
    if (result) rows.push({ target: id, label: target.label, runtime: target.runtime, n, result });
  }
}

const countRows: Row[] = [];
if (settings.countN > 0) {
  for (const id of ["presently-bun", "presently-deno"]) {
    const target = TARGETS[id]!;
    try {
      const result = await measure(target, settings.countN, [
        "--mode",
        "count",
        "--join-timeout",
        "120",
        "--concurrency",
        "256",
      ]);
      countRows.push({
        target: id,
        label: target.label,
        runtime: target.runtime,
        n: settings.countN,
        result,
      });
    } catch (e) {
      console.error(`[bench] count mode on ${id}: ${e instanceof Error ? e.message : e}`);
    }
  }
}

let micro = "";
if (!has("no-micro")) {
  console.log("[bench] micro benchmarks: deno bench -A bench/micro_bench.ts");
  const r = await run(deno, ["bench", "-A", "--no-check", `${benchDir}micro_bench.ts`], {
    quiet: true,
    env: { NO_COLOR: "1" },
  });
  micro = r.out.trim();
}

// ---------------------------------------------------------------------------
// 4. Report

const table = renderTable(rows, settings);
const targets = renderTargets(rows, settings);
const count = renderCount(countRows, settings);
console.log("");
console.log(table);
console.log("");
console.log(targets);
if (count) console.log(`\n${count}`);
if (micro) console.log(`\n${micro}`);

Deno.writeTextFileSync(
  `${outDir}results-${started.toISOString().replace(/[:.]/g, "-")}.json`,
  JSON.stringify({ command, started, machine, settings, rows, countRows }, null, 2),
);

if (!has("no-write")) {
  const settingsList = [
    `- N = ${settings.sizes.join(", ")} clients in one room, every one joined and subscribed; ` +
    `P = ${settings.p} publishers (also subscribers); a state is \`{p, v, t}\`` +
    (settings.stateBytes ? ` plus ${settings.stateBytes} bytes of padding.` : "."),
    "- Closed loop: each publisher sends its next state once the previous one reached all N; " +
    `1 s warm-up, then a ${settings.windowS} s window. Deliveries = state events received by ` +
    "subscribers, not frames (duplicates, e.g. @prsm/realtime's double frames, are not counted).",
    `- Fixed rate: ${settings.rate} publishes/s (so ${settings.rate} × N offered deliveries/s), ` +
    `round-robin over the publishers, for ${settings.fixedS} s: the same for every target and ` +
    "below the capacity of the slowest (@prsm/realtime). Its p50 / p99 are the medians over 5 " +
    "equal sub-windows (by publish time), so one stall on a shared machine does not make the tail.",
    `- Leave: ${Math.round(settings.leaveShare * 100)} % of the clients (never publishers) cut ` +
    "their TCP connection without a close frame; the time until every remaining subscriber has " +
    `seen every leave. Presently runs with leaveGraceMs ${settings.graceMs} and sweepIntervalMs ` +
    `${settings.sweepMs}; the raw ceilings and @prsm/realtime have no grace (leave on socket close).`,
    "- Presently servers: `bench/servers/_presently.ts` (memory store; the per-connection request " +
    `rate limit lifted so it does not cap publishers; countIntervalMs ${settings.countMs}).`,
    "- Peak RSS: the server process's VmHWM (and VmRSS sampled every 100 ms); for " +
    "@prsm/realtime the Node process, with redis-server's own peak shown apart.",
    `- Best of ${settings.rounds} round(s); join storm and peak RSS: the median of ` +
    `${settings.joinRounds} runs, with the spread (min–max) in brackets ` +
    "(fresh server each; not for @prsm/realtime, nor storms over 30 s). Load generator: one " +
    "Bun process (bench/gen.ts, a raw " +
    "TCP WebSocket client) on the same 2 cores as the server: `gen CPU` near 100 % means the " +
    "generator, not the server, was the limit.",
  ];
  if (settings.targets.includes("mesh") && settings.sizes.some((n) => n > settings.meshMaxN)) {
    settingsList.push(
      `- @prsm/realtime runs only up to N = ${settings.meshMaxN} (--mesh-max-n): its join storm ` +
        "is quadratic (about 180 s at N = 2000), over the time budget of one run.",
    );
  }
  if (skipped.length) settingsList.push(`- Skipped: ${skipped.join("; ")}`);
  const blocks = [
    "<!-- bench:begin (generated by bench/run.ts; rewritten on every run) -->",
    "### Command",
    "```sh\n" + command + "\n```",
    `Date: ${started.toISOString()}; the run took ${
      Math.round((Date.now() - started.getTime()) / 1000)
    } s.`,
    "### Machine",
    `${machine.cores} cores (${machine.cpu}), ${machine.memGb} GiB, shared with other work ` +
    `(load average at start: ${machine.load}, at the end: ` +
    `${Deno.loadavg().map((x) => x.toFixed(2)).join(" ")}; before each target the run waits, ` +
    `${quietWaitS} s at most in all, for other work to leave the cores idle). ` +
    `Deno ${machine.deno}, Bun ${machine.bun}, ` +
    `Node ${machine.node}, ${machine.redis}. Every figure comes from this one run: compare ` +
    "ratios, not absolute numbers, across runs.",
    "### Settings",
    settingsList.join("\n"),
    "### Results",
    "The headline figures are the server's CPU per delivery (its CPU share in the closed loop " +
    "over the deliveries in it) and its peak RSS per client: neither depends on how fast the " +
    "generator reads. Deliveries/s is kept alongside, marked generator-limited when the generator " +
    "used 90 % of a core or more.",
    table,
    "![deliveries per second](chart.svg)",
    "### Issue 5 targets",
    targets,
  ];
  if (count) blocks.push("### Count mode", count);
  if (micro) {
    blocks.push(
      "### Micro benchmarks",
      "```sh\ndeno task bench:micro\n```",
      "```\n" + micro + "\n```",
    );
  }
  blocks.push("<!-- bench:end -->");
  const generated = blocks.join("\n\n");
  const path = `${benchDir}RESULTS.md`;
  let doc = exists(path) ? Deno.readTextFileSync(path) : "";
  const begin = doc.indexOf("<!-- bench:begin");
  const end = doc.indexOf("<!-- bench:end -->");
  if (begin >= 0 && end > begin) {
    doc = doc.slice(0, begin) + generated + doc.slice(end + "<!-- bench:end -->".length);
  } else {
    // First run: add the section, keeping whatever else the file holds.
    const section = "## Load benchmark (`deno task bench`)\n\n" + generated +
      "\n\n### Notes\n\n(Profile findings and what was tried: kept across runs.)\n";
    if (doc.trim() === "") doc = `# Benchmark results\n\n${section}`;
    else {
      const at = doc.indexOf("\n## ");
      doc = at < 0
        ? `${doc.trimEnd()}\n\n${section}`
        : `${doc.slice(0, at + 1)}${section}\n${doc.slice(at + 1)}`;
    }
  }
  Deno.writeTextFileSync(path, doc);
  Deno.writeTextFileSync(`${benchDir}chart.svg`, renderChart(rows, settings));
  // Keep `deno fmt --check` green: format what was just written.
  await run(deno, ["fmt", `${benchDir}RESULTS.md`, `${benchDir}chart.svg`], { quiet: true });
  console.log(`\n[bench] wrote bench/RESULTS.md and bench/chart.svg`);
}
console.log(`[bench] done in ${Math.round((Date.now() - started.getTime()) / 1000)} s`);
