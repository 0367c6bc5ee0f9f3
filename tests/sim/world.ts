// The simulated world: virtual time, a seeded scheduler, in-memory sockets
// between real PresenceClients and real PresenceServers, and a shared store
// with injected faults. Everything runs on one seeded scheduler, so a seed
// replays exactly.

import type { Clock, TimerHandle } from "../../src/clock.ts";
import type { Metadata } from "../../src/protocol.ts";
import type { SocketHandlers, SocketLike } from "../../src/server/socket.ts";
import { MemoryPresenceStore } from "../../src/store/memory.ts";
import type {
  HookDelivery,
  HookEventType,
  LeaveReason,
  ListRoomsOptions,
  OwnedEntries,
  PresenceEvent,
  PresenceStore,
  RoomCount,
  RoomPage,
  RoomSnapshot,
  StateWrite,
  StoreListener,
} from "../../src/store/types.ts";
import type { PresenceServer } from "../../src/server/server.ts";

/** mulberry32: small, fast, good enough to drive a simulation. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
}

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  dead: boolean;
}

// Captured before the simulation replaces the globals.
const realSetImmediate = (globalThis as unknown as { setImmediate: (fn: () => void) => unknown })
  .setImmediate;
const realDateNow = Date.now;
const realRandom = Math.random;
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;

/** Let every pending promise continuation run: nothing here does real I/O. */
export function settleMicrotasks(): Promise<void> {
  return new Promise((r) => realSetImmediate(r));
}

/** One virtual clock and timer queue for the whole world. */
export class Scheduler {
  now = 1_800_000_000_000;
  #heap: Timer[] = [];
  #seq = 0;
  #sameTime = 0;
  steps = 0;

  setTimeout(fn: () => void, ms: number): Timer {
    const t: Timer = { at: this.now + Math.max(0, ms || 0), seq: this.#seq++, fn, dead: false };
    const h = this.#heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(h[p]!, h[i]!)) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
    return t;
  }

  clearTimeout(t: unknown): void {
    if (t && typeof t === "object" && "dead" in t) (t as Timer).dead = true;
  }

  #pop(): Timer | undefined {
    const h = this.#heap;
    const top = h[0];
    if (!top) return undefined;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < h.length && less(h[l]!, h[m]!)) m = l;
        if (r < h.length && less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }

  /** Run every timer due up to `now + ms`, in order, then set the clock there. */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    await settleMicrotasks();
    for (;;) {
      const top = this.#heap[0];
      if (!top || top.at > end) break;
      this.#pop();
      if (top.dead) continue;
      if (top.at > this.now) {
        this.now = top.at;
        this.#sameTime = 0;
      } else if (++this.#sameTime > 200_000) {
        throw new Error(
          `livelock: 200000 timers at t=${this.now}: ${top.fn.toString().slice(0, 200)}`,
        );
      }
      this.steps++;
      top.fn();
      await settleMicrotasks();
    }
    this.now = end;
  }

  /** Advance in small steps until `done()` or `limitMs` passed. */
  async until(done: () => boolean, limitMs: number, stepMs = 10): Promise<boolean> {
    const end = this.now + limitMs;
    while (!done()) {
      if (this.now >= end) return false;
      await this.advance(stepMs);
    }
    return true;
  }

  /** Make this scheduler the process's time: Date.now, setTimeout, Math.random. */
  install(rng: Rng): () => void {
    const g = globalThis as unknown as Record<string, unknown>;
    const saved = { setTimeout: g.setTimeout, clearTimeout: g.clearTimeout };
    g.setTimeout = (fn: () => void, ms?: number) => this.setTimeout(fn, ms ?? 0);
    g.clearTimeout = (t: unknown) => this.clearTimeout(t);
    Date.now = () => this.now;
    Math.random = () => rng.next();
    // Connection ids and tokens too, so a replay names the same connections.
    const c = crypto as unknown as { getRandomValues: <T>(a: T) => T };
    const savedRandomValues = c.getRandomValues;
    c.getRandomValues = <T>(a: T): T => {
      const bytes = a as unknown as Uint8Array;
      for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rng.next() * 256);
      return a;
    };
    return () => {
      c.getRandomValues = savedRandomValues;
      g.setTimeout = saved.setTimeout;
      g.clearTimeout = saved.clearTimeout;
      Date.now = realDateNow;
      Math.random = realRandom;
    };
  }
}

