/**
 * The Presently client, for browsers, Deno and Bun: connect to a Presently
 * server, join rooms, watch who is present, publish ephemeral per-connection
 * state, and group connections into users.
 *
 * - {@link PresenceClient}: the connection, with requests, reconnect/resume
 *   and heartbeat.
 * - User-level views and framework bindings (`createPresence`, `roomStore`)
 *   live in the `@presently/presently/presence` entry, built on this one.
 * - {@link applySnapshot}, {@link applyEvent}, {@link createRoomView}: the pure
 *   sync functions the client is built on.
 *
 * This entry imports no server or store code.
 *
 * @example Connect, join a room, watch it and publish a state
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { presenceHandler } from "@presently/presently/deno";
 * import { PresenceClient } from "@presently/presently/client";
 *
 * // A local server to talk to.
 * const presence = new PresenceServer();
 * presence.trackPresence("lobby");
 * const handler = presenceHandler(presence);
 * const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
 *
 * const client = new PresenceClient(`ws://127.0.0.1:${http.addr.port}/`);
 * await client.connect();
 * await client.joinRoom("lobby", (update) => {
 *   if (update.type === "join") console.log("joined:", update.connectionId);
 *   if (update.type === "leave") console.log("left:", update.connectionId);
 * });
 * await client.publishPresenceState("lobby", { state: { status: "typing" }, expireAfter: 8000 });
 *
 * await client.close();
 * await presence.close();
 * await http.shutdown();
 * ```
 *
 * @module
 */

export {
  type AuthParams,
  type JoinOptions,
  type JoinResult,
  PresenceClient,
  type PresenceClientOptions,
  type PresenceResult,
  type PresenceStatus,
  type PresenceSync,
  type PresenceView,
  type PublishOptions,
  type PublishResult,
  type ReconnectOptions,
  type RestoreFailure,
  type SubscribeOptions,
  type SubscribeResult,
} from "./src/client/client.ts";
export {
  applyEvent,
  type ApplyEventResult,
  applySnapshot,
  createRoomView,
  type PresenceUpdate,
  type RoomView,
} from "./src/client/sync.ts";
export { applyMergePatch } from "./src/merge_patch.ts";
export { PresenceError, type PresenceErrorCode } from "./src/errors.ts";
export type { Json, Metadata, PresentEntry, WireEvent, WireSnapshot } from "./src/protocol.ts";
