// Fuzz the current runtime's adapter with at least 100 000 seeded frames:
// mutations of frames recorded from the real PresenceClient, non-JSON,
// binary, huge numbers, deep nesting, "__proto__"/"constructor" keys, wrong
// types, unknown and out-of-order ops, duplicate ids, oversized frames, and
// wire-level violations (invalid UTF-8 text, reserved opcodes and bits,
// unmasked frames) on raw TCP. Expected: the server stays up, every request
// with a readable id is answered with `ok` or a documented `err` code, and a
// bystander sees a well-behaved publisher's states in order with no gap, and
// a room view equal to the server's truth.
//
// Replay a failure with PRESENTLY_FUZZ_SEED=<seed> (printed on failure);
// PRESENTLY_FUZZ_FRAMES sets the frame count (default 100000).

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { applyMergePatch, PresenceClient } from "../client.ts";
import type { PresenceError, PresenceEvent } from "../mod.ts";
import { RawClient, RUNTIME, startServer, waitUntil } from "./_harness.ts";
import { RawWs } from "./_rawws.ts";

const SEED = Number(process.env.PRESENTLY_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 32));
const FRAMES = Number(process.env.PRESENTLY_FUZZ_FRAMES ?? 100_000);
const FUZZERS = 4;
const BATCH = 400;
const MAX_FRAME = 64 * 1024;
const ROOM = "fz";
/** The error codes docs/PROTOCOL.md documents for answers. */
const DOCUMENTED = new Set([
  "bad_request",
  "unknown_op",
  "too_large",
  "forbidden",
  "not_member",
  "not_tracked",
  "rate_limited",
  "too_many_rooms",
  "too_many_subscriptions",
  "invalid_state",
  "store_error",
  "internal",
]);

/** sfc32: a small, fast, seedable PRNG. */
function prng(seed: number): () => number {
  let a = 0x9e3779b9, b = 0x243f6a88, c = 0xb7e15162, d = seed >>> 0;
  const next = () => {
    a |= 0, b |= 0, c |= 0, d |= 0;
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 16; i++) next();
  return next;
}

type Frame = { text: string } | { bytes: Uint8Array };

