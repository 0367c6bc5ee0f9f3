// Slow consumers on the current runtime's adapter. A raw TCP subscriber stops
// reading while others publish at a high rate: the server's buffer for it
// stays under the configured bound, it is coalesced and then closed with
// 4409, and the other clients' publish -> receive latency stays within 20%
// of a baseline without it. A client that keeps asking for snapshots but
// never reads its answers is bounded and closed the same way.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { CloseCode } from "../mod.ts";
import { RawClient, type Running, RUNTIME, startServer, waitUntil } from "./_harness.ts";
import { LiteClient, RawWs } from "./_rawws.ts";

const HIGH_WATER = 64 * 1024;
const MAX_PENDING = 1024 * 1024;
const SLOW_TIMEOUT = 1500;
const PHASE_MS = 1500;
const ROUNDS = 3;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe(`slow consumers (${RUNTIME})`, () => {
  let srv: Running;
  const clients: RawClient[] = [];
  const raws: RawWs[] = [];
  const open = async () => {
    const c = new RawClient(`${srv.url}?v=1`);
    clients.push(c);
    await c.opened;
    return c;
  };
  const lite = async () => {
    const c = await LiteClient.open(srv.port);
    raws.push(c.ws);
    return c;
  };

  before(async () => {
    srv = await startServer({
      limits: {
        outboundHighWaterBytes: HIGH_WATER,
        maxPendingBytes: MAX_PENDING,
        slowConsumerTimeoutMs: SLOW_TIMEOUT,
        requestsPerSecond: 1e6,
        requestBurst: 1e6,
      },
    }, (server) => server.trackPresence(/^.+$/));
  });

  after(async () => {
    for (const c of clients) c.ws.close();
    for (const r of raws) r.destroy();
    await srv.close();
  });

  it(
    "a subscriber that stops reading is bounded, coalesced, closed with 4409, and others keep their latency",
    {
      timeout: 120_000,
    },
    async () => {
      const room = "busy";
      // Four publishers, each keeping four ~1 KiB states in flight.
      const publishers = await Promise.all([0, 1, 2, 3].map(() => lite()));
      for (const p of publishers) await p.request("join", { room });
      let running = true;
      let published = 0;
      const pad = "x".repeat(1000);
      const pumps = publishers.flatMap((p) =>
        [0, 1, 2, 3].map(async () => {
          while (running) {
            await p.request("state", { room, state: { n: published++, pad } });
          }
        })
      );
      // The probe: a small state every 10 ms, timed at a subscriber that reads.
      const prober = await lite();
      await prober.request("join", { room });
      const reader = await lite();
      await reader.request("sub", { room });
      let phase: "base" | "slow" | "idle" = "idle";
      const latency = { base: [] as number[], slow: [] as number[] };
      reader.onEvents = (events, at) => {
        for (const ev of events) {
          const st = ev[3] as { t: number; phase: string } | null;
          if (ev[2] === prober.cid && ev[1] === "s" && st?.phase === phase && phase !== "idle") {
            latency[phase].push(at - st.t);
          }
        }
      };
      const probing = (async () => {
        while (running) {
          await prober.request("state", { room, state: { t: performance.now(), phase } });
          await sleep(5);
        }
      })();

      const peaks: number[] = [];
      const closes: Array<number | null> = [];
      const received: number[] = [];
      let coalesced = 0;
      try {
        await sleep(300); // warm up
        for (let round = 0; round < ROUNDS; round++) {
          phase = "base";
          await sleep(PHASE_MS);
          phase = "idle";

          // The slow consumer: subscribes, then stops reading its socket.
          const before = srv.server.stats();
          const slow = await RawWs.connect(srv.port);
          raws.push(slow);
          slow.keep = false;
          slow.sendText(JSON.stringify({ op: "sub", id: 1, room }));
          await sleep(50);
          slow.pause();
          phase = "slow";
          let peak = 0;
          const t0 = Date.now();
          while (srv.server.stats().slowClosed === before.slowClosed && Date.now() - t0 < 20_000) {
            peak = Math.max(peak, srv.server.stats().bufferedBytes);
            await sleep(10);
          }
          phase = "idle";
          const after = srv.server.stats();
          peaks.push(peak);
          coalesced += after.coalesced - before.coalesced;
          assert.equal(after.slowClosed, before.slowClosed + 1, "the slow consumer was closed");
          // Read what was queued for it: the last frame is the close with its code.
          slow.resume();
          await slow.waitFor(
            () => slow.closeFrame !== null || slow.ended,
            20_000,
            "the close frame",
          );
          closes.push(slow.closeFrame?.code ?? null);
          received.push(slow.received);
          slow.destroy();
        }
      } finally {
        running = false;
      }
      await Promise.all([...pumps, probing]);

      const base = median(latency.base);
      const slowP50 = median(latency.slow);
      const bound = Math.max(base * 1.2, base + 2);
      console.log(
        `[slow consumer ${RUNTIME}] ${published} states published; per round: server buffer peak ${
          peaks.map((p) => `${(p / 1024).toFixed(0)} KiB`).join(", ")
        } (bound ${MAX_PENDING / 1024} KiB + one flush), read back ${
          received.map((r) => `${(r / 1048576).toFixed(1)} MiB`).join(", ")
        }, close codes ${closes.join(", ")}, coalesced ${coalesced}x; probe p50 ${
          base.toFixed(2)
        } ms (${latency.base.length} samples) -> ${
          slowP50.toFixed(2)
        } ms (${latency.slow.length}) with the slow consumer (bound ${bound.toFixed(2)} ms)`,
      );
      assert.deepEqual(closes, Array(ROUNDS).fill(CloseCode.slowConsumer));
      assert.ok(coalesced >= ROUNDS, "coalesced before it was closed");
      for (const peak of peaks) {
        assert.ok(peak <= MAX_PENDING + 512 * 1024, `server buffer peaked at ${peak} bytes`);
      }
      assert.ok(latency.base.length >= 100 && latency.slow.length >= 100, "enough samples");
      assert.ok(
        slowP50 <= bound,
        `probe p50 ${slowP50.toFixed(2)} ms vs baseline ${base.toFixed(2)} ms`,
      );
    },
  );

  it("a client that keeps asking for snapshots but never reads is bounded and closed with 4409", {
    timeout: 60_000,
  }, async () => {
    const room = "big";
    // A room whose snapshot is ~300 KiB.
    const members = await Promise.all(Array.from({ length: 20 }, () => open()));
    void lite;
    for (const [i, m] of members.entries()) {
      await m.request("join", { room });
      await m.request("state", { room, state: { i, blob: "b".repeat(15_000) } });
    }
    const asker = await RawWs.connect(srv.port);
    raws.push(asker);
    asker.keep = false;
    await sleep(50);
    asker.pause();
    const before = srv.server.stats();
    let peak = 0;
    let sent = 0;
    const t0 = Date.now();
    while (srv.server.stats().slowClosed === before.slowClosed && Date.now() - t0 < 20_000) {
      asker.sendText(JSON.stringify({ op: "sub", id: ++sent, room }));
      peak = Math.max(peak, srv.server.stats().bufferedBytes);
      await sleep(5);
    }
    assert.equal(srv.server.stats().slowClosed, before.slowClosed + 1, "closed as a slow consumer");
    asker.resume();
    await asker.waitFor(() => asker.closeFrame !== null || asker.ended, 20_000, "the close frame");
    console.log(
      `[slow consumer ${RUNTIME}] a non-reading asker sent ${sent} snapshot requests in ${
        Date.now() - t0
      } ms; server buffer peak ${(peak / 1024).toFixed(0)} KiB; read back ${
        (asker.received / 1048576).toFixed(1)
      } MiB; close ${asker.closeFrame?.code}`,
    );
    assert.equal(asker.closeFrame?.code, CloseCode.slowConsumer);
    assert.ok(peak <= MAX_PENDING + 512 * 1024, `server buffer peaked at ${peak} bytes`);
    await waitUntil(() => members.every((m) => m.closed === null), 1000, "members untouched");
  });
});
