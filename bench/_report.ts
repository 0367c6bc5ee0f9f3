// Markdown for the load benchmark: the results table, issue 5's targets with
// their measured ratios, and the count-mode table.

/** Benchmark settings, as run. */
export interface Settings {
  sizes: number[];
  p: number;
  windowS: number;
  fixedS: number;
  rate: number;
  stateBytes: number;
  leaveShare: number;
  graceMs: number;
  sweepMs: number;
  countMs: number;
  meshMaxN: number;
  countN: number;
  rounds: number;
  joinRounds: number;
  targets: string[];
}

/** One target at one size, with the generator's result. */
export interface Row {
  target: string;
  label: string;
  runtime: string;
  n: number;
  result: Record<string, unknown>;
}

/** The ceiling each Presently target is compared with. */
export const CEILING: Record<string, string> = {
  "presently-bun": "raw-bun",
  "presently-deno": "raw-deno",
};

type Obj = Record<string, unknown>;

/** A nested number, or null. */
export function fig(row: Row | undefined, path: string): number | null {
  let v: unknown = row?.result;
  for (const k of path.split(".")) v = (v as Obj | undefined)?.[k];
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function find(rows: Row[], target: string, n: number): Row | undefined {
  return rows.find((r) => r.target === target && r.n === n);
}

function ratio(a: number | null, b: number | null): number | null {
  return a === null || b === null || b === 0 ? null : a / b;
}

const fmtRatio = (r: number | null) => (r === null ? "–" : `${r.toFixed(2)}×`);
const fmtInt = (x: number | null) => (x === null ? "–" : Math.round(x).toLocaleString("en-US"));
const fmtMs = (
  x: number | null,
) => (x === null ? "–" : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : Math.round(x).toString());

/**
 * Server CPU per delivery in the closed loop, in µs: the server's CPU share
 * over the window times a second, over the deliveries in it. Unlike
 * deliveries/s it does not depend on how fast the generator can read.
 */
export function usPerDelivery(r: Row | undefined): number | null {
  const cpu = fig(r, "loop.serverCpuPct");
  const dps = fig(r, "loop.deliveriesPerSec");
  return cpu === null || dps === null || dps === 0 ? null : (cpu / 100) * 1e6 / dps;
}

/** Peak server RSS per client, in KB. */
export function kbPerClient(r: Row | undefined): number | null {
  const rss = fig(r, "rssMb");
  return rss === null || !r ? null : (rss * 1024) / r.n;
}

/** The generator used (nearly) a whole core: deliveries/s measures it, not the server. */
export function generatorLimited(r: Row | undefined): boolean {
  return (fig(r, "loop.genCpuPct") ?? 0) >= 90;
}

/** The main table: one line per target and size. */
export function renderTable(rows: Row[], _s: Settings): string {
  const head = [
    "| N | target | **server µs CPU per delivery** | × ceiling | × @prsm/realtime | **peak RSS KB per client** | " +
    "× ceiling | join storm ms | deliveries/s | × ceiling | loop p50 / p99 ms | " +
    "fixed-rate p50 / p99 ms | p99 × ceiling | leave ms | peak RSS MB | events/frame | " +
    "server / gen CPU % |",
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  const lines = rows.map((r) => {
    const ceil = find(rows, CEILING[r.target] ?? "", r.n);
    const mesh = find(rows, "mesh", r.n);
    const dps = fig(r, "loop.deliveriesPerSec");
    const us = usPerDelivery(r);
    const kb = kbPerClient(r);
    const limited = generatorLimited(r) ? " (generator-limited)" : "";
    const join = fig(r, "join.ms");
    const joinSpread = (r.result.join as { msSpread?: [number, number] } | undefined)?.msSpread;
    const joinCell = join !== null
      ? fmtMs(join) + (joinSpread ? ` (${fmtMs(joinSpread[0])}–${fmtMs(joinSpread[1])})` : "")
      : `incomplete (joined in ${fmtMs(fig(r, "join.joinedMs"))}; ${
        fmtInt(fig(r, "join.rostersComplete"))
      }/${r.n} rosters)`;
    const leave = fig(r, "leave.ms");
    const seen = fig(r, "leave.leavesSeenShare");
    const leaveCell = leave === null
      ? `incomplete (${seen === null ? "–" : (seen * 100).toFixed(1)} % seen)`
      : fmtMs(leave);
    const rss = fig(r, "rssMb");
    const rssSpread = (r.result as { rssSpread?: [number, number] }).rssSpread;
    const redis = fig(r, "redisRssMb");
    return `| ${r.n} | ${r.label} | ${us === null ? "–" : us.toFixed(2)} | ` +
      `${ceil ? fmtRatio(ratio(us, usPerDelivery(ceil))) : "–"} | ` +
      `${
        mesh && r.target !== "mesh" ? fmtRatio(ratio(usPerDelivery(mesh), us)) + " better" : "–"
      } | ` +
      `${kb === null ? "–" : kb.toFixed(1)} | ${
        ceil ? fmtRatio(ratio(kb, kbPerClient(ceil))) : "–"
      } | ` +
      `${joinCell} | ${fmtInt(dps)}${limited} | ` +
      `${ceil ? fmtRatio(ratio(dps, fig(ceil, "loop.deliveriesPerSec"))) : "–"} | ` +
      `${fmtMs(fig(r, "loop.p50"))} / ${fmtMs(fig(r, "loop.p99"))} | ` +
      `${fmtMs(fig(r, "fixed.p50"))} / ${fmtMs(fig(r, "fixed.p99"))} | ` +
      `${ceil ? fmtRatio(ratio(fig(r, "fixed.p99"), fig(ceil, "fixed.p99"))) : "–"} | ` +
      `${leaveCell} | ${fmtInt(rss)}${
        rssSpread ? ` (${fmtInt(rssSpread[0])}–${fmtInt(rssSpread[1])})` : ""
      }${redis !== null ? ` (+ redis ${fmtInt(redis)})` : ""} | ` +
      `${fig(r, "loop.eventsPerFrame") ?? "–"} | ` +
      `${fmtInt(fig(r, "loop.serverCpuPct"))} / ${fmtInt(fig(r, "loop.genCpuPct"))} |`;
  });
  return [...head, ...lines].join("\n");
}

interface Check {
  what: string;
  measured: string;
  required: string;
  met: boolean | null;
}

/** Every target of issue 5 with its measured ratio. */
export function targetChecks(rows: Row[], s: Settings): Check[] {
  const out: Check[] = [];
  const adapters: Array<[string, string, number]> = [
    ["presently-bun", "Bun adapter", 1.0],
    ["presently-deno", "Deno adapter", 1.5],
  ];
  const sizes = [...new Set(rows.map((r) => r.n))].sort((a, b) => a - b);
  const check = (
    what: string,
    value: number | null,
    required: string,
    ok: (v: number) => boolean,
    unit = "×",
  ) => {
    out.push({
      what,
      measured: value === null
        ? "not measured"
        : unit === "×"
        ? fmtRatio(value)
        : `${fmtMs(value)} ${unit}`,
      required,
      met: value === null ? null : ok(value),
    });
  };
  for (const [id, name, need] of adapters) {
    for (const n of sizes) {
      const r = find(rows, id, n);
      const c = find(rows, CEILING[id]!, n);
      if (!r) continue;
      check(
        `${name} deliveries/s vs raw ceiling, N=${n}`,
        ratio(fig(r, "loop.deliveriesPerSec"), fig(c, "loop.deliveriesPerSec")),
        `≥ ${need.toFixed(1)}×`,
        (v) => v >= need,
      );
    }
  }
  for (const [id, name] of adapters) {
    for (const n of sizes) {
      const r = find(rows, id, n);
      const m = find(rows, "mesh", n);
      if (!r || !m) continue;
      check(
        `${name} deliveries/s vs @prsm/realtime, N=${n}`,
        ratio(fig(r, "loop.deliveriesPerSec"), fig(m, "loop.deliveriesPerSec")),
        "≥ 25×",
        (v) => v >= 25,
      );
    }
  }
  for (const [id, name] of adapters) {
    for (const n of sizes) {
      const r = find(rows, id, n);
      if (!r) continue;
      check(
        `${name} join storm vs raw ceiling, N=${n}`,
        ratio(fig(r, "join.ms"), fig(find(rows, CEILING[id]!, n), "join.ms")),
        "≤ 1.2×",
        (v) => v <= 1.2,
      );
    }
    if (sizes.length >= 2) {
      const lo = sizes[0]!;
      const hi = sizes[sizes.length - 1]!;
      const need = hi / lo * 1.25;
      check(
        `${name} join storm N=${hi} / N=${lo}`,
        ratio(fig(find(rows, id, hi), "join.ms"), fig(find(rows, id, lo), "join.ms")),
        `≤ ${need}× (near linear)`,
        (v) => v <= need,
      );
    }
  }
  for (const [id, name] of adapters) {
    for (const n of sizes) {
      const r = find(rows, id, n);
      if (!r) continue;
      check(
        `${name} p99 at fixed rate vs raw ceiling, N=${n}`,
        ratio(fig(r, "fixed.p99"), fig(find(rows, CEILING[id]!, n), "fixed.p99")),
        "≤ 1.2×",
        (v) => v <= 1.2,
      );
    }
  }
  const top = sizes[sizes.length - 1];
  for (const [id, name] of adapters) {
    if (top === undefined) break;
    const r = find(rows, id, top);
    if (!r) continue;
    check(
      `${name} peak RSS vs raw ceiling, N=${top}`,
      ratio(fig(r, "rssMb"), fig(find(rows, CEILING[id]!, top), "rssMb")),
      "≤ 1.2×",
      (v) => v <= 1.2,
    );
  }
  for (const [id, name] of adapters) {
    for (const n of sizes) {
      const r = find(rows, id, n);
      if (!r) continue;
      const ms = fig(r, "leave.ms");
      const seen = fig(r, "leave.leavesSeenShare");
      if (fig(r, "leave.dropped") === null) continue; // phase not run
      out.push({
        what: `${name} leave detection, N=${n} (${fig(r, "leave.dropped") ?? "–"} dropped)`,
        measured: ms === null
          ? `incomplete (${seen === null ? "–" : (seen * 100).toFixed(1)} % seen)`
          : `${fmtMs(ms)} ms, ${
            seen === 1 ? "every leave seen" : `${((seen ?? 0) * 100).toFixed(1)} % seen`
          }`,
        required: `≤ ${s.graceMs + 250} ms (leaveGraceMs ${s.graceMs} + 250), every leave seen`,
        met: ms === null ? false : ms <= s.graceMs + 250 && seen === 1,
      });
    }
  }
  return out;
}

/** The targets as a markdown table. */
export function renderTargets(rows: Row[], s: Settings): string {
  const checks = targetChecks(rows, s);
  const met = checks.filter((c) => c.met === true).length;
  return [
    `${met} of ${checks.length} checks met.`,
    "",
    "| target | measured | required | met |",
    "|---|---:|---|---|",
    ...checks.map((c) =>
      `| ${c.what} | ${c.measured} | ${c.required} | ${
        c.met === null ? "not measured" : c.met ? "met" : "**not met**"
      } |`
    ),
  ].join("\n");
}

/** The count-mode table (one room, every connection in `mode: "count"`). */
export function renderCount(rows: Row[], s: Settings): string {
  if (rows.length === 0) return "";
  return [
    `${
      s.countN.toLocaleString("en-US")
    } connections join one room and subscribe in \`mode: "count"\` ` +
    '(one `join` with `sub: true, mode: "count"`); the join time ends when every client has ' +
    `received a count of ${
      s.countN.toLocaleString("en-US")
    } (\`cnt\` frames are throttled to one ` +
    `per countIntervalMs = ${s.countMs} ms).`,
    "",
    "| target | connections | join time ms | all joined (answers) ms | peak RSS MB | idle RSS MB | " +
    "(peak − idle) per connection KB |",
    "|---|---:|---:|---:|---:|---:|---:|",
    ...rows.map((r) => {
      const rss = fig(r, "rssMb");
      const idle = fig(r, "idleRssMb") ?? 0;
      return `| ${r.label} | ${r.n.toLocaleString("en-US")} | ${fmtMs(fig(r, "join.ms"))} | ` +
        `${fmtMs(fig(r, "join.joinedMs"))} | ${fmtInt(rss)} | ${fmtInt(idle)} | ` +
        `${rss === null ? "–" : (((rss - idle) * 1024) / r.n).toFixed(1)} |`;
    }),
  ].join("\n");
}
