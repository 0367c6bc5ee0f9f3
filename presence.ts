/**
 * User-level presence and framework bindings, built on
 * `@presently/presently/client`:
 *
 * - {@link roomStore}: a room as a `{ subscribe, getSnapshot }` store with
 *   `self`, `others`, `users`, `count`, `status` and `update`. It works
 *   unchanged with React's `useSyncExternalStore`, Svelte's `$store`, Vue
 *   and Solid; the first subscriber joins, the last one leaving leaves.
 * - {@link createPresence}: one room's connections grouped into users, with
 *   a callback.
 *
 * Both hold the room through the client's shared, reference-counted join and
 * subscription, so they coexist with each other and with `client.presence()`
 * on one room. This entry imports no framework.
 *
 * @example A store per room, any framework
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * import { presenceHandler } from "@presently/presently/deno";
 * import { PresenceClient } from "@presently/presently/client";
 * import { roomStore } from "@presently/presently/presence";
 *
 * const presence = new PresenceServer();
 * presence.trackPresence("doc");
 * const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, presenceHandler(presence));
 * const client = new PresenceClient(`ws://127.0.0.1:${http.addr.port}/`);
 *
 * const store = roomStore(client, "doc");
 * const off = store.subscribe((s) => console.log(s.joined, s.count));
 * await new Promise((r) => setTimeout(r, 100));
 * off();
 *
 * await client.close();
 * await presence.close();
 * await http.shutdown();
 * ```
 *
 * @module
 */

export {
  createPresence,
  type CreatePresenceOptions,
  type Presence,
  type PresenceUser,
  type UserIdentifiers,
} from "./src/client/presence.ts";
export {
  type RoomMember,
  type RoomSnapshot,
  type RoomStore,
  roomStore,
  type RoomStoreOptions,
} from "./src/client/room_store.ts";
