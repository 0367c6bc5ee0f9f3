// `deno task bench:capacity`: how many connections and rooms one instance
// holds, at what memory and CPU. For each step (C connections over R = C/10
// rooms, Zipf-sized) and each target (Presently on Bun and Deno, and the raw
// ceilings of both runtimes in the same run), it starts the server, ramps up
// C connections from several generator processes (bench/capacity_gen.ts on
// Bun), each joined, subscribed and with a state, then runs a fixed-rate phase
// (a state per connection per 10 s, cursors at 10 Hz in rooms of 500+).
//
// Reported per step and target: server RSS per connection (RSS after the
// ramp-up minus the idle server's, over C), joins/s during the ramp-up, p50
// and p99 publish -> receive latency in the fixed phase, and server CPU per
// delivery (the server's user+system CPU time in the fixed phase over the
// state deliveries the generators received).
//
// Flags: --steps 1000,5000,10000,19500 --targets raw-bun,presently-bun,raw-deno,presently-deno
// --gens 4 --fixed 10 --idle 10 --sweep 100 (Presently's sweepIntervalMs)
// --batch 0 (Presently's batchIntervalMs; 0, the library's default, is off) --no-write
// --profile (each server writes a CPU profile,
// .cpuprofile and .md, to bench/out/prof/capacity-<target>-<C>.*)
//
// The machine's hard limit on open files is 20 000 (this container cannot
// raise it), so the top step is 19 500 connections.

const root = new URL("..", import.meta.url).pathname;
const benchDir = `${root}bench/`;
function arg(name: string, dflt: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1]! : dflt;
}
const steps = arg("steps", "1000,5000,10000,19500").split(",").map(Number);
const targets = arg("targets", "raw-bun,presently-bun,raw-deno,presently-deno").split(",");
const GENS = Number(arg("gens", "4"));
const FIXED_S = Number(arg("fixed", "10"));
const IDLE_S = Number(arg("idle", "10"));
// The Presently servers' sweep interval: the library's default. (The load
// benchmark sweeps every 25 ms for its leave phase; a capacity figure is what
// a deployment with the defaults gets. Up to 2026-12-07 this ran at 25 ms too.)
const SWEEP_MS = arg("sweep", "100");
// Presently's batchIntervalMs (server-side batching); 0, the default, is off.
const BATCH_MS = arg("batch", "0");
const write = !Deno.args.includes("--no-write");
const profile = Deno.args.includes("--profile");
const command = `deno task bench:capacity${Deno.args.length ? " " + Deno.args.join(" ") : ""}`;
// Logs, profiles and capacity.json go here (not in git: a fresh clone lacks it).
Deno.mkdirSync(`${benchDir}out/prof`, { recursive: true });

const deno = Deno.execPath();
const bun = `${root}node_modules/.bin/bun`;
try {
  Deno.statSync(bun);
} catch {
  console.error("[capacity] node_modules/.bin/bun is missing: run `npm ci` first");
  Deno.exit(1);
}

const SERVERS: Record<string, { label: string; cmd: string[] }> = {
  "presently-bun": {
    label: "Presently (Bun)",
    cmd: [bun, `${benchDir}servers/presently_bun.ts`],
  },
  "presently-deno": {
    label: "Presently (Deno)",
    cmd: [deno, "run", "-A", `${benchDir}servers/presently_deno.ts`],
  },
  "raw-bun": { label: "raw Bun.serve", cmd: [bun, `${benchDir}servers/raw_bun.ts`] },
  "raw-deno": {
    label: "raw Deno.serve",
    cmd: [deno, "run", "-A", `${benchDir}servers/raw_deno.ts`],
  },
};

/** The server command with `--cpu-prof` flags (Deno and Bun take the same) when --profile. */
function withProfile(cmd: string[], name: string): string[] {
  if (!profile) return cmd;
  const flags = [
    "--cpu-prof",
    `--cpu-prof-dir=${benchDir}out/prof`,
    `--cpu-prof-name=${name}`,
    "--cpu-prof-md",
  ];
  const script = cmd.length - 1;
  return [...cmd.slice(0, script), ...flags, cmd[script]!];
}

/** With the open-file limit raised to the hard limit. */
function limited(cmd: string[], env: Record<string, string> = {}): Deno.Command {
  const quoted = cmd.map((c) => `'${c.replace(/'/g, "'\\''")}'`).join(" ");
  return new Deno.Command("sh", {
    args: ["-c", `ulimit -n "$(ulimit -Hn)"; exec ${quoted}`],
    cwd: root,
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  });
}

