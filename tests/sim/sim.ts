// A deterministic simulation of a Presently cluster: several real
// PresenceServers on one shared store, real PresenceClients on in-memory
// sockets, a random mix of operations and faults, and a check of every
// guarantee in docs/GUARANTEES.md against a simple model at each quiet point.
// One seed replays exactly: `deno task sim --seed N`.

import { PresenceServer } from "../../src/server/server.ts";
import { PresenceClient, type PresenceResult } from "../../src/client/client.ts";
import type { PresenceUpdate } from "../../src/client/sync.ts";
import { applyMergePatch } from "../../src/merge_patch.ts";
import type { Metadata } from "../../src/protocol.ts";
import type { PresenceEvent } from "../../src/store/types.ts";
import { FaultStore, Instance, Link, Rng, Scheduler, SharedStore, SimWebSocket } from "./world.ts";

/** Settings of one simulated run. */
export interface SimOptions {
  seed: number;
  /** Operations before the run ends (default 300). */
  ops?: number;
  /** Server instances (default 3). */
  instances?: number;
  /** Clients at the start (default 10). */
  clients?: number;
  /** Inject faults (default true). */
  faults?: boolean;
  /** Print each operation. */
  trace?: boolean;
  /** The servers' `batchIntervalMs` (default 0: off). */
  batchIntervalMs?: number;
  /**
   * The chance that an instance crashes within 30 ms of being told of a
   * store restart, in the middle of its recovery (default 0).
   */
  crashAfterReset?: number;
}

/** What one run found. */
export interface SimResult {
  seed: number;
  ops: number;
  /** The first broken guarantee, with where it broke. */
  violation: string | null;
  quietChecks: number;
  /** Successful presence hook deliveries. */
  hookDeliveries: number;
  /** Keys delivered more than once (only allowed when faults were injected). */
  hookDuplicates: number;
  virtualMs: number;
  wallMs: number;
  faults: Record<string, number>;
}

// Timings of the simulated cluster (short, so a run covers many cycles).
const GRACE = 1500;
const LEASE = 2000;
const HEARTBEAT = { intervalMs: 1000, timeoutMs: 3000 };
const SWEEP = 100;
const COUNT_MS = 500;
/** Long enough for every bound in GUARANTEES.md to pass, with margin. */
const SETTLE = GRACE + LEASE + HEARTBEAT.timeoutMs + 4000;
/** How long a claimed hook event stays with an instance (less than a settle window). */
const HOOK_LEASE = 3000;
const FEW_ROOMS = ["r0", "r1", "r2", "r3"];
const MANY_ROOMS = Array.from({ length: 30 }, (_, i) => `m${i}`);
const USERS = ["ada", "bob", "cy", "dee"];
const LIMITS = {
  maxRoomsPerConnection: 34,
  maxSubscriptionsPerConnection: 34,
  requestBurst: 40,
  requestsPerSecond: 20,
  floodCloseAfter: 10_000,
  maxConnectionsPerUser: 3,
};

type Mode = "full" | "users" | "count";

/** A subscriber's view, built the way an app builds it: the answer, then updates. */
interface View {
  room: string;
  mode: Mode;
  roster: Map<string, Metadata>;
  states: Map<string, unknown>;
  users: Set<string>;
  count: { connections: number; users: number } | null;
  /** Leaves seen per connection id, to match against leaves asked for. */
  leaves: Map<string, number>;
  /** Updates are ignored until the answer built the view. */
  live: boolean;
}

interface SimClient {
  n: number;
  user: string;
  client: PresenceClient;
  /** Index of the instance its dials reach. */
  home: number;
  /** Closed for good (by the harness, or refused at the first connect). */
  closed: boolean;
  busy: boolean;
  joined: Set<string>;
  own: Map<string, { state: unknown; expiresAt: number | null }>;
  views: Map<string, View>;
  meta: Metadata;
  /** The operation in flight, for messages. */
  doing?: string;
  /** Connection ids this client has had, newest last. */
  cids: string[];
}

class Violation extends Error {}
/** A callback's violation must not escape into the library: recorded, then raised by the loop. */
let pending: Violation | null = null;

