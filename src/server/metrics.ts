// `server.metrics()`: the counters and gauges of `stats()` in the Prometheus
// text exposition format (0.0.4), with stable names. The table of names is
// in the README (Metrics).

import type { PresenceStats } from "./server.ts";

type Kind = "counter" | "gauge";

/** Each metric: its name, kind, help text, and where its value comes from. */
const METRICS: ReadonlyArray<readonly [string, Kind, string, keyof PresenceStats]> = [
  ["presently_connections", "gauge", "Connections with an open socket.", "connections"],
  [
    "presently_connections_detached",
    "gauge",
    "Connections inside their resume window.",
    "detached",
  ],
  ["presently_members", "gauge", "Server-owned members (addMember) held here.", "members"],
  ["presently_rooms", "gauge", "Rooms with a local view on this instance.", "rooms"],
  ["presently_subscriptions", "gauge", "Presence subscriptions held here.", "subscribers"],
  ["presently_requests_total", "counter", "Requests handled since start.", "requests"],
  ["presently_store_events_total", "counter", "Store events applied since start.", "eventsIn"],
  ["presently_frames_out_total", "counter", "Event frames written since start.", "framesOut"],
  [
    "presently_coalesced_total",
    "counter",
    "Times a backed-up subscriber was switched to latest-wins resync.",
    "coalesced",
  ],
  [
    "presently_slow_consumers_closed_total",
    "counter",
    "Sockets closed as slow consumers.",
    "slowClosed",
  ],
  [
    "presently_store_errors_total",
    "counter",
    "Store calls that failed or timed out.",
    "storeErrors",
  ],
  [
    "presently_store_timeouts_total",
    "counter",
    "Store calls past storeTimeoutMs.",
    "storeTimeouts",
  ],
  [
    "presently_store_latency_seconds",
    "gauge",
    "Mean store call latency over the last 256 calls.",
    "storeLatencyMs",
  ],
  ["presently_buffered_bytes", "gauge", "Outbound bytes queued in open sockets.", "bufferedBytes"],
];

/** A label value, escaped as the format requires. */
function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/**
 * Render stats as Prometheus text (version 0.0.4): `# HELP` and `# TYPE`
 * lines, then one sample per metric labelled with the instance id.
 *
 * @param stats What `server.stats()` returned.
 * @param instanceId The instance, as the `instance_id` label.
 * @returns The exposition text, ending with a newline.
 */
export function renderMetrics(stats: PresenceStats, instanceId: string): string {
  const lines: string[] = [];
  const labels = `{instance_id="${label(instanceId)}"}`;
  for (const [name, kind, help, key] of METRICS) {
    const raw = stats[key];
    const value = key === "storeLatencyMs" ? raw / 1000 : raw;
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${kind}`, `${name}${labels} ${value}`);
  }
  return lines.join("\n") + "\n";
}
