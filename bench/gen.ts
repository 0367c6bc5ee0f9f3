// Load generator (runs on Bun): N clients join one room and subscribe to its
// presence, then: a join storm, closed-loop fan-out, fixed-rate fan-out and
// abrupt leave detection. Prints one `RESULT {json}` line on stdout.
//
// Speaks Presently's wire protocol over bench/_ws_client.ts (for Presently and
// the raw ceilings), or drives @prsm/realtime's own client (`--proto mesh`).
//
//   bun bench/gen.ts --url ws://127.0.0.1:PORT/ [--proto presently|mesh]
//     [--n 500] [--p 50] [--window 10] [--warmup 1] [--fixed 5] [--rate 10 (publishes/s)]
//     [--fixed-windows 5]
//     [--leave-share 0.1] [--grace 1000] [--state-bytes 0] [--mode full|count]
//     [--server-pid PID] [--concurrency 128] [--join-timeout 60]
//     [--phases join,loop,fixed,leave] (the join storm always runs)

import { readFileSync } from "node:fs";
import { WsClient, type WsEvents } from "./_ws_client.ts";

interface ProcessLike {
  argv: string[];
  cpuUsage(): { user: number; system: number };
  exit(code: number): never;
}
const proc = (globalThis as unknown as { process: ProcessLike }).process;

function flag(name: string, dflt: string): string {
  const i = proc.argv.lastIndexOf(`--${name}`);
  return i >= 0 && i + 1 < proc.argv.length ? proc.argv[i + 1]! : dflt;
}
const num = (name: string, dflt: number): number => Number(flag(name, String(dflt)));

const URL_ = new URL(flag("url", "ws://127.0.0.1:8000/"));
const PROTO = flag("proto", "presently");
const MODE = flag("mode", "full");
const N = num("n", 500);
const P = Math.min(num("p", 50), N);
const WINDOW_MS = num("window", 10) * 1000;
const WARMUP_MS = num("warmup", 1) * 1000;
const FIXED_MS = num("fixed", 5) * 1000;
const RATE_PUBS = num("rate", 10); // offered publishes/s in the fixed-rate phase (x N deliveries/s)
const FIXED_WINDOWS = num("fixed-windows", 5); // quantiles are medians over this many sub-windows
const PHASES = new Set(flag("phases", "join,loop,fixed,leave").split(","));
const LEAVE_SHARE = num("leave-share", 0.1);
const GRACE_MS = num("grace", 1000);
const STATE_BYTES = num("state-bytes", 0);
const SERVER_PID = num("server-pid", 0);
const CONCURRENCY = num("concurrency", 128);
const JOIN_TIMEOUT_MS = num("join-timeout", 60) * 1000;
const ROSTER_WAIT_MS = num("roster-wait", 5) * 1000;
const ROOM = flag("room", "bench");
const PAD = STATE_BYTES > 0 ? `,"x":"${"x".repeat(STATE_BYTES)}"` : "";

const now = () => performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) => console.error(`[gen ${PROTO} n=${N}] ${msg}`);

// ---------------------------------------------------------------------------
// Latency histogram: 1 % buckets from 10 µs up.

