// Presence hooks: every event of the matching rooms, delivered once across the
// cluster. The store queues each event in the same atomic step that makes it;
// any instance claims due events for a lease, calls the handler, and settles
// them (delivered, or due again after a backoff). A crash between the call and
// the settle gives one more delivery, with the same idempotency key.

import type { Clock, TimerHandle } from "../clock.ts";
import type { HookEventType, PresenceEvent, PresenceStore } from "../store/types.ts";

/**
 * One delivery of a presence hook. `key` identifies the event: the same on
 * every retry and on every instance, so a receiver can drop repeats.
 *
 * @example
 * ```ts
 * import { PresenceServer, type PresenceHookEvent } from "@presently/presently";
 * const server = new PresenceServer();
 * const seen = new Set<string>();
 * server.onPresence((hook: PresenceHookEvent) => {
 *   if (seen.has(hook.key)) return; // a retry that already took effect
 *   seen.add(hook.key);
 *   console.log(hook.type, hook.room, hook.userId ?? hook.connectionId);
 * });
 * await server.close();
 * ```
 */
export interface PresenceHookEvent {
  /** The idempotency key: `<room>:<seq>:<timestamp>`. */
  key: string;
  /** 1 on the first delivery, then 2, 3, ... after failures or a crash. */
  attempt: number;
  /** `"user"`: the user's first connection in or last out of the room. */
  level: "connection" | "user";
  /** What happened. At user level, only `join` and `leave`. */
  type: "join" | "leave" | "state";
  /** The room. */
  room: string;
  /** The connection the event is about. */
  connectionId: string;
  /** Its user (`userKey`), or `null` when it has none. */
  userId: string | null;
  /** The room's sequence number of the event. */
  seq: number;
  /** When the event was made, in ms since the epoch. */
  timestamp: number;
  /** The store event itself (for `state`, the new state is `event.state`). */
  event: PresenceEvent;
}

/**
 * A presence hook handler. Resolving marks the event delivered; throwing (or
 * rejecting) retries it later with backoff and the same `key`.
 *
 * @example
 * ```ts
 * import { PresenceServer, type PresenceHookHandler } from "@presently/presently";
 * const lastOut: PresenceHookHandler = async (hook) => {
 *   if (hook.type === "leave") console.log(`${hook.userId} left ${hook.room}`);
 * };
 * const server = new PresenceServer();
 * server.onPresence(lastOut, { level: "user" });
 * await server.close();
 * ```
 */
export type PresenceHookHandler = (event: PresenceHookEvent) => void | Promise<void>;

/**
 * Options of {@linkcode PresenceServer.onPresence}.
 *
 * @example
 * ```ts
 * import { PresenceServer, type PresenceHookOptions } from "@presently/presently";
 * const options: PresenceHookOptions = {
 *   name: "audit",
 *   rooms: /^doc:/,
 *   level: "user",
 *   retry: { baseMs: 500, maxMs: 30_000 },
 * };
 * const server = new PresenceServer();
 * server.onPresence((hook) => console.log(hook.key), options);
 * await server.close();
 * ```
 */
export interface PresenceHookOptions {
  /**
   * The hook's queue in the store: the same name on every instance makes one
   * hook, each event delivered once between them. Default `"presence"`
   * (connection level) or `"presence:user"` (user level).
   */
  name?: string;
  /** Which rooms: a name, a pattern or a predicate. Default: every room. */
  rooms?: string | RegExp | ((room: string) => boolean);
  /** `"connection"` (default): every event. `"user"`: a user's first join and last leave. */
  level?: "connection" | "user";
  /**
   * Event types queued at connection level. Default `["join", "leave", "state"]`;
   * leave `state` out for rooms with high-rate states (cursors).
   */
  types?: HookEventType[];
  /** Backoff after a failure: `baseMs` doubling per attempt up to `maxMs`. Default 1000 and 60000. */
  retry?: { baseMs?: number; maxMs?: number };
  /**
   * How long a claimed event stays with this instance before another may
   * take it (ms). A handler slower than this may see the event twice.
   * Default 30000.
   */
  leaseMs?: number;
  /** How often to look for events made elsewhere (ms). Default 250. */
  pollMs?: number;
}

/** What a hook runner needs from its server. */
export interface HookHost {
  store: PresenceStore;
  clock: Clock;
  /** Report a failure (store or handler). */
  report(message: string, cause: unknown): void;
  /** Run a store call under the server's store-call deadline. */
  timed<T>(call: () => Promise<T>): Promise<T>;
}

const BATCH = 16;

