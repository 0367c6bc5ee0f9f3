/**
 * Presently: presence for realtime apps on Deno and Bun. Tracks who is
 * connected to which room, sends live join/leave events, keeps ephemeral
 * per-connection state that can expire, holds connection metadata, and groups
 * a person's tabs into one user.
 *
 * This entry holds the runtime-free server core and the memory store. Mount
 * the server with `@presently/presently/deno` or `@presently/presently/bun`;
 * connect with `@presently/presently/client`.
 *
 * @example
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * const server = new PresenceServer();
 * server.trackPresence("lobby");
 * await server.close();
 * ```
 *
 * @module
 */

export { PresenceServer, type PresenceStats } from "./src/server/server.ts";
export {
  DEFAULT_LIMITS,
  type HeartbeatOptions,
  type InferState,
  type PresenceConnection,
  type PresenceLimits,
  type PresenceServerOptions,
  type StandardSchemaLike,
  type StateValidator,
  type TrackPresenceOptions,
} from "./src/server/options.ts";
export type { Admission, SocketHandlers, SocketLike, TopicPublisher } from "./src/server/socket.ts";
export { MemoryPresenceStore, type MemoryPresenceStoreOptions } from "./src/store/memory.ts";
export type {
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
} from "./src/store/types.ts";
export type {
  AddMemberOptions,
  PresenceMember,
  RoomDetails,
  RoomMember,
  StateUpdate,
} from "./src/server/queries.ts";
export type {
  PresenceHookEvent,
  PresenceHookHandler,
  PresenceHookOptions,
} from "./src/server/hooks.ts";
export {
  verifyWebhook,
  webhook,
  WEBHOOK_HEADERS,
  type WebhookOptions,
} from "./src/server/webhook.ts";
export {
  presenceHttpHandler,
  type PresenceHttpOptions,
  type PresenceQuery,
} from "./src/server/http.ts";
export { PresenceError, type PresenceErrorCode } from "./src/errors.ts";
export { type Clock, ManualClock, systemClock, type TimerHandle } from "./src/clock.ts";
export {
  CloseCode,
  type Json,
  type Metadata,
  type PresentEntry,
  PROTOCOL_VERSION,
  type WireEvent,
  type WireSnapshot,
} from "./src/protocol.ts";