function less(a: Timer, b: Timer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

export { realClearTimeout, realSetTimeout };

// ---------------------------------------------------------------------------
// Instances: a process that can stall (SIGSTOP) or crash (kill -9).

/** A server process slot: its clock and callbacks stop while it is stalled. */
export class Instance {
  server: PresenceServer | null = null;
  store: FaultStore | null = null;
  stalled = false;
  crashed = false;
  /** Generation: bumped at every crash, so old callbacks are dropped. */
  gen = 0;
  #deferred: Array<() => void> = [];
  readonly clock: Clock;

  constructor(readonly index: number, readonly sched: Scheduler) {
    this.clock = {
      now: () => sched.now,
      setTimeout: (fn: () => void, ms: number): TimerHandle => sched.setTimeout(this.wrap(fn), ms),
      clearTimeout: (h: TimerHandle) => sched.clearTimeout(h),
    };
  }

  /** Wrap a callback of this process: dropped after a crash, held during a stall. */
  wrap(fn: () => void): () => void {
    const gen = this.gen;
    return () => {
      if (this.gen !== gen || this.crashed) return;
      if (this.stalled) this.#deferred.push(fn);
      else fn();
    };
  }

  stall(): void {
    this.stalled = true;
  }

  /** When the process last woke up from a stall (or booted). */
  wokeAt = 0;

  resume(): void {
    this.stalled = false;
    this.wokeAt = this.sched.now;
    const fns = this.#deferred;
    this.#deferred = [];
    for (const fn of fns) {
      if (this.crashed) return;
      fn();
    }
  }

  #crashWaiters: Array<() => void> = [];

  /** Resolves at this process's next crash. */
  crashes(): Promise<void> {
    return new Promise((r) => this.#crashWaiters.push(r));
  }

  crash(): void {
    for (const r of this.#crashWaiters.splice(0)) r();
    this.crashed = true;
    this.gen++;
    this.#deferred = [];
    this.stalled = false;
  }
}

// ---------------------------------------------------------------------------
// Network: in-memory WebSockets with latency, FIFO per direction.

/** What the harness routes a dial to. */
export interface Router {
  /** The instance a client's next dial reaches, or null when unreachable. */
  route(ws: SimWebSocket): Instance | null;
  remoteAddr(ws: SimWebSocket): string;
  latency(): number;
}

/** A link between a client socket and a server connection. */
export class Link {
  /** Tracing hook: the server closed a link. */
  static onServerClose: ((link: Link, code: number) => void) | null = null;
  alive = true;
  #toClientAt = 0;
  #toServerAt = 0;
  handlers: SocketHandlers | null = null;
  readonly serverSocket: SocketLike;

  constructor(
    readonly ws: SimWebSocket,
    readonly inst: Instance,
    readonly sched: Scheduler,
    readonly router: Router,
  ) {
    this.serverSocket = {
      send: (data: string): number => {
        this.toClient(data);
        return 1;
      },
      close: (code?: number): void => this.serverClose(code ?? 1000),
      bufferedAmount: 0,
    };
  }

  toClient(data: string): void {
    Link.onFrame?.(this, false, this.alive ? data : `(dropped) ${data}`);
    if (!this.alive) return;
    const at = Math.max(this.#toClientAt, this.sched.now + this.router.latency());
    this.#toClientAt = at;
    this.sched.setTimeout(() => {
      if (this.alive && this.ws.readyState === 1) this.ws.onmessage?.({ data });
    }, at - this.sched.now);
  }

  /** Tracing hook: every frame, with its direction and whether it will arrive. */
  static onFrame: ((link: Link, toServer: boolean, data: string) => void) | null = null;

  toServer(data: string): void {
    Link.onFrame?.(this, true, this.alive ? data : `(dropped) ${data}`);
    if (!this.alive) return;
    const at = Math.max(this.#toServerAt, this.sched.now + this.router.latency());
    this.#toServerAt = at;
    const deliver = this.inst.wrap(() => {
      if (this.alive) this.handlers?.message(data);
      else Link.onFrame?.(this, true, `(lost in flight) ${data}`);
    });
    this.sched.setTimeout(deliver, at - this.sched.now);
  }

  /** The server closed: both ends see the close after a trip. */
  serverClose(code: number): void {
    if (!this.alive) return;
    Link.onServerClose?.(this, code);
    this.alive = false;
    const lat = this.router.latency();
    const h = this.handlers;
    this.sched.setTimeout(this.inst.wrap(() => h?.close(code, "")), lat);
    this.sched.setTimeout(
      () => this.ws.closed(code),
      Math.max(lat, this.#toClientAt - this.sched.now) + 1,
    );
  }

  /** The client closed: a clean close handshake. */
  clientClose(code: number): void {
    if (!this.alive) return;
    this.alive = false;
    const lat = this.router.latency();
    const at = Math.max(this.#toServerAt, this.sched.now + lat);
    const h = this.handlers;
    this.sched.setTimeout(this.inst.wrap(() => h?.close(code, "")), at - this.sched.now);
    this.sched.setTimeout(() => this.ws.closed(code), 2 * lat + 1);
  }

  /**
   * The network broke. `rst`: both ends learn at once (1006), as when a
   * process dies or a proxy resets; otherwise silence, and heartbeats tell.
   */
  cut(rst: boolean): void {
    if (!this.alive) return;
    this.alive = false;
    if (!rst) {
      this.ws.silent = true;
      return;
    }
    const lat = this.router.latency();
    const h = this.handlers;
    this.sched.setTimeout(this.inst.wrap(() => h?.close(1006, "")), lat);
    this.sched.setTimeout(() => this.ws.closed(1006), lat);
  }
}

/** The WebSocket the PresenceClient gets in the simulation. */
export class SimWebSocket {
  static router: Router;
  static sched: Scheduler;
  static links: Set<Link>;
  readyState = 0;
  readonly url: URL;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number }) => void) | null = null;
  link: Link | null = null;
  /** The link died silently: sends vanish, and no close comes. */
  silent = false;
  /** Set by the harness: which simulated client this socket belongs to. */
  owner: unknown = null;

  constructor(url: string | URL, _protocols?: string | string[]) {
    this.url = new URL(url);
    this.owner = SimWebSocket.nextOwner;
    const sched = SimWebSocket.sched;
    sched.setTimeout(() => void this.#open(), SimWebSocket.router.latency());
  }
  static nextOwner: unknown = null;

  async #open(): Promise<void> {
    const router = SimWebSocket.router;
    const inst = router.route(this);
    if (this.readyState !== 0) return;
    if (!inst || !inst.server || inst.crashed) return this.closed(1006);
    if (inst.stalled) {
      // A stopped process accepts nothing: the dial hangs, then fails.
      SimWebSocket.sched.setTimeout(() => this.closed(1006), 1000);
      return;
    }
    const server = inst.server;
    const admission = await server.admit(new Request(this.url.href), router.remoteAddr(this));
    if (this.readyState !== 0) return;
    if (!admission.ok || inst.crashed || inst.server !== server) return this.closed(1006);
    const link = new Link(this, inst, SimWebSocket.sched, router);
    this.link = link;
    SimWebSocket.links.add(link);
    this.readyState = 1;
    link.handlers = server.open(link.serverSocket, admission.ticket);
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("Socket is not open");
    if (this.silent) return;
    this.link?.toServer(data);
  }

  close(code = 1000): void {
    if (this.readyState > 1) return;
    if (this.readyState === 0) {
      this.readyState = 3;
      SimWebSocket.sched.setTimeout(() => this.closed(code), 1);
      return;
    }
    this.readyState = 2;
    if (this.link && this.link.alive) this.link.clientClose(code);
    else SimWebSocket.sched.setTimeout(() => this.closed(code), 1);
  }

  /** The close event. */
  closed(code: number): void {
    if (this.readyState === 4) return;
    this.readyState = 4; // fired once (3 to the outside)
    if (this.link) SimWebSocket.links.delete(this.link);
    this.onclose?.({ code });
  }
}

// ---------------------------------------------------------------------------
// The store, shared by every instance, with faults.

/** Faults in force on the shared store. */
export interface StoreFaults {
  /** Chance that a call fails before reaching the store. */
  failRate: number;
  /** Chance that a call is slow (tens to hundreds of ms). */
  slowRate: number;
  /** Chance that a feed event is held back, so later ones overtake it. */
  reorderRate: number;
  /** Every call fails until then (virtual ms). */
  outageUntil: number;
  /** Lease renewals of these instances fail until then. */
  leaseBlocked: Map<string, number>;
  /**
   * These instances' store traffic is black-holed until then: calls hang,
   * and are delivered (in order) when the partition heals.
   */
  partitioned: Map<string, number>;
}

/** The one store every instance shares, and the faults on it. */
export class SharedStore {
  inner = new MemoryPresenceStore();
  readonly faults: StoreFaults = {
    failRate: 0,
    slowRate: 0,
    reorderRate: 0,
    outageUntil: 0,
    leaseBlocked: new Map(),
    partitioned: new Map(),
  };
  readonly views = new Set<FaultStore>();
  #watches = new Map<string, { n: number; off: () => void }>();
  #unfeed: () => void;
  resets = 0;

  constructor(readonly sched: Scheduler, readonly rng: Rng) {
    this.#unfeed = this.#attach();
  }

  /** Feed and reaps of the current inner store reach every handle. */
  #attach(): () => void {
    const offFeed = this.inner.subscribe((ev) => this.#fan(ev));
    // A renewal that found a lease reaped: that instance's handle hears it.
    const offReset = this.inner.onReset((id) => {
      for (const v of this.views) if (v.instanceId() === id) v.fireReset();
    });
    return () => {
      offFeed();
      offReset();
    };
  }

  /** Hook: every lease renewal an instance attempts. */
  onRenew: ((inst: number) => void) | null = null;
  /** A presence hook's registration reached the store. */
  onHookRegistered: (() => void) | null = null;
  /** Tracing hook: every snapshot read, by instance index. */
  onSnapshot: ((inst: number, room: string, snap: RoomSnapshot) => void) | null = null;
  /** Tracing hook: every reset delivered, by instance index. */
  onResetFired: ((inst: number) => void) | null = null;
  /** Tracing hook: every event the store emits. */
  tap: ((ev: PresenceEvent) => void) | null = null;

  #fan(ev: PresenceEvent): void {
    this.tap?.(ev);
    for (const v of this.views) v.feed(ev);
  }

  watch(room: string): () => void {
    let w = this.#watches.get(room);
    if (!w) this.#watches.set(room, w = { n: 0, off: this.inner.watchRoom(room) });
    w.n++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--w!.n === 0) {
        w!.off();
        this.#watches.delete(room);
      }
    };
  }

  /** Redis restarted empty: every key is gone, sequences start over. */
  reset(detectWithinMs: number): void {
    this.resets++;
    this.#unfeed();
    void this.inner.close();
    this.inner = new MemoryPresenceStore();
    this.#unfeed = this.#attach();
    for (const [room, w] of this.#watches) w.off = this.inner.watchRoom(room);
    // Each instance is cut off until its client reconnects, which is when it
    // notices: until then its calls fail and its feed is silent. A reconnect
    // lands in the store's latest life, so one that comes after a further
    // restart (late, or held by a stall) notices both at once, as a Redis
    // client does: the later notice is then not repeated.
    for (const v of this.views) {
      v.lastFeedAt = 0;
      const at = this.sched.now + this.rng.int(1, detectWithinMs);
      v.reconnectingUntil = Math.max(v.reconnectingUntil, at);
      this.sched.setTimeout(() => v.fireRestart(), at - this.sched.now);
    }
  }
}

class InjectedFault extends Error {
  constructor(what: string) {
    super(`Injected store fault: ${what}`);
  }
}

/** One instance's handle on the shared store: its calls and feed go through the instance. */
export class FaultStore implements PresenceStore {
  #listeners = new Set<StoreListener>();
  #resetListeners = new Set<(instanceId?: string) => void>();
  lastFeedAt = 0;
  detached = false;
  /** After a store restart, until this handle has reconnected. */
  reconnectingUntil = 0;
  /** Restarts of the shared store this handle has noticed (all of them before it was made). */
  restartsNoticed: number;
  /**
   * The handle's write fence, as `RedisPresenceStore` keeps it: after a
   * restart, writes that create entries wait until the handle has noticed it
   * and then until its instance's lease is renewed in the store's new life.
   * Without it a write sent while reconnecting lands before the lease, and a
   * crash then leaves an entry no sweep reaps (seed 900110).
   */
  #fence: { opened: Promise<void>; open: () => void } | null = null;

  constructor(
    readonly shared: SharedStore,
    readonly inst: Instance,
    readonly instanceId: () => string,
  ) {
    shared.views.add(this);
    this.restartsNoticed = shared.resets;
  }

  /** Stop delivering to this handle (its process died). */
  detach(): void {
    this.detached = true;
    this.shared.views.delete(this);
  }

  feed(ev: PresenceEvent): void {
    const { sched, rng, faults } = this.shared;
    if (sched.now < this.reconnectingUntil) return;
    const life = this.shared.inner;
    let at = Math.max(this.lastFeedAt, sched.now + rng.int(0, 2));
    if (rng.chance(faults.reorderRate)) {
      // Held back: later events overtake it (the reader sees a gap).
      sched.setTimeout(this.inst.wrap(() => this.#deliver(ev, life)), rng.int(20, 300));
      return;
    }
    this.lastFeedAt = at;
    at -= sched.now;
    sched.setTimeout(this.inst.wrap(() => this.#deliver(ev, life)), at);
  }

  /**
   * An event still in flight when its store restarted is lost with the
   * connection that carried it: nothing of a dead Redis arrives after the
   * new one answered (seed 900629: one held back across a restart landed on
   * a view loaded from the new store, as its event of the same seq).
   */
  #deliver(ev: PresenceEvent, life: MemoryPresenceStore): void {
    if (this.detached || this.shared.inner !== life) return;
    for (const l of this.#listeners) l(ev);
  }

  /** This handle reconnected after a store restart: it notices every one so far, once. */
  fireRestart(): void {
    this.inst.wrap(() => {
      if (this.detached || this.restartsNoticed === this.shared.resets) return;
      this.restartsNoticed = this.shared.resets;
      this.reconnectingUntil = Math.min(this.reconnectingUntil, this.shared.sched.now);
      if (this.#fence === null) {
        let open!: () => void;
        const opened = new Promise<void>((resolve) => (open = resolve));
        this.#fence = { opened, open };
      }
      this.fireReset();
    })();
  }

  fireReset(): void {
    if (this.detached) return;
    this.shared.onResetFired?.(this.inst.index);
    this.inst.wrap(() => {
      for (const l of this.#resetListeners) l();
    })();
  }

  /** Writes wait at the fence: until the handle noticed every restart and its lease is back. */
  async #fenced(): Promise<void> {
    while (this.restartsNoticed !== this.shared.resets || this.#fence !== null) {
      if (this.#fence !== null) await this.#fence.opened;
      else await this.#wait(5);
    }
  }

  /** The lease is renewed in the store's current life: writes may go on. */
  #openFence(): void {
    if (this.restartsNoticed !== this.shared.resets) return;
    this.#fence?.open();
    this.#fence = null;
  }

  /** Run a call through the network to the store: latency, faults, and this process's gate. */
  async #call<T>(what: string, fn: (s: MemoryPresenceStore) => Promise<T>): Promise<T> {
    const { sched, rng, faults } = this.shared;
    if (what === "join" || what === "setMetadata") await this.#fenced();
    const slow = rng.chance(faults.slowRate);
    const fail = rng.chance(faults.failRate);
    // A call in flight across a restart fails: its connection broke.
    // Held while partitioned (a partition may be extended, or healed early).
    // A store restart meanwhile breaks the connection the call was on.
    const sentTo = this.shared.inner;
    for (let heal; (heal = faults.partitioned.get(this.instanceId())) && sched.now < heal;) {
      await this.#wait(Math.min(heal - sched.now, 50));
    }
    const inner = this.shared.inner;
    if (inner !== sentTo) throw new InjectedFault(`${what} cut by a store restart`);
    await this.#wait(slow ? rng.int(20, 250) : rng.int(0, 2));
    if (this.shared.inner !== inner) throw new InjectedFault(`${what} cut by a store restart`);
    if (sched.now < faults.outageUntil) throw new InjectedFault(`${what} during an outage`);
    if (sched.now < this.reconnectingUntil) throw new InjectedFault(`${what} while reconnecting`);
    if (fail) throw new InjectedFault(what);
    if (what === "renewLease") {
      const until = faults.leaseBlocked.get(this.instanceId());
      if (until !== undefined && sched.now < until) {
        throw new InjectedFault("lease renewal blocked");
      }
    }
    const result = await fn(inner);
    await this.#wait(rng.int(0, 2));
    if (this.shared.inner !== inner) throw new InjectedFault(`${what} cut by a store restart`);
    return result;
  }

  #wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.shared.sched.setTimeout(this.inst.wrap(resolve), ms);
    });
  }

  renewLease(instanceId: string, ttlMs: number, now: number): Promise<void> {
    this.shared.onRenew?.(this.inst.index);
    const inner = this.shared.inner;
    return this.#call("renewLease", (s) => s.renewLease(instanceId, ttlMs, now)).then(() => {
      if (this.shared.inner === inner) this.#openFence();
    });
  }
  releaseLease(instanceId: string): Promise<void> {
    return this.#call("releaseLease", (s) => s.releaseLease(instanceId));
  }
  join(
    room: string,
    connectionId: string,
    instanceId: string,
    meta: Metadata,
    now: number,
    userId?: string | null,
  ): Promise<PresenceEvent | null> {
    return this.#call("join", (s) => s.join(room, connectionId, instanceId, meta, now, userId));
  }
  leave(
    room: string,
    connectionId: string,
    reason: LeaveReason,
    now: number,
  ): Promise<PresenceEvent | null> {
    return this.#call("leave", (s) => s.leave(room, connectionId, reason, now));
  }
  setState(
    room: string,
    connectionId: string,
    write: StateWrite,
    expiresAt: number | null,
    now: number,
  ): Promise<PresenceEvent | null | "not_member"> {
    return this.#call("setState", (s) => s.setState(room, connectionId, write, expiresAt, now));
  }
  snapshot(room: string, now: number): Promise<RoomSnapshot> {
    return this.#call("snapshot", (s) => s.snapshot(room, now)).then((snap) => {
      this.shared.onSnapshot?.(this.inst.index, room, snap);
      return snap;
    });
  }
  setMetadata(connectionId: string, instanceId: string, meta: Metadata): Promise<void> {
    return this.#call("setMetadata", (s) => s.setMetadata(connectionId, instanceId, meta));
  }
  getMetadata(connectionId: string): Promise<Metadata | null> {
    return this.#call("getMetadata", (s) => s.getMetadata(connectionId));
  }
  deleteMetadata(connectionId: string): Promise<void> {
    return this.#call("deleteMetadata", (s) => s.deleteMetadata(connectionId));
  }
  owned(instanceId: string): Promise<OwnedEntries> {
    return this.#call("owned", (s) => s.owned(instanceId));
  }
  count(room: string, now: number): Promise<RoomCount> {
    return this.#call("count", (s) => s.count(room, now));
  }
  listRooms(options?: ListRoomsOptions): Promise<RoomPage> {
    return this.#call("listRooms", (s) => s.listRooms(options));
  }
  userRooms(userId: string): Promise<string[]> {
    return this.#call("userRooms", (s) => s.userRooms(userId));
  }
  registerHook(name: string, types: readonly HookEventType[]): Promise<void> {
    return this.#call("registerHook", async (s) => {
      await s.registerHook(name, types);
      this.shared.onHookRegistered?.();
    });
  }
  dropHook(name: string): Promise<void> {
    return this.#call("dropHook", (s) => s.dropHook(name));
  }
  claimHooks(name: string, now: number, leaseMs: number, max: number): Promise<HookDelivery[]> {
    return this.#call("claimHooks", (s) => s.claimHooks(name, now, leaseMs, max));
  }
  settleHook(name: string, key: string, retryAt: number | null): Promise<void> {
    return this.#call("settleHook", (s) => s.settleHook(name, key, retryAt));
  }
  subscribe(listener: StoreListener): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }
  watchRoom(room: string): () => void {
    return this.shared.watch(room);
  }
  sweep(now: number): Promise<void> {
    return this.#call("sweep", (s) => s.sweep(now));
  }
  onReset(listener: (instanceId?: string) => void): () => void {
    this.#resetListeners.add(listener);
    return () => void this.#resetListeners.delete(listener);
  }
  close(): Promise<void> {
    this.detach();
    return Promise.resolve();
  }
}
