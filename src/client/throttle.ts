// Throttled state publishing, for high-rate state such as cursors: per room,
// at most one state request per window and at most one in flight; calls in a
// window merge into the next request (latest value wins, patches compose).

import { applyMergePatch, composeMergePatch } from "../merge_patch.ts";
import type { Metadata } from "../protocol.ts";
import {
  PresenceClient,
  type PresenceClientOptions,
  type PresenceResult,
  type PublishOptions,
  type PublishResult,
} from "./client.ts";
import type { PresenceUpdate } from "./sync.ts";

/**
 * Options of {@link ThrottledPresenceClient}: those of `PresenceClient` plus
 * a default window.
 *
 * @example
 * ```ts
 * import type { ThrottledPresenceClientOptions } from "@presently/presently/throttle";
 * const options: ThrottledPresenceClientOptions = { throttleMs: 50 };
 * ```
 */
export interface ThrottledPresenceClientOptions extends PresenceClientOptions {
  /** Default `throttleMs` of every publish (default 0: no throttling). */
  throttleMs?: number;
}

/**
 * Options of {@link ThrottledPresenceClient.publishPresenceState}.
 *
 * @example
 * ```ts
 * import type { ThrottledPublishOptions } from "@presently/presently/throttle";
 * const move: ThrottledPublishOptions<{ x: number; y: number }> = {
 *   patch: { x: 10 },
 *   throttleMs: 50,
 * };
 * ```
 */
export interface ThrottledPublishOptions<State = unknown> extends PublishOptions<State> {
  /**
   * At most one state request per this many ms for this room (default: the
   * client's `throttleMs`). 0 sends every call at once.
   */
  throttleMs?: number;
}

/**
 * What a throttled publish resolves to.
 *
 * @example
 * ```ts
 * import type { ThrottledPublishResult } from "@presently/presently/throttle";
 * const result: ThrottledPublishResult = { success: true, superseded: true };
 * ```
 */
export interface ThrottledPublishResult extends PublishResult {
  /**
   * The call's value was merged into a later call's request, whose result
   * tells how it went.
   */
  superseded?: true;
}

/** A queued publish: its (merged) options and the caller to answer. */
type Queued<S> = { options: PublishOptions<S>; resolve: (r: ThrottledPublishResult) => void };
/** A room's throttle: queued requests, when one was last sent, and whether it is busy. */
type Window<S> = { queue: Queued<S>[]; sentAt: number; busy: boolean };

const SUPERSEDED: ThrottledPublishResult = { success: true, superseded: true };

/**
 * Two publishes as one, or `undefined` when a merge patch cannot express
 * them (then both are sent, in order).
 */
function merge<S>(
  first: PublishOptions<S>,
  next: PublishOptions<S>,
): PublishOptions<S> | undefined {
  const { patch, expireAfter } = next;
  if (patch === undefined) return next;
  const merged: PublishOptions<S> = {};
  if (first.patch === undefined) {
    merged.state = applyMergePatch(first.state ?? null, patch) as S;
  } else {
    merged.patch = composeMergePatch(first.patch, patch);
    if (merged.patch === undefined) return undefined;
  }
  if (expireAfter !== undefined) merged.expireAfter = expireAfter;
  return merged;
}

/**
 * A {@link PresenceClient} whose `publishPresenceState` throttles per room,
 * for state that changes many times a second (a cursor, a selection):
 *
 * - at most one state request per `throttleMs` per room, the first at once;
 * - at most one state request in flight per room;
 * - calls inside a window merge into the next request: a `state` replaces
 *   what is queued, a `patch` merges into it, and the latest `expireAfter`
 *   wins;
 * - a call whose value went out inside a later call's request resolves
 *   `{ success: true, superseded: true }`; the latest call resolves with
 *   the request's result;
 * - `clearPresenceState` and `leaveRoom` drop what is queued for the room
 *   (those calls resolve as superseded), so a queued state cannot undo them.
 *
 * With `throttleMs` 0 (the default) it behaves as `PresenceClient`.
 *
 * @typeParam State The presence state type.
 * @typeParam Meta The connection metadata type.
 *
 * @example Cursors at 60 Hz, at most 20 requests a second
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { presenceHandler } from "@presently/presently/deno";
 * import { ThrottledPresenceClient } from "@presently/presently/throttle";
 *
 * const presence = new PresenceServer();
 * presence.trackPresence("doc");
 * const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, presenceHandler(presence));
 * const client = new ThrottledPresenceClient<{ x: number; y: number }>(
 *   `ws://127.0.0.1:${http.addr.port}/`,
 *   { throttleMs: 50 },
 * );
 * await client.joinRoom("doc");
 * const moves = [];
 * for (let x = 0; x < 10; x++) moves.push(client.publishPresenceState("doc", { state: { x, y: 0 } }));
 * const results = await Promise.all(moves);
 * console.log(results.filter((r) => r.superseded).length); // 8: two requests went out
 * console.log(await presence.getPresenceStates("doc")); // Map { id => { x: 9, y: 0 } }
 *
 * await client.close();
 * await presence.close();
 * await http.shutdown();
 * ```
 */
