// Capacity load generator (runs on Bun; several run side by side): its share
// of C connections over R rooms with Zipf-sized membership, each joined and
// subscribed, with a state. Then, when told on stdin, a fixed-rate phase: one
// state change per connection per 10 s, and cursors (10 per second) from the
// first 5 members of every room of 500+ (a cursor state replaces the whole
// state, so the raw ceilings need no merge patch), while every delivered state's
// publish -> receive latency is recorded.
//
//   bun bench/capacity_gen.ts --url ws://127.0.0.1:PORT/ --c 20000 --r 2000
//     --gen 0 --gens 4 [--seed 1] [--fixed 10] [--concurrency 256]
//
// Prints "JOINED {json}" after the ramp-up, then waits for a line "FIXED" on
// stdin, runs the fixed phase and prints "RESULT {json}".

import { WsClient, type WsEvents } from "./_ws_client.ts";

interface ProcessLike {
  argv: string[];
  exit(code: number): never;
  stdin: { on(event: "data", cb: (chunk: Uint8Array) => void): void };
}
const proc = (globalThis as unknown as { process: ProcessLike }).process;
const flag = (name: string, dflt: string): string => {
  const i = proc.argv.lastIndexOf(`--${name}`);
  return i >= 0 && i + 1 < proc.argv.length ? proc.argv[i + 1]! : dflt;
};
const num = (name: string, dflt: number) => Number(flag(name, String(dflt)));

const URL_ = new URL(flag("url", "ws://127.0.0.1:8000/"));
const C = num("c", 1000);
const R = num("r", 100);
const GEN = num("gen", 0);
const GENS = num("gens", 1);
const SEED = num("seed", 1);
const FIXED_MS = num("fixed", 10) * 1000;
const CONCURRENCY = num("concurrency", 256);
const STATE_EVERY_MS = 10_000;
const CURSOR_HZ = 10;
const CURSORS_PER_BIG_ROOM = 5;
const BIG_ROOM = 500;

const log = (msg: string) => console.error(`[capacity gen ${GEN}/${GENS}] ${msg}`);
/** Wall-clock ms with sub-ms precision, comparable across processes. */
const wall = () => performance.timeOrigin + performance.now();

/** mulberry32 */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Room of each connection: Zipf (s = 1) over R ranks, the same in every
 * generator (seeded). With C = 20 000 and R = 2 000 the largest room has
 * about 2 400 members, rank 10 about 240, and most rooms 2–10.
 */
export function assignRooms(c: number, r: number, seed: number): Uint32Array {
  const cdf = new Float64Array(r);
  let sum = 0;
  for (let k = 0; k < r; k++) cdf[k] = sum += 1 / (k + 1);
  const rand = rng(seed);
  const out = new Uint32Array(c);
  for (let i = 0; i < c; i++) {
    const x = rand() * sum;
    let lo = 0, hi = r - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    out[i] = lo;
  }
  return out;
}

const roomOf = assignRooms(C, R, SEED);
const sizes = new Uint32Array(R);
for (const k of roomOf) sizes[k]!++;
/** The first CURSORS_PER_BIG_ROOM members (by index) of each big room move a cursor. */
const cursor = new Uint8Array(C);
{
  const taken = new Uint32Array(R);
  for (let i = 0; i < C; i++) {
    const k = roomOf[i]!;
    if (sizes[k]! >= BIG_ROOM && taken[k]! < CURSORS_PER_BIG_ROOM) {
      taken[k]!++;
      cursor[i] = 1;
    }
  }
}

// Latency samples (ms), a reservoir per generator.
const RESERVOIR = 50_000;
const samples: number[] = [];
let seen = 0;
let measuring = false;
let deliveries = 0;
let events = 0;
let errors = 0;
let firstError: string | null = null;
/** Connections that closed before their join was answered: before or after the hello. */
let lostBeforeHello = 0;
let lostAfterHello = 0;
/** Their close codes ("none": no close frame). */
const lostCodes: Record<string, number> = {};

