// Types of the server-side presence API: cluster-wide room queries and
// server-owned members. The answers come from the store, so they hold across
// every instance that shares it.

import type { Metadata } from "../protocol.ts";
import type { RoomCount } from "../store/types.ts";

/**
 * One member of a room, as {@linkcode PresenceServer.getRoom} reports it.
 *
 * @example
 * ```ts
 * import { PresenceServer, type RoomMember } from "@presently/presently";
 * const server = new PresenceServer({ userKey: "userId" });
 * server.trackPresence("lobby");
 * await server.addMember("lobby", { metadata: { userId: "bot" }, state: "idle" });
 * const [member]: RoomMember[] = (await server.getRoom("lobby")).members;
 * console.log(member?.userId, member?.metadata, member?.state); // "bot" { userId: "bot" } "idle"
 * await server.close();
 * ```
 */
export interface RoomMember {
  /** The connection id (or the server-owned member's id). */
  connectionId: string;
  /** Its user (`userKey`), or `null`. */
  userId: string | null;
  /** Its public metadata, as it joined. */
  metadata: Metadata;
  /** Its state in the room, or `null`. */
  state: unknown;
}

/**
 * A room as the store holds it: members in join order, and the counts.
 *
 * @example
 * ```ts
 * import { PresenceServer, type RoomDetails } from "@presently/presently";
 * const server = new PresenceServer();
 * server.trackPresence("lobby");
 * await server.addMember("lobby", { metadata: { name: "Helper" } });
 * const room: RoomDetails = await server.getRoom("lobby");
 * console.log(room.count); // { connections: 1, users: 1 }
 * await server.close();
 * ```
 */
export interface RoomDetails {
  /** The room name. */
  room: string;
  /** The room's sequence number the answer reflects. */
  seq: number;
  /** Members in join order. */
  members: RoomMember[];
  /** Connections and distinct users, as in {@linkcode PresenceServer.count}. */
  count: RoomCount;
}

/**
 * A state written by the server: `state` replaces, `patch` merges (RFC 7386);
 * `expireAfter` clears it after that many ms.
 *
 * @example
 * ```ts
 * import type { StateUpdate } from "@presently/presently";
 * const typing: StateUpdate = { patch: { typing: true }, expireAfter: 5_000 };
 * console.log(typing.expireAfter); // 5000
 * ```
 */
export type StateUpdate =
  | { state: unknown; patch?: undefined; expireAfter?: number }
  | { patch: unknown; state?: undefined; expireAfter?: number };

/**
 * Options of {@linkcode PresenceServer.addMember}.
 *
 * @example
 * ```ts
 * import { type AddMemberOptions, PresenceServer } from "@presently/presently";
 * const options: AddMemberOptions = {
 *   metadata: { name: "Support bot", kind: "bot" },
 *   userId: "bot:support",
 *   state: { status: "listening" },
 *   ttlMs: 30_000,
 * };
 * const server = new PresenceServer();
 * server.trackPresence("support");
 * const bot = await server.addMember("support", options);
 * await bot.remove();
 * await server.close();
 * ```
 */
export interface AddMemberOptions {
  /** Its metadata (`privateMetadata` and `publicMetadata` apply, as for a connection). Default `{}`. */
  metadata?: Metadata;
  /** Its user. Default: from the metadata through `userKey`, else none. */
  userId?: string;
  /** Its state on joining. */
  state?: unknown;
  /** When its state clears, in ms after joining. */
  expireAfter?: number;
  /**
   * It leaves (reason `"expired"`) this long after joining or its last
   * `renew()`. Default 60000; `null` keeps it until `remove()` or until
   * this instance stops (or is reaped).
   */
  ttlMs?: number | null;
  /** Its id. Default a random `srv_…` id. */
  id?: string;
}

/**
 * A server-owned member of a room (a bot, an AI agent, a bridged phone call):
 * an ordinary member to everyone watching, with no socket. It belongs to the
 * instance that added it and is reaped with it.
 *
 * @example
 * ```ts
 * import { PresenceServer } from "@presently/presently";
 * const server = new PresenceServer();
 * server.trackPresence("doc:1");
 * const agent = await server.addMember("doc:1", { metadata: { name: "Agent" } });
 * await agent.setState({ status: "thinking" });
 * await agent.patch({ line: 12 });
 * console.log((await server.getRoom("doc:1")).members[0]?.state); // { status: "thinking", line: 12 }
 * agent.renew(); // another ttlMs from now
 * await agent.remove();
 * await server.close();
 * ```
 */
export interface PresenceMember {
  /** Its id (the connection id others see). */
  readonly id: string;
  /** The room. */
  readonly room: string;
  /** Replace its state (`expireAfter`: clear it after that many ms). */
  setState(state: unknown, options?: { expireAfter?: number }): Promise<void>;
  /** Merge-patch its state (RFC 7386). */
  patch(patch: unknown, options?: { expireAfter?: number }): Promise<void>;
  /** Clear its state. */
  clear(): Promise<void>;
  /** Push its TTL out: `ttlMs` from now (default: the one it was added with). */
  renew(ttlMs?: number): void;
  /** Take it out of the room. */
  remove(): Promise<void>;
}