const STEP = Math.log(1.01);
class Histogram {
  counts = new Float64Array(2048);
  n = 0;
  add(ms: number): void {
    const i = ms <= 0.01 ? 0 : Math.min(2047, Math.ceil(Math.log(ms / 0.01) / STEP));
    this.counts[i]!++;
    this.n++;
  }
  quantile(q: number): number | null {
    if (this.n === 0) return null;
    const target = q * this.n;
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= target) return round(0.01 * Math.exp(i * STEP), 3);
    }
    return null;
  }
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function serverCpuMs(): number {
  if (!SERVER_PID) return 0;
  try {
    const stat = readFileSync(`/proc/${SERVER_PID}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10; // 100 Hz ticks
  } catch {
    return 0;
  }
}

/** The server's resident set in MB now (0 when unknown). */
function serverRssMb(): number {
  if (!SERVER_PID) return 0;
  try {
    const m = readFileSync(`/proc/${SERVER_PID}/status`, "utf8").match(/^VmRSS:\s+(\d+)/m);
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** Peak server RSS per phase, sampled every 50 ms. */
const phaseRss: Record<string, number> = {};
let phase = "join";
setInterval(() => {
  phaseRss[phase] = Math.max(phaseRss[phase] ?? 0, Math.round(serverRssMb()));
}, 50);

function genCpuMs(): number {
  const u = proc.cpuUsage();
  return (u.user + u.system) / 1000;
}

// ---------------------------------------------------------------------------
// Shared simulation state

interface Conn {
  idx: number;
  cid: string;
  joined: boolean;
  complete: boolean;
  dropped: boolean;
  leavesSeen: number;
  count: number;
  publish(p: number, v: number, t: number): void;
  cut(): void;
}

const conns: Conn[] = [];
const lastSeen = new Int32Array(N * P);
const cur = new Int32Array(P);
const got = new Int32Array(P);
let live = N;
let deliveries = 0;
let dups = 0;
let frames = 0;
let events = 0;
let gaps = 0;
let snaps = 0;
let errors = 0;
let firstError: string | null = null;
let joinedCount = 0;
let completeCount = 0;
let hist: Histogram | null = null;
/** Fixed-rate sub-windows by publish time: the reported quantiles are their medians. */
let windows: { start: number; len: number; hs: Histogram[] } | null = null;
let looping = false;
let dropped = new Set<string>();
let leaveDone = 0;
let wake: (() => void) | null = null;

function poke(): void {
  const w = wake;
  wake = null;
  w?.();
}

async function until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = now() + timeoutMs;
  while (!cond()) {
    const left = deadline - now();
    if (left <= 0) return false;
    await new Promise<void>((r) => {
      const t = setTimeout(r, Math.min(left, 50));
      wake = () => {
        clearTimeout(t);
        r();
      };
    });
  }
  return true;
}

function publish(p: number): void {
  const v = ++cur[p]!;
  got[p] = 0;
  conns[p]!.publish(p, v, now());
}

function onState(c: Conn, st: { p: number; v: number; t: number }, at: number): void {
  const p = st.p;
  const v = st.v;
  const k = c.idx * P + p;
  if (lastSeen[k]! >= v) {
    dups++;
    return;
  }
  lastSeen[k] = v;
  deliveries++;
  if (hist) {
    hist.add(at - st.t);
    if (windows) {
      const i = Math.floor((st.t - windows.start) / windows.len);
      windows.hs[Math.max(0, Math.min(windows.hs.length - 1, i))]!.add(at - st.t);
    }
  }
  if (v === cur[p] && ++got[p]! === live && looping) publish(p);
}

function markJoined(c: Conn): void {
  if (c.joined) return;
  c.joined = true;
  joinedCount++;
}

function checkComplete(c: Conn, size: number): void {
  if (!c.complete && c.joined && size === N) {
    c.complete = true;
    if (++completeCount === N) poke();
  }
}

let firstLeaveAt = 0;

function onLeaveOf(c: Conn, cid: string): void {
  if (c.dropped || !dropped.has(cid)) return;
  if (firstLeaveAt === 0) firstLeaveAt = now();
  if (++c.leavesSeen === dropped.size && ++leaveDone === live) poke();
}

// ---------------------------------------------------------------------------
// Presently protocol driver (also spoken by the raw ceilings)

/**
 * Parse a large frame. A snapshot's member list is counted, not built into
 * objects: the storm's N snapshots hold O(N²) entries and the generator must
 * not be what the join storm measures. Anything else parses normally.
 */
function parseSnapshot(text: string): Record<string, unknown> {
  const at = text.indexOf(',"present":[');
  // Presently puts `present` last; the raw ceilings put `states` after it.
  let end = at < 0 ? -1 : text.indexOf('],"states":', at);
  if (at >= 0 && end < 0 && text.endsWith("]}")) end = text.length - 2;
  if (end < 0 || !(text.startsWith('{"t":"ok"') || text.startsWith('{"t":"snap"'))) {
    return JSON.parse(text);
  }
  let count = 0;
  for (let i = text.indexOf('{"id":', at); i >= 0 && i < end; i = text.indexOf('{"id":', i + 6)) {
    count++;
  }
  const f = JSON.parse(text.slice(0, at) + text.slice(end + 1));
  f.present = { length: count };
  return f;
}

class PConn implements Conn, WsEvents {
  cid = "";
  joined = false;
  complete = false;
  dropped = false;
  leavesSeen = 0;
  count = 0;
  roster = 0;
  lastSeq = 0;
  nextId = 2;
  ws: WsClient;
  opened: () => void = () => {};

  constructor(readonly idx: number) {
    this.ws = new WsClient(URL_.hostname, Number(URL_.port), `${URL_.pathname}?v=1`, this);
  }

  open(): void {}

  close(): void {
    this.opened();
  }

  text(_ws: WsClient, text: string): void {
    if (text.startsWith('{"t":"ev"') && this.#oneKind(text)) return;
    const f = text.length > 2048 ? parseSnapshot(text) : JSON.parse(text);
    switch (f.t) {
      case "ev": {
        frames++;
        const at = now();
        for (const e of f.e) {
          const kind = e[1];
          if (kind === "u") continue;
          events++;
          if (e[0] !== this.lastSeq + 1) gaps++;
          this.lastSeq = e[0];
          if (kind === "s" || kind === "p") {
            if (e[3] !== null) onState(this, e[3], at);
          } else if (kind === "j") {
            checkComplete(this, ++this.roster);
          } else if (kind === "l") {
            this.roster--;
            onLeaveOf(this, e[2]);
          }
        }
        return;
      }
      case "ok":
        if (f.id === 1) this.#joined(f);
        return;
      case "snap":
        snaps++;
        this.#snapshot(f);
        return;
      case "cnt":
        this.count = f.c;
        if (f.c === N) checkComplete(this, N);
        return;
      case "ping":
        this.ws.send('{"op":"pong"}');
        return;
      case "hello":
        this.cid = f.cid;
        this.opened();
        this.ws.send(
          MODE === "count"
            ? `{"op":"join","id":1,"room":"${ROOM}","sub":true,"mode":"count"}`
            : `{"op":"join","id":1,"room":"${ROOM}","sub":true}`,
        );
        return;
      case "err":
        errors++;
        firstError ??= text;
        return;
    }
  }

  /**
   * A frame of join events only (the storm's bulk) or of leave events only
   * (the leave phase's) is scanned, not parsed: the number of events and the
   * seq of the first and last must agree, so continuity is still checked,
   * and each leave's connection id is still read. Others take the JSON path.
   */
  #oneKind(text: string): boolean {
    const joins = !text.includes('"l",');
    if (
      text.includes('"s",') || text.includes('"p",') || text.includes('"u",') ||
      (joins ? false : text.includes('"j",'))
    ) return false;
    const open = text.indexOf('"e":[[');
    if (open < 0) return false;
    const mark = joins ? ',"j","' : ',"l","';
    let count = 0;
    for (let i = text.indexOf(mark, open); i >= 0; i = text.indexOf(mark, i + 6)) {
      count++;
      if (!joins) onLeaveOf(this, text.slice(i + 6, text.indexOf('"', i + 6)));
    }
    const first = parseInt(text.slice(open + 6, open + 20), 10);
    const lastAt = text.lastIndexOf(",[");
    const last = lastAt > open ? parseInt(text.slice(lastAt + 2, lastAt + 16), 10) : first;
    frames++;
    events += count;
    if (first !== this.lastSeq + 1 || last - first + 1 !== count) gaps++;
    this.lastSeq = last;
    this.roster += joins ? count : -count;
    if (joins) checkComplete(this, this.roster);
    return true;
  }

  #joined(
    f: { seq: number; present?: unknown[]; states?: Array<[string, unknown]>; c?: number },
  ): void {
    markJoined(this);
    if (MODE === "count") {
      this.count = f.c ?? 0;
      checkComplete(this, this.count);
      return;
    }
    this.#snapshot(f);
  }

  #snapshot(f: { seq: number; present?: unknown[]; states?: Array<[string, unknown]> }): void {
    this.lastSeq = f.seq;
    this.roster = f.present?.length ?? 0;
    const at = now();
    for (const [, st] of f.states ?? []) {
      if (st && typeof st === "object" && "v" in st) {
        onState(this, st as { p: number; v: number; t: number }, at);
      }
    }
    checkComplete(this, this.roster);
  }

  publish(p: number, v: number, t: number): void {
    const id = this.nextId++;
    if (this.nextId > 2 ** 31 - 2) this.nextId = 2;
    this.ws.send(
      `{"op":"state","id":${id},"room":"${ROOM}","state":{"p":${p},"v":${v},"t":${
        t.toFixed(3)
      }${PAD}}}`,
    );
  }

  cut(): void {
    this.ws.cut();
  }

  async start(): Promise<void> {
    const hello = new Promise<void>((r) => (this.opened = r));
    try {
      await this.ws.connect();
    } catch (e) {
      errors++;
      firstError ??= String(e);
      return;
    }
    await hello;
  }
}

// ---------------------------------------------------------------------------
// @prsm/realtime driver: its own client, droppers routed through a cuttable proxy

interface MeshClient {
  connectionId?: string;
  connect(): Promise<void>;
  joinRoom(room: string): Promise<{ success: boolean }>;
  subscribePresence(
    room: string,
    cb: (u: MeshUpdate) => void,
  ): Promise<
    { success: boolean; present: Array<{ id: string } | string>; states?: Record<string, unknown> }
  >;
  publishPresenceState(room: string, o: { state: unknown }): Promise<unknown>;
  close(): void;
}
interface MeshUpdate {
  type?: string;
  connectionId?: string;
  state?: unknown;
  present?: Array<{ id: string } | string>;
}

let MeshCtor: (new (url: string, o: Record<string, unknown>) => MeshClient) | null = null;
let proxy: { port: number; cut(): void } | null = null;

interface NetSocket {
  destroy(): void;
  on(event: string, cb: () => void): void;
  pipe(to: NetSocket): void;
}

async function startProxy(target: number): Promise<{ port: number; cut(): void }> {
  const net = await import("node:net");
  const live = new Set<NetSocket>();
  const server = net.createServer((c) => {
    const client = c as unknown as NetSocket;
    const up = net.connect(target, "127.0.0.1") as unknown as NetSocket;
    live.add(client);
    live.add(up);
    const drop = () => {
      client.destroy();
      up.destroy();
    };
    client.on("error", drop);
    up.on("error", drop);
    client.on("close", drop);
    up.on("close", drop);
    client.pipe(up);
    up.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as { port: number }).port,
    cut() {
      for (const s of live) s.destroy();
      live.clear();
    },
  };
}

class MConn implements Conn {
  cid = "";
  joined = false;
  complete = false;
  dropped = false;
  leavesSeen = 0;
  count = 0;
  roster = new Set<string>();
  leftSeen = new Set<string>();
  client: MeshClient;

  constructor(readonly idx: number, viaProxy: boolean) {
    const port = viaProxy ? proxy!.port : Number(URL_.port);
    this.client = new MeshCtor!(`ws://127.0.0.1:${port}`, { shouldReconnect: false });
  }

  #update = (u: MeshUpdate): void => {
    const at = now();
    if (u.present) {
      for (const m of u.present) this.roster.add(typeof m === "string" ? m : m.id);
      checkComplete(this, this.roster.size);
      return;
    }
    events++;
    const id = u.connectionId ?? "";
    if (u.type === "join") {
      this.roster.add(id);
      checkComplete(this, this.roster.size);
    } else if (u.type === "leave") {
      // Mesh sends each event twice and misses some joins: count the first
      // leave of each connection, whether or not its join was seen.
      this.roster.delete(id);
      if (!this.leftSeen.has(id)) {
        this.leftSeen.add(id);
        onLeaveOf(this, id);
      }
    } else if (u.type === "state" && u.state && typeof u.state === "object") {
      onState(this, u.state as { p: number; v: number; t: number }, at);
    }
  };

  async start(): Promise<void> {
    try {
      await this.client.connect();
      this.cid = this.client.connectionId ?? "";
      await this.client.joinRoom(ROOM);
      const r = await this.client.subscribePresence(ROOM, this.#update);
      if (!r.success) throw new Error("subscribePresence failed");
      for (const m of r.present) this.roster.add(typeof m === "string" ? m : m.id);
      markJoined(this);
      const at = now();
      for (const st of Object.values(r.states ?? {})) {
        if (st && typeof st === "object" && "v" in st) {
          onState(this, st as { p: number; v: number; t: number }, at);
        }
      }
      checkComplete(this, this.roster.size);
    } catch (e) {
      errors++;
      firstError ??= String(e);
    }
  }

  publish(p: number, v: number, t: number): void {
    void this.client.publishPresenceState(ROOM, { state: { p, v, t: round(t, 3) } });
  }

  cut(): void {
    proxy?.cut();
  }
}

// ---------------------------------------------------------------------------
// Phases

async function joinStorm(): Promise<Record<string, unknown>> {
  const dropFrom = N - Math.round(N * LEAVE_SHARE);
  if (PROTO === "mesh") {
    const mod = await import(new URL("./mesh/client.mjs", import.meta.url).href);
    MeshCtor = mod.RealtimeClient;
    proxy = await startProxy(Number(URL_.port));
  }
  const t0 = now();
  const c0 = serverCpuMs();
  const g0 = genCpuMs();
  let next = 0;
  const worker = async () => {
    while (next < N) {
      const i = next++;
      const c = PROTO === "mesh" ? new MConn(i, i >= dropFrom) : new PConn(i);
      conns[i] = c;
      await c.start();
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, N) }, worker));
  const connectedMs = now() - t0;
  await until(() => joinedCount === N, JOIN_TIMEOUT_MS);
  const joinedMs = now() - t0;
  // Rosters fill from join events after the last join answer: allow a while.
  await until(() => completeCount === N, joinedCount === N ? ROSTER_WAIT_MS : 0);
  const tJoined = now() - t0;
  const cpu = serverCpuMs() - c0;
  const gcpu = genCpuMs() - g0;
  const ok = completeCount === N;
  log(`join storm: ${ok ? "complete" : "INCOMPLETE"} in ${Math.round(tJoined)} ms`);
  return {
    ms: ok ? round(tJoined) : null,
    joinedMs: round(joinedMs),
    connectedMs: round(connectedMs),
    joined: joinedCount,
    rostersComplete: completeCount,
    eventFramesPerClient: round(frames / N),
    timedOut: !ok,
    serverCpuMs: SERVER_PID ? Math.round(cpu) : null,
    genCpuMs: Math.round(gcpu),
  };
}

