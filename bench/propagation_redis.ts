// Cross-instance propagation on Redis: join→seen and state→seen latency, from
// a client's send on instance A to a subscriber's frame on instance B.
//
//   deno run -A bench/propagation_redis.ts [--samples 500] [--no-write]
//
// Starts its own redis-server (PRESENTLY_REDIS_SERVER or redis-server on
// PATH) on a free port, and instance processes of tests/fixtures/cluster_node.ts:
// (a) Deno → Deno, (b) Deno → Bun, (c) Bun → Deno. Prints a markdown table and
// replaces the "Cross-instance propagation (Redis)" section of bench/RESULTS.md.

import { RawClient } from "../tests/_harness.ts";
import { REDIS_SERVER_BIN, startRedis } from "../tests/_redis.ts";
import { BUN_BIN, type ClusterNode, spawnNode } from "../tests/_cluster.ts";

const args = Deno.args;
const flag = (name: string, fallback: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const SAMPLES = flag("--samples", 500);
const ACTORS = 20;
const GAP_MS = 8;
const ROOM = "bench";

interface Result {
  scenario: string;
  join: number[];
  state: number[];
}

type Tuple = [number, string, string, unknown];

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function open(url: string, name: string): Promise<RawClient> {
  const c = new RawClient(`${url}?name=${name}`);
  await c.opened;
  return c;
}

/**
 * Actors on `urlA` cycle join → state → leave, one operation every ~GAP_MS
 * (jittered); an observer subscribed on `urlB` timestamps the matching events.
 */
async function measure(scenario: string, urlA: string, urlB: string): Promise<Result> {
  const observer = await open(urlB, "observer");
  await observer.request("sub", { room: ROOM });
  const actors = await Promise.all(
    Array.from({ length: ACTORS }, (_, i) => open(urlA, `actor${i}`)),
  );
  const pending = new Map<string, number>();
  const result: Result = { scenario, join: [], state: [] };
  observer.ws.addEventListener("message", (e) => {
    const at = performance.now();
    const f = JSON.parse(String(e.data));
    if (f.t !== "ev" || f.r !== ROOM) return;
    for (const [, kind, cid, value] of f.e as Tuple[]) {
      const key = kind === "j"
        ? `j:${cid}`
        : kind === "s" && value !== null
        ? `s:${cid}:${(value as { n: number }).n}`
        : null;
      const sent = key === null ? undefined : pending.get(key);
      if (sent === undefined) continue;
      pending.delete(key!);
      (kind === "j" ? result.join : result.state).push(at - sent);
    }
  });
  // Warm up (scripts loaded, JIT), then measure.
  const phase = new Array<number>(ACTORS).fill(0);
  let n = 0;
  let warm = ACTORS * 3 * 2;
  while (result.join.length < SAMPLES || result.state.length < SAMPLES) {
    const i = n % ACTORS;
    const actor = actors[i]!;
    const p = phase[i]!;
    phase[i] = (p + 1) % 3;
    if (p === 0) {
      pending.set(`j:${actor.cid}`, performance.now());
      void actor.request("join", { room: ROOM });
    } else if (p === 1) {
      pending.set(`s:${actor.cid}:${n}`, performance.now());
      void actor.request("state", { room: ROOM, state: { n } });
    } else void actor.request("leave", { room: ROOM });
    n++;
    if (warm > 0 && --warm === 0) {
      await sleep(100);
      result.join.length = 0;
      result.state.length = 0;
    }
    await sleep(GAP_MS * (0.5 + Math.random()));
    if (n > SAMPLES * 3 * 4) throw new Error(`${scenario}: events lost`);
  }
  await sleep(200);
  for (const c of [observer, ...actors]) await c.close();
  return result;
}

function pct(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}

const ms = (v: number) => `${v.toFixed(1)} ms`;

const redis = await startRedis();
const env = {
  REDIS_URL: redis.url,
  REDIS_PREFIX: "bench:",
  LEASE_TTL_MS: "10000",
};
const nodes: ClusterNode[] = [];
const results: Result[] = [];
try {
  const bun = BUN_BIN !== null;
  const [a, b, c] = await Promise.all([
    spawnNode("A (deno)", "deno", env),
    spawnNode("B (deno)", "deno", env),
    spawnNode("C", bun ? "bun" : "deno", env),
  ]);
  nodes.push(a, b, c);
  results.push(await measure("Deno → Deno (2 processes, 1 Redis)", a.url, b.url));
  if (bun) {
    results.push(await measure("Deno → Bun (2 processes, 1 Redis)", a.url, c.url));
    results.push(await measure("Bun → Deno (2 processes, 1 Redis)", c.url, a.url));
  }
} finally {
  await Promise.allSettled(nodes.map((n) => n.kill()));
  await redis.stop();
}

const version = new Deno.Command(REDIS_SERVER_BIN, { args: ["--version"] }).outputSync();
const redisVersion = new TextDecoder().decode(version.stdout).match(/v=(\S+)/)?.[1] ?? "?";
const bunVersion = BUN_BIN === null ? null : new TextDecoder().decode(
  new Deno.Command(BUN_BIN, { args: ["--version"] }).outputSync().stdout,
).trim();
const command = `deno run -A bench/propagation_redis.ts --samples ${SAMPLES}`;
const lines = [
  "## Cross-instance propagation (Redis)",
  "",
  `Command: \`${command}\``,
  "",
  `Deno ${Deno.version.deno}, ${
    bunVersion === null ? "no Bun" : `Bun ${bunVersion}`
  }, redis-server ${redisVersion} on`,
  `127.0.0.1, ${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} CPUs, ${
    new Date().toISOString().slice(0, 10)
  }. Latency from a client's send on instance A to the event frame at a subscriber on`,
  `instance B: WebSocket in, one Lua script (write + seq + publish), pub/sub to B, fan-out,`,
  `WebSocket out. ${SAMPLES} samples each after a warm-up, ${ACTORS} actors cycling`,
  `join → state → leave every ~${GAP_MS} ms. Measured on a shared machine: the p99 is sensitive`,
  "to other load.",
  "",
  "| scenario | join→seen p50 | join→seen p99 | state→seen p50 | state→seen p99 |",
  "| --- | --- | --- | --- | --- |",
  ...results.map((r) =>
    `| ${r.scenario} | ${ms(pct(r.join, 0.5))} | ${ms(pct(r.join, 0.99))} | ${
      ms(pct(r.state, 0.5))
    } | ${ms(pct(r.state, 0.99))} |`
  ),
  "",
];
const section = lines.join("\n");
console.log(section);

if (!args.includes("--no-write")) {
  const file = new URL("./RESULTS.md", import.meta.url);
  let text = "";
  try {
    text = Deno.readTextFileSync(file);
  } catch {
    text = "# Benchmark results\n\n";
  }
  const heading = "## Cross-instance propagation (Redis)";
  const start = text.indexOf(heading);
  if (start < 0) {
    text = text.replace(/\n*$/, "\n\n") + section;
  } else {
    const next = text.indexOf("\n## ", start + heading.length);
    text = text.slice(0, start) + section + (next < 0 ? "" : "\n" + text.slice(next + 1));
  }
  Deno.writeTextFileSync(file, text.replace(/\n*$/, "\n"));
  console.log(`Wrote ${file.pathname}`);
}