class Gen {
  readonly r: () => number;
  readonly recorded: string[];
  constructor(seed: number, recorded: string[]) {
    this.r = prng(seed);
    this.recorded = recorded;
  }
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  room(): unknown {
    return this.pick<unknown>([
      ROOM,
      ROOM,
      ROOM,
      "fz:a",
      "fz:b",
      "fz:schema",
      "guarded",
      "untracked",
      "__proto__",
      "constructor",
      "toString",
      "",
      "x".repeat(257),
      7,
      null,
      ["fz"],
      { room: "fz" },
      `fz:${this.int(1000)}`,
    ]);
  }
  id(): unknown {
    return this.r() < 0.85 ? 1 + this.int(64) : this.pick<unknown>([
      0,
      -1,
      1.5,
      "3",
      2 ** 31,
      2 ** 31 - 1,
      2 ** 53 + 1,
      1e308,
      null,
      true,
      [1],
      { id: 1 },
    ]);
  }
  /** A random JSON value, sometimes hostile. */
  value(depth = 0): unknown {
    const k = this.int(depth > 3 ? 6 : 11);
    switch (k) {
      case 0:
        return null;
      case 1:
        return this.r() < 0.5;
      case 2:
        return this.pick([0, -0, 1, -1, 0.1, 2 ** 53, -(2 ** 63), 1e308, 5e-324, this.int(1e6)]);
      case 3:
        return this.pick([
          "",
          "a",
          "ü€𝄞",
          "\u0000",
          "\ud800",
          "<script>",
          "x".repeat(this.int(3000)),
        ]);
      case 4:
        return this.int(100);
      case 5:
        return "s" + this.int(100);
      case 6:
      case 7: {
        const o: Record<string, unknown> = {};
        const n = this.int(5);
        for (let i = 0; i < n; i++) {
          const key = this.pick([
            "a",
            "b",
            "n",
            "__proto__",
            "constructor",
            "prototype",
            "toString",
            "polluted",
            "reject",
          ]);
          Object.defineProperty(o, key, {
            value: this.value(depth + 1),
            enumerable: true,
            writable: true,
            configurable: true,
          });
        }
        return o;
      }
      case 8:
        return Array.from({ length: this.int(4) }, () => this.value(depth + 1));
      case 9:
        return { __proto__: null, polluted: true, constructor: { prototype: { polluted: true } } };
      default:
        return { typing: this.r() < 0.5, n: this.int(100) };
    }
  }
  /** A structurally plausible request with a random twist. */
  request(): Record<string, unknown> {
    const op = this.r() < 0.9
      ? this.pick([
        "join",
        "leave",
        "sub",
        "unsub",
        "state",
        "state",
        "state",
        "clear",
        "meta",
        "pong",
      ])
      : this.pick(["dance", "JOIN", "", "__proto__", "constructor", "hello", "ok", "ev"]);
    const f: Record<string, unknown> = { op, id: this.id(), room: this.room() };
    if (this.r() < 0.3) f.sub = this.pick<unknown>([true, false, "yes", 1]);
    if (this.r() < 0.2) f.users = this.pick<unknown>([true, false, null]);
    if (this.r() < 0.15) f.mode = this.pick<unknown>(["full", "count", "weird", 3]);
    if (op === "state" || this.r() < 0.1) {
      if (this.r() < 0.6) f.state = this.value();
      if (this.r() < 0.4 || !("state" in f)) f.patch = this.value();
      if (this.r() < 0.3) {
        f.expireAfter = this.pick<unknown>([1, 5, 50, 1000, 0, -5, 2 ** 31 + 1, "10", null, 1e308]);
      }
    }
    if (op === "meta" || this.r() < 0.1) {
      f.cid = this.pick<unknown>(["nobody", "__proto__", "", 5, "x".repeat(200)]);
    }
    if (this.r() < 0.15) f.cid = "AAAAAAAAAAAAAAAAAAAAAA";
    if (this.r() < 0.1) f.connectionId = "spoof";
    if (this.r() < 0.1) delete f.room;
    if (this.r() < 0.05) delete f.id;
    if (this.r() < 0.05) delete f.op;
    return f;
  }
  /** A recorded client frame, possibly mutated. */
  recordedFrame(): string {
    const src = this.pick(this.recorded);
    const f = JSON.parse(src) as Record<string, unknown>;
    if (typeof f.room === "string") f.room = this.r() < 0.7 ? ROOM : this.room();
    if ("id" in f) f.id = this.id();
    const n = this.int(3);
    for (let i = 0; i < n; i++) {
      const keys = Object.keys(f);
      const key = this.pick(keys.length ? keys : ["op"]);
      const m = this.int(4);
      if (m === 0) f[key] = this.value();
      else if (m === 1) delete f[key];
      else if (m === 2) {
        Object.defineProperty(f, this.pick(["__proto__", "constructor", "extra", "cid"]), {
          value: this.value(),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
    }
    let text = JSON.stringify(f);
    if (this.r() < 0.25) text = this.textMutation(text);
    return text;
  }
  textMutation(text: string): string {
    const at = this.int(text.length + 1);
    switch (this.int(6)) {
      case 0:
        return text.slice(0, at);
      case 1:
        return text.slice(0, at) +
          this.pick(["{", "}", '"', ",", "\\", "\u0000", "1e999", "[", "\ud83d"]) + text.slice(at);
      case 2:
        return text.slice(0, at) + text.slice(at + 1 + this.int(5));
      case 3:
        return text.slice(0, at) + text.slice(Math.max(0, at - 10), at) + text.slice(at);
      case 4:
        return text.replace(/"(\d+)"|\d+/, "1e999");
      default:
        return text.toUpperCase();
    }
  }
  frame(): Frame {
    const k = this.r();
    if (k < 0.35) return { text: this.recordedFrame() };
    if (k < 0.7) {
      const text = JSON.stringify(this.request());
      return { text: this.r() < 0.1 ? this.textMutation(text) : text };
    }
    if (k < 0.78) {
      return {
        text: this.pick([
          "",
          "null",
          "[]",
          "42",
          '"join"',
          "{",
          "not json",
          "{'op':'join'}",
          '{"op":"join","id":1,"room":"fz",}',
          "\ufeff{}",
          '{"op":"meta","id":1e999,"cid":"x"}',
          '{"op":"state","id":9,"room":"fz","state":1e999}',
          '{"op":"state","id":9,"room":"fz","state":{"a":-1e999}}',
          '{"op":"state","id":9,"room":"fz","patch":{"a":[1e400]}}',
          '{"op":"join","id":' + "9".repeat(400) + ',"room":"fz"}',
          '{"__proto__":{"op":"join"},"id":3,"room":"fz"}',
          '{"op":"state","id":4,"room":"fz","state":{"__proto__":{"polluted":1}}}',
          '{"op":"state","id":4,"room":"fz","patch":{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}}}}',
          '{"op":"join","id":5,"room":"fz","op":"dance"}',
        ]),
      };
    }
    if (k < 0.84) {
      const d = this.pick([17, 40, 1000, 20_000]);
      const inner = this.r() < 0.5
        ? "[".repeat(d) + "]".repeat(d)
        : '{"a":'.repeat(d) + "1" + "}".repeat(d);
      return { text: `{"op":"state","id":${1 + this.int(64)},"room":"fz","state":${inner}}` };
    }
    if (k < 0.9) {
      const bytes = this.r() < 0.5
        ? crypto.getRandomValues(new Uint8Array(1 + this.int(64)))
        : new TextEncoder().encode(this.recordedFrame());
      return { bytes };
    }
    if (k < 0.905) {
      return {
        text: `{"op":"meta","id":${1 + this.int(64)},"cid":"x","pad":"${"p".repeat(MAX_FRAME)}"}`,
      };
    }
    // Out of order: ops a well-behaved client sends only after another.
    const room = this.pick(["fz:a", "fz:b", ROOM]);
    return {
      text: JSON.stringify(this.pick([
        { op: "state", id: 1 + this.int(64), room, state: { early: true } },
        { op: "clear", id: 1 + this.int(64), room },
        { op: "leave", id: 1 + this.int(64), room },
        { op: "unsub", id: 1 + this.int(64), room },
        { op: "state", id: 1 + this.int(64), room, patch: { early: 1 } },
      ])),
    };
  }
}

/** The answer a frame must get: its id, `null` (unreadable), or none (`undefined`, a pong). */
function expectedAnswer(frame: Frame): number | null | undefined {
  if ("bytes" in frame) return null;
  if (new TextEncoder().encode(frame.text).length > MAX_FRAME) return null;
  let v: unknown;
  try {
    v = JSON.parse(frame.text);
  } catch {
    return null;
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) return null;
  const f = v as Record<string, unknown>;
  if (f.op === "pong") return undefined;
  const id = f.id;
  return Number.isInteger(id) && (id as number) > 0 && (id as number) <= 2 ** 31 - 1
    ? id as number
    : null;
}

/** A fuzzing connection that checks each frame gets exactly the answer it should. */
class Fuzzer {
  ws!: RawWs;
  readonly port: number;
  readonly pending = new Map<number | null, number>();
  pendingTotal = 0;
  readonly unexpected: string[] = [];
  readonly codes = new Map<string, number>();
  readonly closes: number[] = [];
  sent = 0;
  answered = 0;
  constructor(port: number) {
    this.port = port;
  }
  async connect(): Promise<void> {
    this.ws = await RawWs.connect(this.port);
    this.ws.keep = false;
    // The hello may have come in the same TCP read as the upgrade answer.
    let hello = this.ws.texts.some((t) => t.includes('"hello"'));
    this.ws.onText = (text) => {
      const f = JSON.parse(text) as Record<string, unknown>;
      if (f.t === "hello") hello = true;
      if (f.t === "ping") this.ws.sendText('{"op":"pong"}');
      if (f.t !== "ok" && f.t !== "err") return;
      this.answered++;
      if (f.t === "err") this.codes.set(String(f.code), (this.codes.get(String(f.code)) ?? 0) + 1);
      const id = f.id as number | null;
      const n = this.pending.get(id) ?? 0;
      if (n === 0) {
        this.unexpected.push(text.slice(0, 200));
        return;
      }
      this.pendingTotal--;
      if (n === 1) this.pending.delete(id);
      else this.pending.set(id, n - 1);
    };
    await this.ws.waitFor(() => hello, 5000, "hello");
  }
  send(frame: Frame): void {
    const id = expectedAnswer(frame);
    if (id !== undefined) {
      this.pending.set(id, (this.pending.get(id) ?? 0) + 1);
      this.pendingTotal++;
    }
    this.sent++;
    if ("bytes" in frame) this.ws.sendBinary(frame.bytes);
    else this.ws.sendText(frame.text);
  }
  async settle(): Promise<void> {
    await this.ws.waitFor(() => this.pendingTotal === 0 || this.ws.ended, 20_000, "every answer");
    if (this.ws.ended) {
      this.closes.push(this.ws.closeFrame?.code ?? 1006);
      this.pending.clear();
      this.pendingTotal = 0;
      await this.connect();
    }
  }
}

/** Frames a well-behaved client sends, recorded from the real PresenceClient. */
async function recordClientFrames(url: string): Promise<string[]> {
  const recorded: string[] = [];
  class RecordingWebSocket extends WebSocket {
    override send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
      if (typeof data === "string") recorded.push(data);
      super.send(data);
    }
  }
  const c = new PresenceClient(url, { WebSocket: RecordingWebSocket, reconnect: false });
  await c.connect();
  await c.joinRoom("rec", () => {});
  await c.subscribePresence("rec:2", () => {}, { users: true });
  await c.subscribePresence("rec:3", () => {}, { mode: "count" });
  await c.publishPresenceState("rec", {
    state: { typing: true, cursor: { x: 1, y: 2 } },
    expireAfter: 8000,
  });
  await c.publishPresenceState("rec", { patch: { cursor: { x: 3 } } });
  await c.publishPresenceState("rec", { state: null });
  await c.clearPresenceState("rec");
  await c.getConnectionMetadata(c.connectionId!);
  await c.unsubscribePresence("rec:2");
  await c.leaveRoom("rec");
  c.close();
  recorded.push('{"op":"pong"}');
  return recorded;
}

/**
 * Replays a room view from a snapshot answer and events, checking the
 * sequence and, after every event, that the view agrees with the server's own
 * event of that seq (from `server.events()`).
 */
function replay(
  snapshot: Record<string, unknown>,
  events: unknown[][],
  truth: Map<number, PresenceEvent>,
) {
  const present = new Set((snapshot.present as { id: string }[]).map((p) => p.id));
  const states = new Map<string, unknown>(snapshot.states as Array<[string, unknown]>);
  let seq = snapshot.seq as number;
  for (const e of events) {
    if (e[1] === "u") continue;
    assert.equal(e[0], seq + 1, `bystander events in order with no gap (${e[0]} after ${seq})`);
    seq = e[0] as number;
    const cid = e[2] as string;
    if (e[1] === "j") present.add(cid);
    else if (e[1] === "l") {
      present.delete(cid);
      states.delete(cid);
    } else if (e[1] === "s") {
      if (e[3] === null) states.delete(cid);
      else states.set(cid, e[3]);
    } else if (e[1] === "p") states.set(cid, applyMergePatch(states.get(cid), e[3]));
    const ev = truth.get(seq);
    assert.ok(ev, `the server produced event ${seq}`);
    assert.equal(ev.connectionId, cid, `event ${seq} is about the same connection`);
    const kind = { join: "j", leave: "l", state: e[1] === "p" ? "p" : "s" }[ev.type];
    assert.equal(kind, e[1], `event ${seq} has the server's type`);
    if (ev.type === "join") assert.equal(canon(e[3]), canon(ev.meta), `event ${seq} meta`);
    if (ev.type === "state") {
      assert.equal(
        canon(states.get(cid) ?? null),
        canon(ev.state),
        `state after event ${seq} = the server's`,
      );
    }
  }
  return { present, states, seq };
}

/** JSON with sorted keys (own "__proto__" keys included), for comparing states. */
function canon(v: unknown): string {
  if (typeof v === "number" && !Number.isFinite(v)) return `<${v}>`;
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canon).join(",")}]`;
  return `{${
    Object.keys(v).sort().map((k) =>
      `${JSON.stringify(k)}:${canon((v as Record<string, unknown>)[k])}`
    ).join(",")
  }}`;
}

/** Wire-level violations: each on a fresh raw connection. */
const VIOLATIONS: Array<[string, (ws: RawWs) => void]> = [
  ["invalid UTF-8 text (0xff)", (ws) => ws.sendText(new Uint8Array([0x7b, 0xff, 0x7d]))],
  ["overlong UTF-8 text", (ws) => ws.sendText(new Uint8Array([0x22, 0xc0, 0xaf, 0x22]))],
  ["UTF-8 encoded surrogate", (ws) => ws.sendText(new Uint8Array([0x22, 0xed, 0xa0, 0x80, 0x22]))],
  ["truncated UTF-8 text", (ws) => ws.sendText(new Uint8Array([0x22, 0xe2, 0x82]))],
  ["invalid UTF-8 across fragments", (ws) => {
    ws.sendFrame(0x1, new Uint8Array([0x22, 0xe2]), false);
    ws.sendFrame(0x0, new Uint8Array([0x28, 0xa1, 0x22]), true);
  }],
  ["reserved opcode 0x3", (ws) => ws.sendFrame(0x3, "{}")],
  ["reserved control opcode 0xb", (ws) => ws.sendFrame(0xb, "")],
  ["RSV1 without an extension", (ws) => ws.sendFrame(0x1, "{}", true, { rsv: 0x40 })],
  [
    "unmasked client frame",
    (ws) => ws.sendFrame(0x1, '{"op":"meta","id":1,"cid":"x"}', true, { masked: false }),
  ],
  ["continuation without a start", (ws) => ws.sendFrame(0x0, "{}")],
  ["fragmented ping", (ws) => ws.sendFrame(0x9, "x", false)],
  ["ping over 125 bytes", (ws) => ws.sendFrame(0x9, "x".repeat(126))],
];

describe(`fuzzing the ${RUNTIME} adapter (seed ${SEED})`, () => {
  it(
    `survives ${FRAMES} fuzzed frames, answers each readable request, and a bystander sees the truth`,
    {
      timeout: 120_000,
    },
    async () => {
      const errors: PresenceError[] = [];
      const protoBefore = Object.getOwnPropertyNames(Object.prototype).sort().join();
      const arrayBefore = Object.getOwnPropertyNames(Array.prototype).sort().join();
      const srv = await startServer({
        leaveGraceMs: 200,
        onError: (e) => errors.push(e),
        limits: {
          requestsPerSecond: 1e9,
          requestBurst: 1e9,
          floodCloseAfter: 1e9,
          badFramesCloseAfter: 1e9,
          maxRoomsPerConnection: 10,
          maxSubscriptionsPerConnection: 10,
        },
      }, (server) => {
        server.trackPresence("rec");
        server.trackPresence(/^rec:/);
        server.trackPresence("guarded", { guard: () => false });
        server.trackPresence("fz:schema", {
          validateState: {
            "~standard": {
              validate: (v: unknown) =>
                v !== null && typeof v === "object"
                  ? { value: v }
                  : { issues: [{ message: "must be an object" }] },
            },
          },
        });
        server.trackPresence(/^fz/, {
          validateState: (s) => (s as { reject?: unknown })?.reject !== true || "Refused",
        });
      });
      const clients: RawClient[] = [];
      const fuzzers: Fuzzer[] = [];
      const started = Date.now();
      let violationFrames = 0;
      const violationCloses = new Map<string, number>();
      try {
        const truth = new Map<number, PresenceEvent>();
        const reader = srv.server.events().getReader();
        void (async () => {
          for (;;) {
            const r = await reader.read();
            if (r.done) return;
            if (r.value.room === ROOM) truth.set(r.value.seq, r.value);
          }
        })();
        const recorded = await recordClientFrames(srv.url);
        assert.ok(recorded.length >= 10, `recorded ${recorded.length} client frames`);

        const bystander = new RawClient(srv.url);
        const publisher = new RawClient(srv.url);
        clients.push(bystander, publisher);
        await Promise.all([bystander.opened, publisher.opened]);
        const snapshot = await bystander.request("sub", { room: ROOM });
        await publisher.request("join", { room: ROOM });
        let publishing = true;
        let published = 0;
        const publishFailures: unknown[] = [];
        const publishLoop = (async () => {
          while (publishing && publishFailures.length === 0) {
            const r = await publisher.request("state", {
              room: ROOM,
              state: { n: published, by: "publisher" },
            })
              .catch((e) => ({ t: "failed", e: String(e) }));
            if (r.t !== "ok") publishFailures.push(r);
            else published++;
          }
        })();

        for (let i = 0; i < FUZZERS; i++) {
          const f = new Fuzzer(srv.port);
          await f.connect();
          fuzzers.push(f);
        }
        let fuzzing = true;
        const violations = (async () => {
          const g = prng(SEED ^ 0x5eed);
          for (let i = 0; fuzzing || i < 100; i++) {
            const [name, violate] = VIOLATIONS[Math.floor(g() * VIOLATIONS.length)]!;
            const ws = await RawWs.connect(srv.port);
            await ws.waitFor(() => ws.texts.length > 0, 5000, "hello");
            ws.sendText('{"op":"join","id":1,"room":"fz:v"}');
            violate(ws);
            // Closed by the runtime, or else still served.
            ws.sendText('{"op":"meta","id":77,"cid":"x"}');
            violationFrames += 3;
            await ws.waitFor(
              () =>
                ws.ended || ws.closeFrame !== null || ws.texts.some((t) => t.includes('"id":77')),
              5000,
              `a close or an answer after: ${name}`,
            );
            const key = `${name}: ${ws.closeFrame?.code ?? (ws.ended ? "dropped" : "served")}`;
            violationCloses.set(key, (violationCloses.get(key) ?? 0) + 1);
            ws.destroy();
          }
        })();

        // Each fuzzer sends its share in batches and waits for every expected answer.
        await Promise.all(fuzzers.map(async (f, n) => {
          const gen = new Gen(SEED + n, recorded);
          const share = Math.ceil(FRAMES / FUZZERS);
          for (let sent = 0; sent < share;) {
            const batch = Math.min(BATCH, share - sent);
            for (let i = 0; i < batch; i++) f.send(gen.frame());
            sent += batch;
            await f.settle();
          }
        }));
        fuzzing = false;
        await violations;
        publishing = false;
        await publishLoop;

        const sent = fuzzers.reduce((a, f) => a + f.sent, 0);
        const codes = new Map<string, number>();
        for (const f of fuzzers) {
          for (const [c, n] of f.codes) codes.set(c, (codes.get(c) ?? 0) + n);
        }
        console.log(
          `[fuzz ${RUNTIME}] seed ${SEED}: ${sent} fuzz frames + ${violationFrames} on ${
            [...violationCloses.values()].reduce((a, b) => a + b, 0)
          } violating connections in ${Date.now() - started} ms; answers ${
            fuzzers.reduce((a, f) => a + f.answered, 0)
          }; codes ${JSON.stringify(Object.fromEntries(codes))}; publisher states ${published}`,
        );
        console.log(
          `[fuzz ${RUNTIME}] wire violations: ${
            JSON.stringify(Object.fromEntries(violationCloses))
          }`,
        );
        assert.ok(sent >= FRAMES, `sent ${sent} frames`);
        assert.deepEqual(publishFailures, [], "every publisher state is accepted");
        for (const f of fuzzers) assert.deepEqual(f.unexpected, [], "no answer without a request");
        for (const f of fuzzers) assert.deepEqual(f.closes, [], "fuzzers were not closed");
        for (const code of codes.keys()) {
          assert.ok(
            DOCUMENTED.has(code),
            `code "${code}" is documented`,
          );
        }
        assert.ok(
          !codes.has("internal") && !codes.has("store_error"),
          "no internal or store errors",
        );
        assert.deepEqual(
          errors.map((e) => `${e.code}: ${e.message}`),
          [],
          "onError was never called",
        );

        // The bystander: every event in order, the publisher's states all there, the view equal to the truth.
        assert.equal(bystander.closed, null, "the bystander stayed connected");
        assert.equal(
          bystander.frames.filter((f) => f.t === "snap").length,
          0,
          "the bystander was never resynced",
        );
        await waitUntil(
          () =>
            bystander.events(ROOM).filter((e) => e[2] === publisher.cid && e[1] === "s").length ===
              published,
          10_000,
          "the publisher's last state at the bystander",
        );
        const mine = bystander.events(ROOM).filter((e) => e[2] === publisher.cid && e[1] === "s")
          .map((e) => (e[3] as { n: number }).n);
        assert.deepEqual(
          mine,
          Array.from({ length: published }, (_, i) => i),
          "every publisher state, in order",
        );
        let view = replay(snapshot, bystander.events(ROOM), truth);
        for (let attempt = 0;; attempt++) {
          // States may still be expiring: compare until the truth is still.
          const present = new Set(await srv.server.getPresentConnections(ROOM));
          const states = await srv.server.getPresenceStates(ROOM);
          await new Promise((r) => setTimeout(r, 150));
          view = replay(snapshot, bystander.events(ROOM), truth);
          const same = canon([...present].sort()) === canon([...view.present].sort()) &&
            canon([...states].sort()) === canon([...view.states].sort());
          if (same) break;
          if (attempt >= 20) {
            assert.deepEqual(
              [...view.present].sort(),
              [...present].sort(),
              "bystander members = truth",
            );
            assert.equal(
              canon([...view.states].sort()),
              canon([...states].sort()),
              "bystander states = truth",
            );
          }
        }
        assert.ok(view.present.has(publisher.cid));
        assert.deepEqual(view.states.get(publisher.cid), { n: published - 1, by: "publisher" });

        // No prototype pollution anywhere.
        assert.equal(({} as Record<string, unknown>).polluted, undefined);
        assert.equal(Object.getOwnPropertyNames(Object.prototype).sort().join(), protoBefore);
        assert.equal(Object.getOwnPropertyNames(Array.prototype).sort().join(), arrayBefore);
        assert.equal(Object.prototype.constructor, Object);

        // Still up and serving; fuzzers gone, the room holds the truth.
        for (const f of fuzzers) f.ws.close(1000);
        const late = new RawClient(srv.url);
        clients.push(late);
        await late.opened;
        assert.equal((await late.request("join", { room: ROOM })).t, "ok");
        await waitUntil(
          async () => (await srv.server.getPresentConnections(ROOM)).length === 2,
          5000,
          "fuzzers to leave",
        );
        assert.deepEqual(
          new Set(await srv.server.getPresentConnections(ROOM)),
          new Set([publisher.cid, late.cid]),
        );
        await waitUntil(
          () => srv.server.stats().connections === 3 && srv.server.stats().detached === 0,
          5000,
          "cleanup",
        );
      } catch (e) {
        throw new Error(
          `fuzz failed: replay with PRESENTLY_FUZZ_SEED=${SEED}: ${(e as Error).message}`,
          { cause: e },
        );
      } finally {
        for (const c of clients) c.ws.close();
        for (const f of fuzzers) f.ws.destroy();
        await srv.close();
      }
    },
  );
});