function status(pid: number, field: string): number {
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = s.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** The process's user + system CPU time in seconds. */
function cpuSeconds(pid: number): number {
  const f = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return (Number(rest[11]) + Number(rest[12])) / 100; // utime, stime in clock ticks (100 Hz)
}

/** Busy and total jiffies of the whole machine (/proc/stat). */
function machine(): { busy: number; total: number } {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0]!.trim().split(/\s+/).slice(1).map(
    Number,
  );
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** The CPU seconds of a process and its children that have not exited (the `sh` wrapper execs). */
function cpuOf(pids: number[]): number {
  let s = 0;
  for (const pid of pids) {
    try {
      s += cpuSeconds(pid);
    } catch { /* gone */ }
  }
  return s;
}

/** The kernel's count of connections dropped because a listen queue was full. */
function listenOverflows(): number {
  const lines = Deno.readTextFileSync("/proc/net/netstat").split("\n");
  for (let i = 0; i + 1 < lines.length; i += 2) {
    if (!lines[i]!.startsWith("TcpExt:")) continue;
    const keys = lines[i]!.split(/\s+/), values = lines[i + 1]!.split(/\s+/);
    const at = keys.indexOf("ListenOverflows");
    return at >= 0 ? Number(values[at]) : 0;
  }
  return 0;
}

/** Lines of a child's stdout, as they come. */
function lines(child: Deno.ChildProcess): AsyncIterator<string> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const queue: string[] = [];
  return {
    async next() {
      for (;;) {
        if (queue.length > 0) return { value: queue.shift()!, done: false };
        const { value, done } = await reader.read();
        if (done) return { value: undefined, done: true };
        buf += value;
        const parts = buf.split("\n");
        buf = parts.pop()!;
        queue.push(...parts);
      }
    },
  };
}

async function expectLine(it: AsyncIterator<string>, prefix: string, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const r = await Promise.race([
      it.next(),
      new Promise<IteratorResult<string>>((res) =>
        setTimeout(() => res({ value: "", done: false }), deadline - Date.now())
      ),
    ]);
    if (r.done) break;
    if (r.value.startsWith(prefix)) return r.value.slice(prefix.length).trim();
  }
  throw new Error(`no "${prefix}" line within ${ms} ms`);
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
  await child.status.catch(() => {});
  clearTimeout(t);
}

interface Row {
  target: string;
  c: number;
  r: number;
  joined: number;
  idleMb: number;
  loadedMb: number;
  kbPerConn: number;
  /** RSS after the idle phase (the same connections held, nothing sent). */
  heldMb: number;
  kbHeld: number;
  joinsPerS: number;
  p50: number;
  p99: number;
  deliveries: number;
  cpuS: number;
  usPerDelivery: number;
  /** Server CPU while holding every connection idle, in ms per second. */
  idleCpuMsPerS: number;
  /** Generators' CPU in the fixed phase, in cores. */
  genCores: number;
  /** The whole machine's busy share in the fixed phase. */
  busy: number;
  /** Connections the kernel dropped during the ramp-up (the server's accept queue was full). */
  overflows: number;
  errors: number;
}