async function closedLoop(): Promise<Record<string, unknown>> {
  looping = true;
  for (let p = 0; p < P; p++) publish(p);
  await sleep(WARMUP_MS);
  const d0 = deliveries;
  const f0 = frames;
  const e0 = events;
  const c0 = serverCpuMs();
  const g0 = genCpuMs();
  hist = new Histogram();
  const t0 = now();
  await sleep(WINDOW_MS);
  const t1 = now();
  const d1 = deliveries;
  const f1 = frames;
  const e1 = events;
  const h = hist;
  const c1 = serverCpuMs();
  const g1 = genCpuMs();
  hist = null;
  looping = false;
  const drained = await until(() => {
    for (let p = 0; p < P; p++) if (cur[p]! > 0 && got[p]! < live) return false;
    return true;
  }, 10_000);
  const secs = (t1 - t0) / 1000;
  const perSec = (d1 - d0) / secs;
  log(`closed loop: ${Math.round(perSec)} deliveries/s`);
  return {
    deliveriesPerSec: Math.round(perSec),
    publishesPerSec: round(perSec / N),
    p50: h.quantile(0.5),
    p99: h.quantile(0.99),
    framesPerSec: Math.round((f1 - f0) / secs),
    eventsPerFrame: f1 > f0 ? round((e1 - e0) / (f1 - f0), 2) : null,
    serverCpuPct: SERVER_PID ? round(((c1 - c0) / (t1 - t0)) * 100) : null,
    genCpuPct: round(((g1 - g0) / (t1 - t0)) * 100),
    windowMs: Math.round(t1 - t0),
    drained,
  };
}