class Conn implements WsEvents {
  readonly room: string;
  joined = false;
  hello = false;
  ws: WsClient;
  nextId = 2;
  onJoined: () => void = () => {};
  constructor(readonly idx: number) {
    this.room = `room-${roomOf[idx]}`;
    this.ws = new WsClient(URL_.hostname, Number(URL_.port), `${URL_.pathname}?v=1`, this);
  }
  open(): void {}
  close(): void {
    if (this.joined) return;
    if (this.hello) lostAfterHello++;
    else lostBeforeHello++;
    const code = String(this.ws.closeCode ?? "none");
    lostCodes[code] = (lostCodes[code] ?? 0) + 1;
    this.onJoined();
  }
  text(_ws: WsClient, text: string): void {
    if (text.startsWith('{"t":"ev"')) {
      if (!measuring) return;
      const f = JSON.parse(text);
      const at = wall();
      for (const e of f.e) {
        events++;
        if (e[1] === "s" || e[1] === "p") {
          const t = e[3]?.t;
          if (typeof t !== "number") continue;
          deliveries++;
          const ms = at - t;
          if (samples.length < RESERVOIR) samples.push(ms);
          else {
            const j = Math.floor(Math.random() * ++seen);
            if (j < RESERVOIR) samples[j] = ms;
          }
          seen = Math.max(seen, samples.length);
        }
      }
      return;
    }
    const f = JSON.parse(text);
    if (f.t === "hello") {
      this.hello = true;
      this.ws.send(`{"op":"join","id":1,"room":"${this.room}","sub":true}`);
    } else if (f.t === "ok" && f.id === 1) {
      this.joined = true;
      this.publish(false);
      this.onJoined();
    } else if (f.t === "ping") {
      this.ws.send('{"op":"pong"}');
    } else if (f.t === "err") {
      errors++;
      firstError ??= text;
      if (f.id === 1) this.onJoined();
    }
  }
  publish(move: boolean): void {
    const id = this.nextId++;
    const t = wall();
    this.ws.send(
      move
        ? `{"op":"state","id":${id},"room":"${this.room}","state":{"t":${t},"x":${id % 1000}}}`
        : `{"op":"state","id":${id},"room":"${this.room}","state":{"t":${t},"x":0,"k":"${this.idx}"}}`,
    );
  }
}

const mine: Conn[] = [];
for (let i = GEN; i < C; i += GENS) mine.push(new Conn(i));

// Ramp-up: connect and join with bounded concurrency.
const rampStart = performance.now();
let next = 0;
let joined = 0;
async function worker(): Promise<void> {
  while (next < mine.length) {
    const c = mine[next++]!;
    const done = new Promise<void>((r) => (c.onJoined = r));
    try {
      await c.ws.connect();
    } catch {
      errors++;
      continue;
    }
    await done;
    if (c.joined) joined++;
  }
}
await Promise.all(Array.from({ length: CONCURRENCY }, worker));
const rampMs = performance.now() - rampStart;
console.log(`JOINED ${JSON.stringify({ gen: GEN, conns: mine.length, joined, rampMs, errors })}`);
// Set in callbacks: the compiler does not see it change.
const errorFrame = firstError as string | null;
log(
  `${joined}/${mine.length} joined in ${rampMs.toFixed(0)} ms; ${errors} errors, closed before` +
    ` the join's answer: ${lostBeforeHello} before the hello, ${lostAfterHello} after it` +
    ` (close codes ${JSON.stringify(lostCodes)})` +
    (errorFrame === null ? "" : `; first error frame: ${errorFrame.slice(0, 200)}`),
);

// Wait for the runner's go.
await new Promise<void>((resolve) => {
  let buf = "";
  proc.stdin.on("data", (chunk) => {
    buf += new TextDecoder().decode(chunk);
    if (buf.includes("FIXED")) resolve();
  });
});

// Fixed rate: each connection's state every 10 s (phases spread evenly), and
// cursors at 10 Hz; one tick every 10 ms sends what is due.
measuring = true;
const TICK = 10;
const start = performance.now();
let sent = 0;
let tick = 0;
const movers = mine.filter((c) => cursor[c.idx]);
const slots = STATE_EVERY_MS / TICK;
await new Promise<void>((resolve) => {
  const timer = setInterval(() => {
    const elapsed = performance.now() - start;
    if (elapsed >= FIXED_MS) {
      clearInterval(timer);
      resolve();
      return;
    }
    const slot = tick % slots;
    for (let i = slot; i < mine.length; i += slots) {
      mine[i]!.publish(false);
      sent++;
    }
    if (tick % (1000 / TICK / CURSOR_HZ) === 0) {
      for (const m of movers) {
        m.publish(true);
        sent++;
      }
    }
    tick++;
  }, TICK);
});
await new Promise((r) => setTimeout(r, 500)); // the last deliveries
measuring = false;
samples.sort((a, b) => a - b);
console.log(`RESULT ${
  JSON.stringify({
    gen: GEN,
    sent,
    deliveries,
    events,
    errors,
    firstError,
    movers: movers.length,
    samples: samples.filter((_, i) => i % 5 === 0).map((x) => Math.round(x * 100) / 100),
  })
}`);
for (const c of mine) c.ws.close();
await new Promise((r) => setTimeout(r, 200));
proc.exit(0);