async function measure(target: string, c: number): Promise<Row> {
  const r = Math.max(1, Math.round(c / 10));
  const server = limited(withProfile(SERVERS[target]!.cmd, `capacity-${target}-${c}`), {
    BENCH_SWEEP_MS: SWEEP_MS,
    BENCH_BATCH_MS: BATCH_MS,
  }).spawn();
  // The server's stderr (errors it reports) is kept for each run.
  const log = await Deno.open(`${benchDir}out/capacity-${target}-${c}.log`, {
    write: true,
    create: true,
    truncate: true,
  });
  void server.stderr.pipeTo(log.writable).catch(() => {});
  const out = lines(server);
  const port = Number(await expectLine(out, "PORT", 30_000));
  void (async () => {
    while (!(await out.next()).done) { /* drain */ }
  })();
  await new Promise((res) => setTimeout(res, 1000));
  const idleMb = status(server.pid, "VmRSS");
  const gens = Array.from({ length: GENS }, (_, g) =>
    limited([
      bun,
      `${benchDir}capacity_gen.ts`,
      "--url",
      `ws://127.0.0.1:${port}/`,
      "--c",
      String(c),
      "--r",
      String(r),
      "--gen",
      String(g),
      "--gens",
      String(GENS),
      "--fixed",
      String(FIXED_S),
    ]).spawn());
  // Each generator's log (joins, connections lost before their answer) is kept too.
  for (const [i, g] of gens.entries()) {
    const genLog = await Deno.open(`${benchDir}out/capacity-${target}-${c}-gen${i}.log`, {
      write: true,
      create: true,
      truncate: true,
    });
    void g.stderr.pipeTo(genLog.writable).catch(() => {});
  }
  const genLines = gens.map(lines);
  const overflows0 = listenOverflows();
  const rampStart = performance.now();
  const joinedInfo = await Promise.all(
    genLines.map(async (it) => JSON.parse(await expectLine(it, "JOINED", 300_000))),
  );
  const rampMs = performance.now() - rampStart;
  const overflows = listenOverflows() - overflows0;
  const joined = joinedInfo.reduce((a, j) => a + j.joined, 0);
  await new Promise((res) => setTimeout(res, 2000)); // let it settle
  const loadedMb = status(server.pid, "VmRSS");
  // Idle: every connection held, nothing sent but heartbeats; the server's
  // CPU for IDLE_S seconds (its housekeeping: sweeps, liveness, pings).
  const idle0 = cpuSeconds(server.pid);
  await new Promise((res) => setTimeout(res, IDLE_S * 1000));
  const idleCpuMsPerS = ((cpuSeconds(server.pid) - idle0) * 1000) / IDLE_S;
  // Held: the same connections after the idle phase, once the ramp-up's
  // garbage had time to be collected and returned.
  const heldMb = status(server.pid, "VmRSS");
  const cpu0 = cpuSeconds(server.pid);
  const gen0 = cpuOf(gens.map((g) => g.pid));
  const m0 = machine();
  const t0 = performance.now();
  const enc = new TextEncoder();
  for (const g of gens) {
    const w = g.stdin.getWriter();
    await w.write(enc.encode("FIXED\n"));
    w.releaseLock();
  }
  const results = await Promise.all(
    genLines.map(async (it) => JSON.parse(await expectLine(it, "RESULT", FIXED_S * 1000 + 60_000))),
  );
  const cpuS = cpuSeconds(server.pid) - cpu0;
  const genCores = (cpuOf(gens.map((g) => g.pid)) - gen0) / ((performance.now() - t0) / 1000);
  const m1 = machine();
  const busy = (m1.busy - m0.busy) / Math.max(1, m1.total - m0.total);
  for (const g of gens) await stop(g);
  await stop(server);
  const samples = results.flatMap((x) => x.samples as number[]).sort((a, b) => a - b);
  const q = (p: number) =>
    samples.length ? samples[Math.min(samples.length - 1, Math.floor(p * samples.length))]! : NaN;
  const deliveries = results.reduce((a, x) => a + x.deliveries, 0);
  const errors = results.reduce((a, x) => a + x.errors, 0) +
    joinedInfo.reduce((a, j) => a + j.errors, 0);
  const row: Row = {
    target,
    c,
    r,
    joined,
    idleMb,
    loadedMb,
    kbPerConn: ((loadedMb - idleMb) * 1024) / c,
    heldMb,
    kbHeld: ((heldMb - idleMb) * 1024) / c,
    joinsPerS: joined / (rampMs / 1000),
    p50: q(0.5),
    p99: q(0.99),
    deliveries,
    cpuS,
    usPerDelivery: deliveries > 0 ? (cpuS * 1e6) / deliveries : NaN,
    idleCpuMsPerS,
    genCores,
    busy,
    overflows,
    errors,
  };
  console.log(
    `[capacity] ${target} C=${c} R=${r}: joined ${joined}, ${row.kbPerConn.toFixed(1)} KB/conn ` +
      `(${row.kbHeld.toFixed(1)} held after the idle phase), ` +
      `${row.joinsPerS.toFixed(0)} joins/s, p50 ${row.p50.toFixed(1)} ms, p99 ${
        row.p99.toFixed(1)
      } ms, ` +
      `idle CPU ${idleCpuMsPerS.toFixed(1)} ms/s, ` +
      `${deliveries} deliveries, ${row.usPerDelivery.toFixed(2)} µs CPU/delivery, ` +
      `generators ${genCores.toFixed(2)} cores, machine ${
        (busy * 100).toFixed(0)
      } % busy, ${overflows} listen-queue overflows in the ramp-up, errors ${errors}`,
  );
  return row;
}

const rows: Row[] = [];
for (const c of steps) {
  for (const t of targets) {
    try {
      rows.push(await measure(t, c));
    } catch (e) {
      console.error(`[capacity] ${t} C=${c}: ${(e as Error).message}`);
    }
  }
}

const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "–");
let table =
  "| C | R | target | joined | server RSS idle → loaded → held (MB) | KB per connection: loaded / held | joins/s (ramp-up) | idle CPU ms/s | latency p50 / p99 (ms) | deliveries | µs CPU per delivery | generators (cores) / machine busy |\n";
table += "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
for (const r of rows) {
  // On 2 cores, a machine past 95 % busy queues everything: latency then
  // measures the queue, not the server (marked "saturated").
  const sat = r.busy >= 0.95 ? " (saturated)" : "";
  table += `| ${r.c} | ${r.r} | ${SERVERS[r.target]!.label} | ${r.joined} | ${f(r.idleMb)} → ${
    f(r.loadedMb)
  } → ${f(r.heldMb)} | ${f(r.kbPerConn)} / ${f(r.kbHeld)} | ${f(r.joinsPerS, 0)} | ${
    f(r.idleCpuMsPerS)
  } | ${f(r.p50)} / ${f(r.p99)}${sat} | ${r.deliveries} | ${f(r.usPerDelivery, 2)} | ${
    f(r.genCores, 2)
  } / ${f(r.busy * 100, 0)} % |\n`;
}
let ratios =
  "| C | runtime | RSS per connection vs raw: loaded / held | CPU per delivery vs raw | idle CPU ms/s, Presently / raw |\n|---:|---|---:|---:|---:|\n";