async function fixedRate(): Promise<Record<string, unknown>> {
  const pubRate = RATE_PUBS;
  hist = new Histogram();
  const h = hist;
  const d0 = deliveries;
  const start = now();
  const k = FIXED_WINDOWS;
  windows = { start, len: FIXED_MS / k, hs: Array.from({ length: k }, () => new Histogram()) };
  const hs = windows.hs;
  let issued = 0;
  let rr = 0;
  const timer = setInterval(() => {
    const due = Math.floor(((now() - start) * pubRate) / 1000);
    while (issued < due) {
      publish(rr);
      rr = (rr + 1) % P;
      issued++;
    }
  }, 1);
  await sleep(FIXED_MS);
  clearInterval(timer);
  const drained = await until(() => {
    for (let p = 0; p < P; p++) if (cur[p]! > 0 && got[p]! < live) return false;
    return true;
  }, 10_000);
  hist = null;
  windows = null;
  const secs = (now() - start) / 1000;
  const median = (q: number) => {
    const v = hs.map((w) => w.quantile(q)).filter((x): x is number => x !== null).sort((a, b) =>
      a - b
    );
    return v.length ? v[Math.floor(v.length / 2)]! : null;
  };
  log(`fixed rate: p99 ${median(0.99)} ms (whole phase ${h.quantile(0.99)} ms)`);
  return {
    offeredPerSec: RATE_PUBS * N,
    publishesPerSec: pubRate,
    achievedPerSec: Math.round((deliveries - d0) / secs),
    p50: median(0.5),
    p99: median(0.99),
    p999: median(0.999),
    windows: k,
    p99Whole: h.quantile(0.99),
    windowP99: hs.map((w) => w.quantile(0.99)),
    samples: h.n,
    drained,
  };
}

