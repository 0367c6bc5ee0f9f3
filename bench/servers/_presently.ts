// The PresenceServer both Presently targets run: one tracked room pattern, a
// short leave grace and a fast sweep for the leave phase, and request limits
// lifted so the closed loop measures fan-out, not the per-connection rate limit.

import { PresenceServer } from "../../mod.ts";

/** Settings the benchmark uses (stated in bench/RESULTS.md). */
export const BENCH_SERVER = {
  leaveGraceMs: 1000,
  sweepIntervalMs: 25,
  countIntervalMs: 100,
  requestsPerSecond: 1_000_000,
  requestBurst: 1_000_000,
};

/** Build the benchmark's presence server from env overrides. */
export function benchPresence(env: (name: string) => string | undefined): PresenceServer {
  const num = (name: string, dflt: number): number => {
    const v = env(name);
    return v === undefined || v === "" ? dflt : Number(v);
  };
  const heartbeatMs = num("BENCH_HEARTBEAT_MS", 10_000);
  const server = new PresenceServer({
    leaveGraceMs: num("BENCH_GRACE_MS", BENCH_SERVER.leaveGraceMs),
    sweepIntervalMs: num("BENCH_SWEEP_MS", BENCH_SERVER.sweepIntervalMs),
    countIntervalMs: num("BENCH_COUNT_MS", BENCH_SERVER.countIntervalMs),
    batchIntervalMs: num("BENCH_BATCH_MS", 0),
    heartbeat: { intervalMs: heartbeatMs, timeoutMs: 3 * heartbeatMs },
    limits: {
      requestsPerSecond: BENCH_SERVER.requestsPerSecond,
      requestBurst: BENCH_SERVER.requestBurst,
    },
    onError: (e) => console.error("presence error:", e),
  });
  server.trackPresence(/^.+$/);
  return server;
}