for (const c of steps) {
  for (const rt of ["bun", "deno"]) {
    const p = rows.find((r) => r.c === c && r.target === `presently-${rt}`);
    const raw = rows.find((r) => r.c === c && r.target === `raw-${rt}`);
    if (!p || !raw) continue;
    ratios += `| ${c} | ${rt} | ${f(p.kbPerConn / raw.kbPerConn, 2)}× / ${
      f(p.kbHeld / raw.kbHeld, 2)
    }× | ${f(p.usPerDelivery / raw.usPerDelivery, 2)}× | ${f(p.idleCpuMsPerS)} / ${
      f(raw.idleCpuMsPerS)
    } |\n`;
  }
}
console.log("\n" + table + "\n" + ratios);
Deno.writeTextFileSync(`${benchDir}out/capacity.json`, JSON.stringify(rows, null, 2));

/** A small SVG: server KB per connection against C, one line per target. */
function chart(): string {
  const W = 560, H = 300, L = 50, B = 40, T = 20, Rm = 160;
  const xs = steps;
  const ymax = Math.max(1, ...rows.map((r) => r.kbPerConn)) * 1.1;
  const x = (c: number) => L + ((W - L - Rm) * xs.indexOf(c)) / Math.max(1, xs.length - 1);
  const y = (v: number) => H - B - ((H - B - T) * v) / ymax;
  const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
  let svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`;
  svg += `<text x="${L}" y="14">server RSS per connection (KB) vs connections (R = C/10)</text>`;
  svg += `<line x1="${L}" y1="${H - B}" x2="${W - Rm}" y2="${
    H - B
  }" stroke="#333"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333"/>`;
  for (const c of xs) svg += `<text x="${x(c)}" y="${H - B + 15}" text-anchor="middle">${c}</text>`;
  for (let v = 0; v <= ymax; v += Math.ceil(ymax / 5)) {
    svg += `<text x="${L - 5}" y="${y(v) + 4}" text-anchor="end">${v}</text>`;
  }
  targets.forEach((t, i) => {
    const pts = rows.filter((r) => r.target === t).map((r) => `${x(r.c)},${y(r.kbPerConn)}`);
    if (pts.length === 0) return;
    svg += `<polyline fill="none" stroke="${colors[i % 4]}" stroke-width="2" points="${
      pts.join(" ")
    }"/>`;
    svg += `<text x="${W - Rm + 10}" y="${T + 15 * (i + 1)}" fill="${colors[i % 4]}">${
      SERVERS[t]!.label
    }</text>`;
  });
  return svg + "</svg>\n";
}

if (write) {
  Deno.writeTextFileSync(`${benchDir}capacity.svg`, chart());
  const section =
    `<!-- capacity:start -->\n## Capacity of one instance (\`deno task bench:capacity\`)\n\n` +
    `Command: \`${command}\`. ${
      new Date().toISOString().slice(0, 10)
    }, Deno ${Deno.version.deno}, ` +
    `${GENS} generator processes on Bun, ${FIXED_S} s fixed phase, Presently's sweep every ` +
    `${SWEEP_MS} ms${
      BATCH_MS !== "0" ? `, batchIntervalMs ${BATCH_MS}` : ""
    }. Rooms: R = C/10, Zipf (s = 1) ` +
    `membership. Every connection joined and subscribed to its room, with a state; fixed phase: one ` +
    `state per connection per 10 s, plus cursors (10 Hz) from 5 members of each room of 500+.\n\n` +
    table + "\n" + ratios + "\n![server RSS per connection](capacity.svg)\n\n<!-- capacity:end -->";
  const path = `${benchDir}RESULTS.md`;
  const text = Deno.readTextFileSync(path);
  const re = /<!-- capacity:start -->[\s\S]*<!-- capacity:end -->/;
  Deno.writeTextFileSync(
    path,
    re.test(text) ? text.replace(re, section) : text.trimEnd() + "\n\n" + section + "\n",
  );
  // Written as the repository keeps them (deno fmt --check is part of `deno task check`).
  await new Deno.Command(Deno.execPath(), {
    args: ["fmt", `${benchDir}capacity.svg`, path],
    stdout: "null",
    stderr: "null",
  }).output();
}

// Every result is written and every child killed; one run still stayed up
// (in epoll, with child pipes open) 17 minutes after writing: end here.
Deno.exit(0);