export async function simulate(options: SimOptions): Promise<SimResult> {
  const started = performance.now();
  const rng = new Rng(options.seed);
  const sched = new Scheduler();
  const uninstall = sched.install(new Rng(options.seed ^ 0x5bd1e995));
  const opsWanted = options.ops ?? 300;
  const withFaults = options.faults ?? true;
  const trace = options.trace ?? false;
  const shared = new SharedStore(sched, rng);
  // Leaves the store made because an instance's lease lapsed: the one
  // exception to "no false leave". It is excused only if the instance kept
  // trying to renew at the promised cadence (checked here) and failed.
  const reaped = new Set<string>();
  const lastRenew = new Map<number, number>();
  // While an instance's store traffic is black-holed its renewals cannot
  // reach the store (they wait behind the calls that timed out): the cadence
  // counts from when the partition healed.
  const healedAt = new Map<number, number>();
  shared.onRenew = (i) => {
    const inst = insts[i]!;
    const since = Math.max(
      lastRenew.get(i) ?? 0,
      inst.wokeAt,
      bootedAt.get(i) ?? 0,
      healedAt.get(i) ?? 0,
    );
    const gap = sched.now - since;
    // A third of a lease, plus a sweep tick, plus a slow call still in flight.
    if (since > 0 && gap > LEASE / 3 + 2 * SWEEP + 300) {
      pending ??= new Violation(
        `lease cadence: instance ${i} tried to renew after ${gap} ms (at most ${
          LEASE / 3 + 2 * SWEEP + 300
        })\n  last step: ${where}`,
      );
    }
    lastRenew.set(i, sched.now);
  };
  // Presence hooks: every join and leave the store makes must be delivered
  // (exactly once when nothing fails), except what a store reset loses.
  const produced = new Map<string, number>();
  /** When a presence hook's registration first reached the store. */
  let hooksFrom = Infinity;
  shared.onHookRegistered = () => {
    if (hooksFrom === Infinity) hooksFrom = sched.now;
  };
  const delivered = new Map<string, number>();
  const resetTimes: number[] = [];
  let duplicates = 0;
  const hookRng = new Rng(options.seed ^ 0x7f4a7c15);
  const tapReap = (ev: PresenceEvent) => {
    if (ev.type === "leave" && ev.reason === "instance") {
      reaped.add(`${ev.connectionId}|${ev.room}`);
    }
    if (ev.type !== "state") produced.set(`${ev.room}:${ev.seq}:${ev.timestamp}`, sched.now);
  };
  shared.tap = tapReap;
  const watchCid = (globalThis as { process?: { env: Record<string, string | undefined> } }).process
    ?.env.SIM_WATCH;
  if (watchCid) {
    shared.onSnapshot = (i, room, snap) => {
      const has = snap.present.some((p) => p.id === watchCid);
      log(
        `instance ${i} read snapshot of ${room}: seq ${snap.seq}, ${has ? "with" : "without"} it`,
      );
    };
    shared.onResetFired = (i) => log(`instance ${i} is told the store reset`);
    shared.tap = (ev) => {
      if (ev.connectionId === watchCid || ev.room === watchCid) {
        log(`store event ${JSON.stringify(ev)}`);
      }
      tapReap(ev);
    };
  }
  const faultsSeen: Record<string, number> = {};
  const count = (k: string) => (faultsSeen[k] = (faultsSeen[k] ?? 0) + 1);
  const clients: SimClient[] = [];
  const byCid = new Map<string, SimClient>();
  /**
   * Leaves a subscriber may see, per `client|room`: the ones the client
   * asked for, and one per join that failed with `store_error` while the
   * client was not in the room. Such a join's outcome is unknown: if it
   * landed after all, the server undoes it with a leave (GUARANTEES.md, "No
   * ghost"), which a subscriber held up past the client's next successful
   * join sees after that join (seed 60216).
   */
  const leavesAsked = new Map<string, number>();
  const allowLeave = (c: SimClient, room: string) => {
    const key = `${c.n}|${room}`;
    leavesAsked.set(key, (leavesAsked.get(key) ?? 0) + 1);
  };
  const joinFailed = (c: SimClient, room: string, res: PresenceResult) => {
    if (res.error?.code === "store_error" && !c.joined.has(room)) allowLeave(c, room);
  };
  /** Connection ids cut for less than the grace period: no leave may be seen for them. */
  const blips = new Map<string, number>();
  /** Instances reaped while alive (lease lapsed): leaves of theirs are excused until then. */
  const excusedUntil = new Map<number, number>();
  const cidInstance = new Map<string, number>();
  /** Connections of crashed instances. */
  const dead = new Set<string>();
  const bootedAt = new Map<number, number>();
  /** The store restarts there had been when each instance booted (its handle never notices those). */
  const bootedInLife = new Map<number, number>();
  let lastResetAt = -Infinity;
  let quietChecks = 0;
  let op = 0;
  let where = "";
  const log = (s: string) => {
    where = `op ${op} at t=${sched.now - 1_800_000_000_000}ms: ${s}`;
    if (trace) console.log(where);
  };
  const fail = (msg: string): never => {
    const v = new Violation(`${msg}\n  last step: ${where}`);
    pending ??= v;
    throw v;
  };
  pending = null;
  const raise = () => {
    if (pending) throw pending;
  };

  // --- instances -----------------------------------------------------------
  const insts: Instance[] = [];
  /**
   * Each instance's server-owned member in room r0 (a bot, user "bot"), once
   * `addMember` resolved: part of the truth while its instance lives.
   */
  const members = new Map<number, { id: string; gen: number; truth: SimClient }>();
  const memberIds = new Map<string, number>();
  const adding = new Set<PresenceServer>();
  const addMember = (inst: Instance) => {
    const server = inst.server!;
    const gen = inst.gen;
    if (adding.has(server)) return;
    adding.add(server);
    server.addMember("r0", {
      userId: "bot",
      metadata: { user: "bot", name: "BOT" },
      ttlMs: null,
    }).then((m) => {
      if (inst.gen !== gen || inst.server !== server) return;
      memberIds.set(m.id, inst.index);
      members.set(inst.index, {
        id: m.id,
        gen,
        truth: {
          n: -1 - inst.index,
          user: "bot",
          closed: false,
          joined: new Set(["r0"]),
          own: new Map(),
          meta: { user: "bot", name: "BOT" },
          cids: [m.id],
        } as unknown as SimClient,
      });
    }, () => {/* the store failed: tried again at the next quiet point */}).finally(() =>
      adding.delete(server)
    );
  };
  const boot = (inst: Instance) => {
    inst.crashed = false;
    bootedAt.set(inst.index, sched.now);
    bootedInLife.set(inst.index, shared.resets);
    lastRenew.delete(inst.index);
    const store = new FaultStore(shared, inst, () => server.instanceId);
    const server: PresenceServer = new PresenceServer({
      store,
      clock: inst.clock,
      instanceId: `i${inst.index}.${inst.gen}`,
      heartbeat: HEARTBEAT,
      leaveGraceMs: GRACE,
      leaseTtlMs: LEASE,
      sweepIntervalMs: SWEEP,
      countIntervalMs: COUNT_MS,
      batchIntervalMs: options.batchIntervalMs ?? 0,
      userKey: "user",
      authenticate: (req) => {
        const user = new URL(req.url).searchParams.get("user");
        return user ? { user, name: user.toUpperCase() } : null;
      },
      limits: LIMITS,
      onError: () => {},
    });
    server.trackPresence(/^[rm]\d+$/);
    members.delete(inst.index);
    queueMicrotask(() => addMember(inst));
    server.onPresence((hook) => {
      // A receiver that fails now and then: retried with the same key.
      if (withFaults && hookRng.chance(0.1)) throw new Error("injected hook failure");
      const n = (delivered.get(hook.key) ?? 0) + 1;
      delivered.set(hook.key, n);
      if (n > 1) {
        duplicates++;
        if (!withFaults) fail(`hook: ${hook.key} delivered ${n} times with no fault injected`);
      }
    }, {
      types: ["join", "leave"],
      pollMs: 50,
      leaseMs: HOOK_LEASE,
      retry: { baseMs: 50, maxMs: 400 },
    });
    inst.server = server;
    inst.store = store;
  };
  for (let i = 0; i < (options.instances ?? 3); i++) {
    const inst = new Instance(i, sched);
    insts.push(inst);
    boot(inst);
  }
  const liveInsts = () => insts.filter((i) => !i.crashed);

  // --- network -------------------------------------------------------------
  const links = new Set<Link>();
  SimWebSocket.sched = sched;
  SimWebSocket.links = links;
  let partitioned = new Set<SimClient>();
  SimWebSocket.router = {
    route(ws) {
      const c = ws.owner as SimClient;
      if (partitioned.has(c)) return null;
      let inst = insts[c.home]!;
      if (inst.crashed) {
        // Its balancer sends it elsewhere: a new connection, no resume.
        const alive = liveInsts();
        if (alive.length === 0) return null;
        inst = rng.pick(alive);
        c.home = inst.index;
      }
      return inst;
    },
    remoteAddr: (ws) => `10.0.0.${(ws.owner as SimClient).n % 3}`,
    latency: () => rng.int(1, 4),
  };
  const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process
    ?.env;
  const watchClient = Number(env?.SIM_CLIENT ?? -1);
  // SIM_CLIP: how much of each frame to log (default 160 characters).
  const clip = Number(env?.SIM_CLIP ?? 160);
  Link.onFrame = (l, up, data) => {
    if ((l.ws.owner as SimClient).n === watchClient) {
      log(`client ${watchClient} ${up ? "->" : "<-"} i${l.inst.index}: ${data.slice(0, clip)}`);
    }
  };
  Link.onServerClose = (l, code) => {
    if (trace) {
      log(`instance ${l.inst.index} closes client ${(l.ws.owner as SimClient).n}: ${code}`);
    }
  };
  const linkOf = (c: SimClient) => {
    for (const l of links) if (l.ws.owner === c && l.alive) return l;
    return null;
  };

  // --- clients -------------------------------------------------------------
  let nextN = 0;
  const addClient = () => {
    // At most maxConnectionsPerUser clients per user, often on one instance,
    // so the limit is reached but a client is refused only transiently.
    const open = clients.filter((x) => !x.closed);
    const users = USERS.filter((u) =>
      open.filter((x) => x.user === u).length < LIMITS.maxConnectionsPerUser
    );
    if (users.length === 0) return;
    const user = rng.pick(users);
    const mate = open.find((x) => x.user === user);
    const n = nextN++;
    const c = {
      n,
      user,
      home: mate && rng.chance(0.6) ? mate.home : rng.int(0, insts.length - 1),
      closed: false,
      busy: true,
      joined: new Set(),
      own: new Map(),
      views: new Map(),
      meta: { user, name: user.toUpperCase() },
      cids: [],
    } as unknown as SimClient;
    // Every socket this client dials belongs to it.
    class Owned extends SimWebSocket {
      constructor(url: string | URL, p?: string | string[]) {
        super(url, p);
        this.owner = c;
      }
    }
    const client = new PresenceClient(`ws://sim/?user=${user}`, {
      WebSocket: Owned as unknown as typeof WebSocket,
      reconnect: { minDelayMs: 50, maxDelayMs: 400 },
      requestTimeoutMs: 30_000,
    });
    c.client = client;
    clients.push(c);
    client.onStatus((status, lost) => {
      if (lost) {
        pending ??= new Violation(
          `client ${n}: restore of ${lost.room} refused: ${lost.error.code} ${lost.error.message}\n  last step: ${where}`,
        );
      }
      if (status === "open") {
        const cid = client.connectionId!;
        if (c.cids.at(-1) !== cid) {
          if (c.cids.length > 0) c.meta = { user, name: user.toUpperCase() };
          c.cids.push(cid);
          byCid.set(cid, c);
          const l = linkOf(c);
          if (l) cidInstance.set(cid, l.inst.index);
        }
      }
      if (status === "closed" && !c.closed) {
        c.closed = true;
        log(`client ${n} closed by the library ${trace ? new Error().stack : ""}`);
      }
    });
    log(`client ${n} (${user}) connects to i${c.home}`);
    client.connect().then(() => (c.busy = false), () => {
      c.busy = false;
      c.closed = true;
    });
    return c;
  };

  const truthMembers = (room: string): Map<string, SimClient> => {
    const out = new Map<string, SimClient>();
    for (const c of clients) {
      if (c.closed || c.client.status !== "open" || !c.joined.has(room)) continue;
      out.set(c.client.connectionId!, c);
    }
    if (room === "r0") {
      for (const [i, m] of members) if (!insts[i]!.crashed) out.set(m.id, m.truth);
    }
    return out;
  };

  const onUpdate = (c: SimClient, v: View) => (u: PresenceUpdate) => {
    try {
      update(c, v, u);
    } catch (e) {
      if (!(e instanceof Violation)) pending ??= new Violation(`update threw: ${e}`);
    }
  };
  const update = (c: SimClient, v: View, u: PresenceUpdate) => {
    if (watchCid && "connectionId" in u && u.connectionId === watchCid) {
      log(`client ${c.n} update ${JSON.stringify(u)}`);
    }
    if (c.views.get(v.room) !== v) return;
    if (!v.live) return;
    switch (u.type) {
      case "join":
        v.roster.set(u.connectionId, u.meta);
        break;
      case "leave": {
        v.roster.delete(u.connectionId);
        v.states.delete(u.connectionId);
        checkLeave(u.connectionId, v, c);
        break;
      }
      case "state":
        if (u.state === null) v.states.delete(u.connectionId);
        else v.states.set(u.connectionId, u.state);
        break;
      case "userOnline":
        if (v.mode === "users" && v.users.has(u.userId)) {
          fail(`client ${c.n} saw userOnline "${u.userId}" twice in ${v.room}`);
        }
        v.users.add(u.userId);
        break;
      case "userOffline":
        if (v.mode === "users" && !v.users.has(u.userId)) {
          fail(`client ${c.n} saw userOffline "${u.userId}" while offline in ${v.room}`);
        }
        v.users.delete(u.userId);
        break;
      case "count":
        v.count = { connections: u.connections, users: u.users };
        break;
    }
  };

  /** No false leave: a live connection that did not leave is never reported gone. */
  const checkLeave = (cid: string, v: View, by: SimClient) => {
    const room = v.room;
    // A documented limit: an instance started after a store restart has no
    // settle window (it never saw the restart), so for one lease its new
    // views may miss members that are still being registered again.
    // Booted in the store's current life, after its last restart (in the
    // same millisecond too: seed 1400162 at --batch 3 --crash-after-reset
    // 0.3, a crashed instance booted by the quiet point right after a restart).
    const at = linkOf(by)?.inst.index;
    if (
      at !== undefined && shared.resets > 0 && bootedInLife.get(at) === shared.resets &&
      sched.now < lastResetAt + LEASE + LEASE / 4 + 100
    ) return;
    if (reaped.has(`${cid}|${room}`)) return;
    const memberOf = memberIds.get(cid);
    if (memberOf !== undefined) {
      // A server-owned member leaves only with its instance (a crash, or a
      // reap while its instance was cut off).
      if (members.get(memberOf)?.id !== cid || insts[memberOf]!.crashed) return;
      if ((excusedUntil.get(memberOf) ?? 0) >= sched.now) return;
      fail(
        `false leave: client ${by.n} saw server-owned member ${cid} of instance ${memberOf} leave ${room}`,
      );
    }
    const owner = byCid.get(cid);
    if (!owner || owner.closed || dead.has(cid)) return;
    const inst = cidInstance.get(cid);
    if (inst !== undefined && (excusedUntil.get(inst) ?? 0) >= sched.now) return;
    if (insts[inst ?? 0]!.crashed) return;
    // A leave of a connection that is live and meant to be in the room must
    // answer a leave the client asked for (counted by client, not id: a
    // leave asked while reconnecting runs on the new id).
    const current = owner.client.connectionId === cid && owner.client.status === "open";
    const blipped = blips.has(cid);
    if (!(current || blipped) || !owner.joined.has(room)) return;
    const key = `${owner.n}|${room}`;
    const seen = (v.leaves.get(key) ?? 0) + 1;
    v.leaves.set(key, seen);
    if ((leavesAsked.get(key) ?? 0) >= seen) return;
    fail(
      `false leave: client ${by.n} saw ${cid} (client ${owner.n}) leave ${room}, but it is live${
        blipped && !current ? " (after a blip shorter than the grace period)" : ""
      }`,
    );
  };

  // --- operations ----------------------------------------------------------
  const run = (c: SimClient, what: string, fn: () => Promise<void>) => {
    c.busy = true;
    c.doing = what;
    log(`client ${c.n}: ${what}`);
    fn().catch((e) => {
      if (!(e instanceof Violation)) pending ??= new Violation(`${what} threw: ${e}`);
    }).finally(() => (c.busy = false));
  };

  const subscribe = (c: SimClient, room: string, mode: Mode, viaJoin: boolean) => {
    const v: View = {
      room,
      mode: viaJoin ? "full" : mode,
      roster: new Map(),
      states: new Map(),
      users: new Set(),
      count: null,
      leaves: new Map(),
      live: false,
    };
    c.views.set(room, v);
    const cb = onUpdate(c, v);
    run(c, `${viaJoin ? "joinRoom+cb" : `subscribe ${mode}`} ${room}`, async () => {
      if (viaJoin) {
        const r = await c.client.joinRoom(room, cb);
        joinFailed(c, room, r);
        if (c.views.get(room) !== v) return;
        if (!r.success) {
          c.views.delete(room);
          return;
        }
        c.joined.add(room);
        // The seed's pattern: a roster from `present`, then the updates.
        for (const p of r.present) v.roster.set(p.id, p.meta);
        v.live = true;
        for (const [k, s] of r.states ?? []) v.states.set(k, s);
        return;
      }
      const r = await c.client.subscribePresence(room, cb, {
        users: mode === "users",
        mode: mode === "count" ? "count" : "full",
      });
      if (c.views.get(room) !== v) return;
      if (!r.success) {
        c.views.delete(room);
        return;
      }
      if (mode === "count") v.count = r.count ?? null;
      else {
        for (const m of r.members) v.roster.set(m.id, m.meta);
        for (const [k, s] of r.states) v.states.set(k, s);
        for (const u of r.users ?? []) v.users.add(u);
      }
      v.live = true;
    });
  };

  const act = () => {
    const idle = clients.filter((c) => !c.closed && !c.busy && c.client.status === "open");
    const roll = rng.next();
    if (roll < 0.04 && clients.filter((c) => !c.closed).length < 16) return void addClient();
    if (idle.length === 0) return;
    const c = rng.pick(idle);
    const many = c.n % 4 === 3;
    const room = many && rng.chance(0.7) ? rng.pick(MANY_ROOMS) : rng.pick(FEW_ROOMS);
    const r = rng.next();
    if (r < 0.2) {
      run(c, `join ${room}`, async () => {
        const res = await c.client.joinRoom(room);
        joinFailed(c, room, res);
        if (res.success) c.joined.add(room);
      });
    } else if (r < 0.3) {
      subscribe(c, room, "full", true);
    } else if (r < 0.38) {
      if (!c.joined.has(room)) return;
      run(c, `leave ${room}`, async () => {
        allowLeave(c, room);
        c.views.delete(room);
        const res = await c.client.leaveRoom(room);
        if (res.success) {
          c.joined.delete(room);
          c.own.delete(room);
        }
      });
    } else if (r < 0.5) {
      subscribe(c, room, rng.pick(["full", "users", "count"] as const), false);
    } else if (r < 0.54) {
      if (!c.views.has(room)) return;
      run(c, `unsubscribe ${room}`, async () => {
        c.views.delete(room);
        await c.client.unsubscribePresence(room);
      });
    } else if (r < 0.78) {
      if (!c.joined.has(room)) return;
      let kind = rng.pick(["set", "patch", "clear", "expiring"] as const);
      // A patch onto an expiring state races its expiry at the server: no truth to model.
      if (kind === "patch" && (c.own.get(room)?.expiresAt ?? null) !== null) kind = "set";
      run(c, `state ${kind} ${room}`, async () => {
        const at = sched.now;
        if (kind === "clear") {
          const res = await c.client.clearPresenceState(room);
          if (res.success) c.own.delete(room);
          return;
        }
        const value = { v: rng.int(0, 99), k: rng.pick(["a", "b"]) };
        const expireAfter = kind === "expiring" ? rng.int(200, 2500) : undefined;
        const prev = c.own.get(room);
        const prevLive = prev && (prev.expiresAt === null || prev.expiresAt > at)
          ? prev.state
          : null;
        const res = kind === "patch"
          ? await c.client.publishPresenceState(room, { patch: { v: value.v } })
          : await c.client.publishPresenceState(
            room,
            expireAfter ? { state: value, expireAfter } : { state: value },
          );
        if (!res.success) return;
        const state = kind === "patch" ? applyMergePatch(prevLive, { v: value.v }) : value;
        c.own.set(room, { state, expiresAt: expireAfter ? at + expireAfter : null });
      });
    } else if (r < 0.82) {
      // Server-side metadata (e.g. a profile change).
      const cid = c.client.connectionId!;
      const inst = insts[cidInstance.get(cid) ?? -1];
      if (!inst?.server || inst.crashed || inst.stalled) return;
      const name = `${c.user}-${rng.int(0, 9)}`;
      run(c, `metadata ${name}`, async () => {
        // Set on the connection at once; a failed store write is retried.
        c.meta = { user: c.user, name };
        // A call made inside an instance that crashes never returns: abandon it.
        const call = inst.server!.setConnectionMetadata(cid, { user: c.user, name }).catch(
          () => {},
        );
        await Promise.race([call, inst.crashes()]);
      });
    } else if (r < 0.86) {
      if (!many) return;
      // A client in many rooms, each with a state and a subscription.
      run(c, "join many", async () => {
        for (const m of MANY_ROOMS.slice(0, rng.int(10, 30))) {
          const res = await c.client.joinRoom(m);
          if (!res.success) continue;
          c.joined.add(m);
          const s = { many: m };
          const p = await c.client.publishPresenceState(m, { state: s });
          if (p.success) c.own.set(m, { state: s, expiresAt: null });
        }
      });
    } else if (r < 0.9) {
      log(`client ${c.n} closes`);
      blips.delete(c.client.connectionId!);
      c.closed = true;
      void c.client.close();
    } else if (withFaults) {
      network(c);
    }
  };

  /** Network faults on one client. */
  const network = (c: SimClient) => {
    const link = linkOf(c);
    if (!link) return;
    const cid = c.client.connectionId!;
    const kind = rng.pick(["blip", "long", "silent", "move"] as const);
    count(`cut:${kind}`);
    log(`client ${c.n} link cut: ${kind}`);
    // Only a blip keeps the connection id; any other cut may end it.
    if (kind !== "blip") blips.delete(cid);
    if (kind === "blip") {
      // Back well within the grace period, to the same instance: resumes.
      if (!insts[c.home]!.stalled) blips.set(cid, sched.now);
      partitioned.add(c);
      link.cut(true);
      sched.setTimeout(() => partitioned.delete(c), rng.int(10, GRACE / 4));
    } else if (kind === "long") {
      partitioned.add(c);
      link.cut(true);
      sched.setTimeout(() => partitioned.delete(c), GRACE + rng.int(200, 1500));
    } else if (kind === "silent") {
      link.cut(false);
    } else {
      // Reconnect through another instance: no resume, everything restored.
      c.home = (c.home + 1) % insts.length;
      link.cut(true);
    }
  };

  /** Faults healed, settling before a quiet check: no fault may start. */
  let calm = false;
  /** Kill an instance (it boots again 0.2–3 s later, or at the quiet point). */
  const crash = (inst: Instance, what: string) => {
    count(what);
    log(`instance ${inst.index} crashes`);
    // Its connections are gone, though a client behind a silent link does not know yet.
    for (const [cid, i] of cidInstance) if (i === inst.index) dead.add(cid);
    for (const l of [...links]) if (l.inst === inst) l.cut(true);
    inst.store!.detach();
    inst.crash();
    sched.setTimeout(() => {
      if (!inst.crashed) return; // the quiet point restarted it already
      log(`instance ${inst.index} restarts`);
      boot(inst);
    }, rng.int(200, 3000));
  };
  // Optional: crashes in the middle of the recovery from a store restart.
  const crashAfterReset = options.crashAfterReset ?? 0;
  if (crashAfterReset > 0) {
    const told = shared.onResetFired;
    shared.onResetFired = (i) => {
      told?.(i);
      if (!rng.chance(crashAfterReset)) return;
      sched.setTimeout(() => {
        const inst = insts[i]!;
        if (!inst.crashed && !calm && liveInsts().length >= 2) crash(inst, "crash:recovering");
      }, rng.int(0, 30));
    };
  }

  /** Faults on instances and the store. */
  const chaos = () => {
    const r = rng.next();
    const f = shared.faults;
    if (r < 0.25) {
      const inst = rng.pick(liveInsts());
      if (inst.stalled) return;
      // A stalled server may expire a blipped connection's grace on waking.
      for (const [cid] of blips) if (cidInstance.get(cid) === inst.index) blips.delete(cid);
      const long = rng.chance(0.3);
      const ms = long ? LEASE + rng.int(300, 900) : rng.int(100, LEASE / 2);
      count(long ? "stall:long" : "stall:short");
      log(`instance ${inst.index} stalls ${ms}ms`);
      if (long) excusedUntil.set(inst.index, sched.now + ms + SETTLE);
      inst.stall();
      sched.setTimeout(() => {
        log(`instance ${inst.index} resumes`);
        inst.resume();
      }, ms);
    } else if (r < 0.35) {
      if (liveInsts().length < 2) return;
      crash(rng.pick(liveInsts()), "crash");
    } else if (r < 0.45) {
      count("store:reset");
      log("store resets (restart, data lost)");
      lastResetAt = sched.now;
      resetTimes.push(sched.now);
      shared.reset(LEASE / 4);
    } else if (r < 0.55) {
      const ms = rng.int(100, Math.floor(LEASE / 2));
      count("store:outage");
      log(`store outage ${ms}ms`);
      f.outageUntil = sched.now + ms;
    } else if (r < 0.65) {
      const inst = rng.pick(liveInsts());
      const ms = LEASE + rng.int(200, 1500);
      count("lease:lapse");
      log(`instance ${inst.index} lease renewals fail for ${ms}ms`);
      f.leaseBlocked.set(inst.server!.instanceId, sched.now + ms);
      excusedUntil.set(inst.index, sched.now + ms + SETTLE);
    } else if (r < 0.72) {
      // A partition between one instance and the store: its calls hang (the
      // server's deadline fails them) and land late, in order, on healing.
      const inst = rng.pick(liveInsts());
      const ms = rng.int(200, Math.floor(LEASE * 1.5));
      count("store:partition");
      log(`instance ${inst.index} store traffic black-holed for ${ms}ms`);
      const id = inst.server!.instanceId;
      const heal = Math.max(f.partitioned.get(id) ?? 0, sched.now + ms);
      f.partitioned.set(id, heal);
      healedAt.set(inst.index, heal);
      // Past about two thirds of a lease, the others may reap it.
      if (heal - sched.now > LEASE / 2) excusedUntil.set(inst.index, heal + SETTLE);
    } else {
      f.failRate = rng.pick([0, 0, 0.02, 0.1]);
      f.slowRate = rng.pick([0, 0.05, 0.2]);
      f.reorderRate = rng.pick([0, 0.05, 0.2]);
      log(`store faults: fail ${f.failRate}, slow ${f.slowRate}, reorder ${f.reorderRate}`);
    }
  };

  // --- checks --------------------------------------------------------------
  const quiet = async () => {
    calm = true;
    const f = shared.faults;
    f.failRate = f.slowRate = f.reorderRate = 0;
    f.outageUntil = 0;
    f.leaseBlocked.clear();
    for (const inst of insts) {
      const heal = f.partitioned.get(inst.server?.instanceId ?? "");
      if (heal !== undefined && heal > sched.now) healedAt.set(inst.index, sched.now);
    }
    f.partitioned.clear();
    partitioned = new Set();
    for (const inst of insts) if (inst.stalled) inst.resume();
    for (const inst of insts) if (inst.crashed) boot(inst);
    for (const inst of insts) if (!members.has(inst.index)) addMember(inst);
    log("quiet: faults healed, settling");
    await sched.advance(SETTLE);
    const ok = await sched.until(() => clients.every((c) => c.closed || !c.busy), 60_000);
    if (!ok) {
      const stuck = clients.filter((c) => !c.closed && c.busy)
        .map((c) => `client ${c.n} (${c.client.status}, ${c.client.connectionId}): ${c.doing}`);
      fail(`liveness: a request was not answered within 60 s of quiet: ${stuck.join("; ")}`);
    }
    await sched.advance(SETTLE);
    quietChecks++;
    blips.clear();
    const now = sched.now;
    for (const c of clients) {
      if (c.closed) continue;
      if (c.client.status !== "open") {
        fail(`client ${c.n} is "${c.client.status}" after the cluster healed`);
      }
    }
    const rooms = new Set<string>([...FEW_ROOMS, ...MANY_ROOMS]);
    for (const room of rooms) {
      const members = truthMembers(room);
      const want = [...members.keys()].sort();
      const states = new Map<string, unknown>();
      for (const [cid, c] of members) {
        const s = c.own.get(room);
        if (s && (s.expiresAt === null || s.expiresAt > now)) states.set(cid, s.state);
      }
      const users = new Set([...members.values()].map((c) => c.user));
      for (const inst of liveInsts()) {
        const p = inst.server!.getPresentConnections(room);
        await sched.advance(20);
        const got = (await p).sort();
        if (JSON.stringify(got) !== JSON.stringify(want)) {
          const odd = [...new Set([...got, ...want])].filter((x) =>
            got.includes(x) !== want.includes(x)
          )
            .map((x) => {
              const o = byCid.get(x);
              return `${x}: client ${o?.n} (${
                o?.closed ? "closed" : o?.client.status
              }, now ${o?.client.connectionId}, joined ${o?.joined.has(room)}, on i${
                cidInstance.get(x)
              })`;
            });
          fail(
            `store: ${room} via instance ${inst.index} has [${got}], truth [${want}]; odd: ${
              odd.join("; ")
            }`,
          );
        }
      }
      for (const c of clients) {
        if (c.closed) continue;
        const v = c.views.get(room);
        if (!v || !v.live) continue;
        const who = `client ${c.n} (${c.client.connectionId}, ${v.mode}) view of ${room}`;
        if (v.mode === "count") {
          const want = { connections: members.size, users: users.size };
          if (JSON.stringify(v.count) !== JSON.stringify(want)) {
            const list = [...members].map(([cid, m]) => `${cid}:${m.user}`).join(" ");
            fail(
              `${who}: count ${JSON.stringify(v.count)}, truth ${JSON.stringify(want)}: ${list}`,
            );
          }
          continue;
        }
        const got = [...v.roster.keys()].sort();
        if (JSON.stringify(got) !== JSON.stringify(want)) {
          fail(`${who}: members [${got}], truth [${want}]`);
        }
        for (const [cid, m] of members) {
          const meta = v.roster.get(cid)!;
          if (meta.user !== m.user) fail(`${who}: ${cid} has user ${meta.user}, truth ${m.user}`);
        }
        const gs = JSON.stringify([...v.states].sort());
        const ws = JSON.stringify([...states].sort());
        if (gs !== ws) {
          const owners = [...new Set([...v.states.keys(), ...states.keys()])].map((cid) => {
            const o = byCid.get(cid);
            return `${cid}: client ${o?.n}, own ${JSON.stringify(o?.own.get(room))}`;
          });
          fail(`${who}: states ${gs}, truth ${ws}; ${owners.join("; ")}`);
        }
        if (v.mode === "users") {
          const gu = [...v.users].sort().join(), wu = [...users].sort().join();
          if (gu !== wu) fail(`${who}: users [${gu}], truth [${wu}]`);
        }
      }
    }
    // Queries: the store's counters and indices agree with the truth.
    const nonEmpty: string[] = [];
    const userRooms = new Map<string, Set<string>>();
    for (const room of [...rooms].sort()) {
      const members = truthMembers(room);
      if (members.size > 0) nonEmpty.push(room);
      for (const c of members.values()) {
        (userRooms.get(c.user) ?? userRooms.set(c.user, new Set()).get(c.user)!).add(room);
      }
      const want = {
        connections: members.size,
        users: new Set([...members.values()].map((c) => c.user)).size,
      };
      const inst = rng.pick(liveInsts());
      const p = inst.server!.count(room);
      await sched.advance(20);
      const got = await p;
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        fail(
          `query: count(${room}) via instance ${inst.index} is ${JSON.stringify(got)}, truth ${
            JSON.stringify(want)
          }`,
        );
      }
    }
    {
      const inst = rng.pick(liveInsts());
      const p = inst.server!.listRooms({ limit: 1000 });
      await sched.advance(20);
      const got = (await p).rooms;
      if (got.join() !== nonEmpty.join()) {
        fail(`query: listRooms via instance ${inst.index} is [${got}], truth [${nonEmpty}]`);
      }
      for (const user of USERS) {
        const q = inst.server!.userRooms(user);
        await sched.advance(20);
        const rs = (await q).join();
        const want = [...(userRooms.get(user) ?? [])].sort().join();
        if (rs !== want) {
          fail(`query: userRooms(${user}) via instance ${inst.index} is [${rs}], truth [${want}]`);
        }
      }
    }
    // Hooks: every join and leave made before the settle window was delivered,
    // unless a store reset lost it (queued before it, or made before every
    // instance had registered the hook again).
    for (const [key, at] of produced) {
      if (at > now - HOOK_LEASE - 1000) continue; // may still be in flight
      // Made before the hook was first registered: not queued, by contract
      // (seed 4932: a member added in the same tick as the hook).
      if (at < hooksFrom) {
        produced.delete(key);
        continue;
      }
      produced.delete(key);
      if ((delivered.get(key) ?? 0) > 0) continue;
      if (resetTimes.some((r) => at < r || at <= r + LEASE)) continue;
      fail(`hook: ${key} (made at ${at - 1_800_000_000_000} ms) was never delivered`);
    }
    // Metadata: any client reads any connection's latest public metadata.
    const open = clients.filter((c) => !c.closed);
    for (let i = 0; i < Math.min(4, open.length); i++) {
      const a = rng.pick(open), b = rng.pick(open);
      const p = a.client.getConnectionMetadata(b.client.connectionId!);
      await sched.until(() => false, 50);
      const got = await p;
      if (JSON.stringify(got) !== JSON.stringify(b.meta)) {
        fail(
          `metadata: client ${a.n} reads ${JSON.stringify(got)} for client ${b.n}, truth ${
            JSON.stringify(b.meta)
          }`,
        );
      }
    }
    log(`quiet check ${quietChecks} passed`);
  };

  let violation: string | null = null;
  try {
    for (let i = 0; i < (options.clients ?? 10); i++) addClient();
    await sched.advance(200);
    const quietEvery = rng.int(60, 120);
    for (op = 1; op <= opsWanted; op++) {
      if (withFaults && rng.chance(0.05)) chaos();
      act();
      await sched.advance(rng.int(0, 40));
      raise();
      if (op % quietEvery === 0) {
        await quiet();
        calm = false;
      }
      raise();
    }
    await quiet();
    raise();
  } catch (e) {
    violation = e instanceof Violation ? e.message : `crash: ${(e as Error).stack ?? e}`;
  } finally {
    for (const c of clients) {
      try {
        void c.client.close();
      } catch { /* closed */ }
    }
    await sched.advance(100).catch(() => {});
    for (const inst of insts) {
      if (!inst.crashed) void inst.server?.close().catch(() => {});
    }
    await sched.advance(100).catch(() => {});
    uninstall();
  }
  return {
    seed: options.seed,
    ops: op,
    violation,
    quietChecks,
    virtualMs: sched.now - 1_800_000_000_000,
    hookDeliveries: [...delivered.values()].reduce((a, b) => a + b, 0),
    hookDuplicates: duplicates,
    wallMs: performance.now() - started,
    faults: faultsSeen,
  };
}
