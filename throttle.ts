/**
 * Throttled state publishing for high-rate state (cursors, selections):
 * {@link ThrottledPresenceClient} is a `PresenceClient` whose
 * `publishPresenceState` takes a per-room `throttleMs` (or a client-wide
 * default), merges the calls of a window (latest value wins, patches
 * compose) and keeps at most one state request in flight per room.
 *
 * A separate entry, so the core client bundle stays small.
 *
 * @example
 * ```ts
 * import { ThrottledPresenceClient } from "@presently/presently/throttle";
 * const client = new ThrottledPresenceClient("wss://example.com/presence", { throttleMs: 50 });
 * addEventListener("pointermove", (e) => {
 *   void client.publishPresenceState("doc", { patch: { cursor: { x: e.clientX, y: e.clientY } } });
 * });
 * ```
 *
 * @module
 */

export {
  ThrottledPresenceClient,
  type ThrottledPresenceClientOptions,
  type ThrottledPublishOptions,
  type ThrottledPublishResult,
} from "./src/client/throttle.ts";