export class ThrottledPresenceClient<State = unknown, Meta extends Metadata = Metadata>
  extends PresenceClient<State, Meta> {
  #throttleMs: number;
  #windows = new Map<string, Window<State>>();

  /**
   * Create a throttled client; nothing connects until `connect()`.
   *
   * @param url The server's WebSocket URL.
   * @param options As for `PresenceClient`, plus the default `throttleMs`.
   */
  constructor(url: string | URL, options: ThrottledPresenceClientOptions = {}) {
    super(url, options);
    this.#throttleMs = options.throttleMs ?? 0;
  }

  /**
   * Set this connection's state in a room, throttled (see the class).
   *
   * @param room The room name.
   * @param options `state` or `patch`, `expireAfter`, and `throttleMs`.
   * @returns `{ success, seq }`, or `{ success: true, superseded: true }`; never rejects.
   */
  override publishPresenceState(
    room: string,
    options: ThrottledPublishOptions<State>,
  ): Promise<ThrottledPublishResult> {
    const { throttleMs = this.#throttleMs, ...publish } = options;
    if (!(throttleMs > 0)) return super.publishPresenceState(room, publish);
    let window = this.#windows.get(room);
    if (!window) this.#windows.set(room, window = { queue: [], sentAt: 0, busy: false });
    const w = window;
    return new Promise((resolve) => {
      const last = w.queue.at(-1), merged = last && merge(last.options, publish);
      if (last && merged) {
        last.resolve(SUPERSEDED);
        last.options = merged;
        last.resolve = resolve;
      } else w.queue.push({ options: publish, resolve });
      if (!w.busy) this.#flush(room, w, throttleMs);
    });
  }

  /**
   * Clear this connection's state in a room; drops its queued publishes.
   *
   * @param room The room name.
   * @returns `{ success }`; never rejects.
   */
  override clearPresenceState(room: string): Promise<PresenceResult> {
    this.#drop(room);
    return super.clearPresenceState(room);
  }

  /**
   * Leave a room (or release one listener's hold, as `PresenceClient`); a
   * real leave drops the room's queued publishes.
   *
   * @param room The room name.
   * @param onUpdate The listener whose hold to release.
   * @returns `{ success }`; never rejects.
   */
  override leaveRoom(
    room: string,
    onUpdate?: (update: PresenceUpdate<State, Meta>) => void,
  ): Promise<PresenceResult> {
    if (!onUpdate) this.#drop(room);
    return super.leaveRoom(room, onUpdate);
  }

  /** Send the oldest queued request once the window allows and nothing is in flight. */
  #flush(room: string, w: Window<State>, throttleMs: number): void {
    const next = w.queue[0];
    w.busy = next !== undefined && this.#windows.get(room) === w;
    if (!w.busy) return;
    const wait = w.sentAt + throttleMs - Date.now();
    if (wait > 0) {
      setTimeout(() => this.#flush(room, w, throttleMs), wait);
      return;
    }
    w.queue.shift();
    w.sentAt = Date.now();
    void super.publishPresenceState(room, next!.options).then((result) => {
      next!.resolve(result);
      this.#flush(room, w, throttleMs);
    });
  }

  #drop(room: string): void {
    for (const queued of this.#windows.get(room)?.queue ?? []) queued.resolve(SUPERSEDED);
    this.#windows.delete(room);
  }
}
