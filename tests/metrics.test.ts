// server.metrics(): Prometheus text that a real parser reads
// (parse-prometheus-text-format from npm), with stable names, kinds and
// values that follow the server, on real sockets under Deno and Bun.

import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { PresenceClient } from "../client.ts";
import { type Running, startServer } from "./_harness.ts";

type Family = {
  name: string;
  type: string;
  help: string;
  metrics: Array<{ value: string; labels?: Record<string, string> }>;
};

const EXPECTED: Record<string, string> = {
  presently_connections: "GAUGE",
  presently_connections_detached: "GAUGE",
  presently_members: "GAUGE",
  presently_rooms: "GAUGE",
  presently_subscriptions: "GAUGE",
  presently_requests_total: "COUNTER",
  presently_store_events_total: "COUNTER",
  presently_frames_out_total: "COUNTER",
  presently_coalesced_total: "COUNTER",
  presently_slow_consumers_closed_total: "COUNTER",
  presently_store_errors_total: "COUNTER",
  presently_store_timeouts_total: "COUNTER",
  presently_store_latency_seconds: "GAUGE",
  presently_buffered_bytes: "GAUGE",
};

describe("server.metrics()", () => {
  let running: Running;
  after(() => running?.close());

  it("parses as Prometheus text with every documented metric, and follows the server", async () => {
    running = await startServer({}, (s) => s.trackPresence("lobby"));
    const parse = (text: string) =>
      new Map((parsePrometheusTextFormat(text) as Family[]).map((f) => [f.name, f]));
    const before = parse(running.server.metrics());
    assert.deepEqual(
      Object.fromEntries([...before].map(([name, f]) => [name, f.type])),
      EXPECTED,
    );
    for (const f of before.values()) {
      assert.ok(f.help.length > 0, `${f.name} has help`);
      assert.equal(f.metrics.length, 1);
      assert.equal(f.metrics[0]!.labels?.instance_id, running.server.instanceId);
      assert.ok(Number.isFinite(Number(f.metrics[0]!.value)), `${f.name} is a number`);
    }
    const value = (m: Map<string, Family>, name: string) => Number(m.get(name)!.metrics[0]!.value);
    assert.equal(value(before, "presently_connections"), 0);

    const clients = [new PresenceClient(running.url), new PresenceClient(running.url)];
    for (const c of clients) {
      await c.connect();
      await c.joinRoom("lobby", () => {});
    }
    const now = parse(running.server.metrics());
    assert.equal(value(now, "presently_connections"), 2);
    assert.equal(value(now, "presently_subscriptions"), 2);
    assert.equal(value(now, "presently_rooms"), 1);
    assert.ok(value(now, "presently_requests_total") >= 2);
    assert.ok(value(now, "presently_store_events_total") >= 2);
    await Promise.all(clients.map((c) => c.close()));
  });
});