async function leavePhase(): Promise<Record<string, unknown>> {
  const d = Math.min(Math.round(N * LEAVE_SHARE), N - P);
  if (d <= 0) return { ms: null, dropped: 0 };
  const victims = conns.slice(N - d);
  dropped = new Set(victims.map((c) => c.cid));
  live = N - d;
  leaveDone = 0;
  const t0 = now();
  for (const c of victims) {
    c.dropped = true;
    c.cut();
  }
  const ok = await until(() => leaveDone === live, GRACE_MS + 10_000);
  const ms = now() - t0;
  let seen = 0;
  for (const c of conns) if (!c.dropped) seen += c.leavesSeen;
  log(`leave: ${ok ? Math.round(ms) + " ms" : "INCOMPLETE"}`);
  return {
    ms: ok ? round(ms) : null,
    firstMs: firstLeaveAt ? round(firstLeaveAt - t0) : null,
    dropped: d,
    graceMs: GRACE_MS,
    leavesSeenShare: round(seen / (d * live), 4),
  };
}

async function main(): Promise<void> {
  const result: Record<string, unknown> = { proto: PROTO, mode: MODE, n: N, p: P };
  result.join = await joinStorm();
  // Count mode measures only the join; a broken storm (other than Mesh's
  // known missed joins) stops here.
  if (MODE !== "count" && (completeCount === N || PROTO === "mesh")) {
    phase = "loop";
    if (PHASES.has("loop")) result.loop = await closedLoop();
    phase = "fixed";
    if (PHASES.has("fixed")) result.fixed = await fixedRate();
    phase = "leave";
    if (PHASES.has("leave")) result.leave = await leavePhase();
  }
  result.phaseRssMb = phaseRss;
  result.gaps = gaps;
  result.resyncs = snaps;
  result.dups = dups;
  result.errors = errors;
  result.firstError = firstError;
  console.log(`RESULT ${JSON.stringify(result)}`);
  proc.exit(0);
}

await main();
