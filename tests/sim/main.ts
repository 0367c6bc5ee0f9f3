// `deno task sim`: run the cluster simulation over many seeds.
//
//   deno task sim                      the CI seed set (seeds 1..40, 300 ops each)
//   deno task sim --seeds 100000       a long run: seeds 1..100000
//   deno task sim --seed 17 --trace    replay one seed, printing every step
//   deno task sim --from 500 --seeds 50 --ops 600
//   deno task sim --batch 50           with the servers' batchIntervalMs at 50
//   deno task sim --crash-after-reset 0.3
//                                      an instance told of a store restart crashes
//                                      within 30 ms with this chance (mid-recovery)
//
// Exits 1 on the first violation, printing it with the command that replays it.

import { simulate } from "./sim.ts";

const args = Deno.args;
const flag = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const one = flag("seed");
const from = Number(flag("from") ?? 1);
const count = Number(flag("seeds") ?? 40);
const ops = Number(flag("ops") ?? 300);
const trace = args.includes("--trace");
const batchIntervalMs = Number(flag("batch") ?? 0);
const crashAfterReset = Number(flag("crash-after-reset") ?? 0);
const replayFlags = (batchIntervalMs > 0 ? ` --batch ${batchIntervalMs}` : "") +
  (crashAfterReset > 0 ? ` --crash-after-reset ${crashAfterReset}` : "");
const seeds = one !== undefined ? [Number(one)] : Array.from({ length: count }, (_, i) => from + i);

let wall = 0;
let checks = 0;
let virtual = 0;
let hooks = 0;
let dupes = 0;
const faults: Record<string, number> = {};
for (const seed of seeds) {
  const r = await simulate({ seed, ops, trace, batchIntervalMs, crashAfterReset });
  wall += r.wallMs;
  checks += r.quietChecks;
  virtual += r.virtualMs;
  hooks += r.hookDeliveries;
  dupes += r.hookDuplicates;
  for (const [k, v] of Object.entries(r.faults)) faults[k] = (faults[k] ?? 0) + v;
  if (r.violation) {
    console.log(`seed ${seed}: VIOLATION after ${r.ops} ops (${r.wallMs.toFixed(0)} ms)`);
    console.log(r.violation);
    console.log(`replay: deno task sim --seed ${seed} --ops ${ops}${replayFlags} --trace`);
    Deno.exit(1);
  }
  if (seeds.length <= 50 || seed % 100 === 0) {
    console.log(
      `seed ${seed}: ok, ${r.ops} ops, ${r.quietChecks} quiet checks, ${
        (r.virtualMs / 1000).toFixed(0)
      } s simulated in ${r.wallMs.toFixed(0)} ms`,
    );
  }
}
console.log(
  `\n${seeds.length} seeds x ${ops} ops: no violation; ${checks} quiet checks; ${
    (virtual / 1000).toFixed(0)
  } s simulated in ${(wall / 1000).toFixed(1)} s (${(wall / seeds.length).toFixed(0)} ms per seed)`,
);
console.log(`faults injected: ${JSON.stringify(faults)}`);
console.log(`presence hooks: ${hooks} deliveries, ${dupes} repeated (after faults) `);