/** One hook on this instance: registers its queue and drains it. */
export class HookRunner {
  readonly name: string;
  readonly #host: HookHost;
  readonly #handler: PresenceHookHandler;
  readonly #level: "connection" | "user";
  readonly #types: HookEventType[];
  readonly #match: (room: string) => boolean;
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #leaseMs: number;
  readonly #pollMs: number;
  #registered: Promise<void> | null = null;
  #timer: TimerHandle | null = null;
  #running: Promise<void> | null = null;
  #again = false;
  #stopped = false;

  constructor(host: HookHost, handler: PresenceHookHandler, options: PresenceHookOptions) {
    this.#host = host;
    this.#handler = handler;
    this.#level = options.level ?? "connection";
    this.name = options.name ?? (this.#level === "user" ? "presence:user" : "presence");
    this.#types = this.#level === "user"
      ? ["join", "leave"]
      : options.types ?? ["join", "leave", "state"];
    const rooms = options.rooms;
    this.#match = rooms === undefined
      ? () => true
      : typeof rooms === "string"
      ? (room) => room === rooms
      : rooms instanceof RegExp
      ? (room) => {
        rooms.lastIndex = 0;
        return rooms.test(room);
      }
      : rooms;
    this.#baseMs = options.retry?.baseMs ?? 1000;
    this.#maxMs = options.retry?.maxMs ?? 60_000;
    this.#leaseMs = options.leaseMs ?? 30_000;
    this.#pollMs = options.pollMs ?? 250;
  }

  /** Register the queue (again, after a store reset) and start draining. */
  start(): void {
    this.#registered = this.#register();
    this.kick();
  }

  async #register(): Promise<void> {
    for (let attempt = 0; !this.#stopped; attempt++) {
      try {
        await this.#host.timed(() => this.#host.store.registerHook(this.name, this.#types));
        return;
      } catch (e) {
        this.#host.report(`Presence hook "${this.name}": registration failed, retrying`, e);
        await this.#sleep(Math.min(this.#maxMs, 100 * 2 ** attempt));
      }
    }
  }

  /** Drain now (an event was just made), or once the drain under way ends. */
  kick(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    if (this.#timer !== null) this.#host.clock.clearTimeout(this.#timer);
    this.#timer = null;
    this.#running = this.#drain().finally(() => {
      this.#running = null;
      if (this.#stopped) return;
      if (this.#again) {
        this.#again = false;
        this.kick();
      } else this.#timer = this.#host.clock.setTimeout(() => this.kick(), this.#pollMs);
    });
  }

  async #drain(): Promise<void> {
    await this.#registered;
    for (;;) {
      if (this.#stopped) return;
      let batch;
      try {
        batch = await this.#host.timed(() =>
          this.#host.store.claimHooks(this.name, this.#host.clock.now(), this.#leaseMs, BATCH)
        );
      } catch (e) {
        this.#host.report(`Presence hook "${this.name}": claim failed`, e);
        return;
      }
      for (const d of batch) {
        const hook = this.#deliverable(d.key, d.attempt, d.event);
        let retryAt: number | null = null;
        if (hook !== null && !this.#stopped) {
          try {
            await this.#handler(hook);
          } catch (e) {
            const wait = Math.min(this.#maxMs, this.#baseMs * 2 ** (d.attempt - 1));
            retryAt = this.#host.clock.now() + wait;
            this.#host.report(
              `Presence hook "${this.name}": handler failed on ${d.key} (attempt ${d.attempt}), retrying in ${wait} ms`,
              e,
            );
          }
        }
        // Stopped before the call: leave it claimed; its lease lapses for others.
        if (hook !== null && this.#stopped && retryAt === null) continue;
        try {
          await this.#host.timed(() => this.#host.store.settleHook(this.name, d.key, retryAt));
        } catch (e) {
          // Unsettled: due again when its lease lapses (one more delivery).
          this.#host.report(`Presence hook "${this.name}": settle failed on ${d.key}`, e);
        }
      }
      if (batch.length < BATCH) return;
    }
  }

  /** The delivery for the handler, or `null` when this hook does not take it. */
  #deliverable(key: string, attempt: number, event: PresenceEvent): PresenceHookEvent | null {
    if (!this.#match(event.room)) return null;
    const user = event.type === "state" ? null : event.user ?? null;
    if (this.#level === "user") {
      // A member without a user is a user of its own.
      if (event.type === "join" && user !== null && !event.firstOfUser) return null;
      if (event.type === "leave" && user !== null && !event.lastOfUser) return null;
      if (event.type === "state") return null;
    } else if (!this.#types.includes(event.type)) return null;
    return {
      key,
      attempt,
      level: this.#level,
      type: event.type,
      room: event.room,
      connectionId: event.connectionId,
      userId: user,
      seq: event.seq,
      timestamp: event.timestamp,
      event,
    };
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#host.clock.setTimeout(resolve, ms));
  }

  /** Stop draining; resolves once the delivery under way has ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) this.#host.clock.clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }
}
