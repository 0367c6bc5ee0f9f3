// One client connection: identity, socket, rooms, subscriptions, request
// queue and rate limiting. Survives its socket during the resume grace window.
//
// The lifecycle (the code is in server.ts; this is the one place it is told):
//
//   admitted --open()--> ATTACHED --socket closes--> DETACHED --resume--> ATTACHED
//                            |     (not cleanly, with      |
//                            |      leaveGraceMs > 0)      | grace over, or
//                            |                             | disconnect()
//                            +--clean close, kill, ------->+--> FINISHED
//                               disconnect(), or no grace
//
// - ATTACHED (`socket !== null`): frames go through `#onMessage` into the
//   request queue (`inbox`), one at a time in arrival order; subscriptions
//   receive flushed frames (`open()`, `#resume`).
// - DETACHED (`socket === null`, in the server's `detached` set since
//   `detachedAt`): the socket went away without a clean close. The
//   connection keeps its rooms, states and subscriptions (marked stale) and
//   stays present to everyone else. A client that dials again with its
//   resume token within `leaveGraceMs` gets the same id back, a rotated
//   token, and fresh snapshots (`#detach`, `#resume`).
// - FINISHED (`finished === true`): `#finish` queues, behind whatever the
//   connection had already asked, the leaves of all its rooms (one `leave`
//   event each, reason "close"; "leave" for a member's `remove()`,
//   "expired" at its TTL),
//   drops its subscriptions and metadata, and forgets it. Its resume token
//   is dropped at once, so no resume can slip in. A leave the store refused
//   is retried until it holds.
// - A server-owned member (`addMember`) is a connection with no socket that
//   is never detached: it is ATTACHED to nothing and FINISHED by `remove()`,
//   its TTL, or its instance's reap.

import type { ClientFrame, Metadata } from "../protocol.ts";
import type { PresenceConnection } from "./options.ts";
import type { Subscription } from "./room.ts";
import type { SocketLike } from "./socket.ts";

/** UTF-8 bytes per UTF-16 code unit, at most (a surrogate pair: 4 bytes for 2). */
const MAX_UTF8_PER_CHAR = 3;

/**
 * The `dupes` of a connection that was never resumed: shared, only ever read
 * and deleted from (a resume gives the connection its own set).
 */
const NO_DUPES: Set<number> = new Set();

/**
 * `Connection.rooms`, made on first read (the server itself never needs it):
 * kept aside, so the connections that never have one hold no field for it.
 */
const ROOM_SETS = new WeakMap<Connection, Set<string>>();

/** The subscriptions of a connection that has none. */
const NO_SUBS: ReadonlyArray<readonly [string, Subscription]> = [];

/** A room record's `own` when the connection holds no own state there. */
const NO_OWN: unique symbol = Symbol("no own state");

/** What a connection holds per room (see `Connection.#links`). */
interface RoomLink {
  readonly room: string;
  /** Joined (in `rooms`). */
  member: boolean;
  sub: Subscription | undefined;
  /** Its own state as last written; `NO_OWN` when it holds none. */
  own: unknown;
  expiresAt: number | undefined;
  written: boolean;
}

/**
 * Work queued on a connection, run one at a time in arrival order: a request
 * (pongs are handled on arrival, never queued) or a server-side task.
 */
export type ConnectionTask = Exclude<ClientFrame, { op: "pong" }> | (() => Promise<void>);

/**
 * A connection's refusal and malformed-frame counts, each in a fixed window.
 * Most connections never need one: it is made at the first.
 */
class Abuse {
  refused = 0;
  bad = 0;
  constructor(public refusedSince: number, public badSince = refusedSince) {}
}

/** Server-side state of one connection. */
export class Connection implements PresenceConnection {
  readonly id: string;
  /**
   * The secret of its resume token (rotated on every resume); the token is
   * `<id>.<secret>`. `""`: not resumable.
   */
  secret: string;
  metadata: Metadata;
  publicMeta: Metadata;
  userId: string | null;
  /**
   * Per room: whether this connection joined it, its subscription, its own
   * state (and expiry) as last written, and whether the client wrote it.
   * That is what the connection means to be, kept apart from what the store
   * says, so a store reset or a reap can be undone. No record, one record
   * (most connections), or a map of them by room: in Bun a Map or Set holding
   * one entry costs about 300 bytes, so a connection in one room holds no
   * collection at all.
   */
  #links: RoomLink | Map<string, RoomLink> | null = null;
  #roomCount = 0;
  #subCount = 0;
  /** Requests marked as a restore (`rs`) that may pass the rate limit once. */
  credit: number;
  /** A re-registration is queued or waiting to retry. */
  reregistering = false;
  /** Another re-registration was asked for while one ran. */
  reregisterAgain = false;
  socket: SocketLike | null;
  readonly remoteAddr: string | null;
  readonly url: string;
  lastSeen: number;
  /**
   * The most the socket's backlog can be, in bytes: what `bufferedAmount`
   * said when last read, plus every frame sent since (each character at
   * most 3 bytes of UTF-8), including what the connection's rooms published
   * to their native topics (added by the sweep). `bufferedAmount` is a
   * runtime call: it is read only once this bound could cross a limit.
   */
  backlogBound = 0;
  /** When the socket was lost abruptly; -1 while attached. */
  detachedAt = -1;
  /** Set once the connection is being torn down for good. */
  finished = false;
  /**
   * For a server-owned member (`addMember`, no socket ever): when it lapses
   * unless renewed (`Infinity`: never). `null` for a client connection.
   */
  memberExpiresAt: number | null = null;
  readonly inbox: ConnectionTask[] = [];
  /** The id of the request being handled, if any (with the inbox: what is not answered yet). */
  current: number | null = null;
  /** Ids a resume found pending: their copies re-sent by the client are dropped. */
  dupes: Set<number> = NO_DUPES;
  busy = false;
  // Token bucket.
  tokens: number;
  refilledAt: number;
  /** Refusals and malformed frames counted in their windows: made at the first one. */
  #abuse: Abuse | null = null;

  constructor(init: {
    id: string;
    secret: string;
    metadata: Metadata;
    publicMeta: Metadata;
    userId: string | null;
    socket: SocketLike | null;
    remoteAddr: string | null;
    url: string;
    now: number;
    burst: number;
    credit: number;
  }) {
    this.id = init.id;
    this.secret = init.secret;
    this.metadata = init.metadata;
    this.publicMeta = init.publicMeta;
    this.userId = init.userId;
    this.socket = init.socket;
    this.remoteAddr = init.remoteAddr;
    this.url = init.url;
    this.lastSeen = init.now;
    this.tokens = init.burst;
    this.credit = init.credit;
    this.refilledAt = init.now;
  }

  /**
   * At a resume: remember the ids received and not answered yet (queued or
   * being handled), whose copies the client sends again, to drop them.
   */
  takeDupes(): void {
    let ids: Set<number> | null = null;
    if (this.current !== null) (ids ??= new Set()).add(this.current);
    for (const task of this.inbox) if (typeof task !== "function") (ids ??= new Set()).add(task.id);
    this.dupes = ids ?? NO_DUPES;
  }

  /** The room's record, if any. */
  #find(room: string): RoomLink | undefined {
    const links = this.#links;
    if (links === null) return undefined;
    if (links instanceof Map) return links.get(room);
    return links.room === room ? links : undefined;
  }

  /** Every room record (a copy: safe to change them while iterating). */
  #all(): RoomLink[] {
    const links = this.#links;
    if (links === null) return [];
    return links instanceof Map ? [...links.values()] : [links];
  }

  /** The room's record, made on first use. */
  #link(room: string): RoomLink {
    let link = this.#find(room);
    if (link) return link;
    link = {
      room,
      member: false,
      sub: undefined,
      own: NO_OWN,
      expiresAt: undefined,
      written: false,
    };
    const links = this.#links;
    if (links === null) this.#links = link;
    else if (links instanceof Map) links.set(room, link);
    else this.#links = new Map([[links.room, links], [room, link]]);
    return link;
  }

  /** Drop the room's record once it holds nothing (back to no map for one record). */
  #prune(link: RoomLink): void {
    if (link.member || link.sub || link.own !== NO_OWN || link.written) return;
    const links = this.#links;
    if (links === link) this.#links = null;
    else if (links instanceof Map && links.delete(link.room) && links.size <= 1) {
      this.#links = links.size === 0 ? null : links.values().next().value!;
    }
  }

  /** Rooms this connection has joined (a live set, made on first read). */
  get rooms(): ReadonlySet<string> {
    let set = ROOM_SETS.get(this);
    if (set === undefined) ROOM_SETS.set(this, set = new Set(this.roomNames()));
    return set;
  }

  /** Whether this connection has joined the room. */
  inRoom(room: string): boolean {
    return this.#find(room)?.member === true;
  }

  /** How many rooms this connection has joined. */
  get roomCount(): number {
    return this.#roomCount;
  }

  /** The joined rooms (a copy: safe to join and leave while iterating). */
  roomNames(): string[] {
    const out: string[] = [];
    for (const link of this.#all()) if (link.member) out.push(link.room);
    return out;
  }

  /** Mark the room joined; false if it already was. */
  addRoom(room: string): boolean {
    const link = this.#link(room);
    if (link.member) return false;
    link.member = true;
    this.#roomCount++;
    ROOM_SETS.get(this)?.add(room);
    return true;
  }

  /** Mark the room left; false if it was not joined. */
  removeRoom(room: string): boolean {
    const link = this.#find(room);
    if (!link?.member) return false;
    link.member = false;
    this.#roomCount--;
    ROOM_SETS.get(this)?.delete(room);
    this.#prune(link);
    return true;
  }

  /** The subscription to a room, if any. */
  sub(room: string): Subscription | undefined {
    return this.#find(room)?.sub;
  }

  /** Set the subscription to a room (replacing any). */
  setSub(room: string, sub: Subscription): void {
    const link = this.#link(room);
    if (!link.sub) this.#subCount++;
    link.sub = sub;
  }

  /** Remove the subscription to a room; returns it. */
  deleteSub(room: string): Subscription | undefined {
    const link = this.#find(room);
    const sub = link?.sub;
    if (!link || !sub) return undefined;
    link.sub = undefined;
    this.#subCount--;
    this.#prune(link);
    return sub;
  }

  /** How many rooms this connection subscribes to. */
  get subCount(): number {
    return this.#subCount;
  }

  /** The subscriptions, by room (a copy: safe to change them while iterating). */
  subs(): ReadonlyArray<readonly [string, Subscription]> {
    if (this.#subCount === 0) return NO_SUBS;
    const out: Array<[string, Subscription]> = [];
    for (const link of this.#all()) if (link.sub) out.push([link.room, link.sub]);
    return out;
  }

  /** Whether this connection holds an own state in the room. */
  hasOwn(room: string): boolean {
    const link = this.#find(room);
    return link !== undefined && link.own !== NO_OWN;
  }

  /** The own state in the room, as last written (`undefined`: none). */
  ownState(room: string): unknown {
    const own = this.#find(room)?.own;
    return own === NO_OWN ? undefined : own;
  }

  /** The own state's expiry (clock ms), when it has one. */
  ownExpiresAt(room: string): number | undefined {
    return this.#find(room)?.expiresAt;
  }

  /** Remember the own state in a room and its expiry (`null`: none). */
  setOwn(room: string, state: unknown, expiresAt: number | null): void {
    const link = this.#link(room);
    link.own = state;
    link.expiresAt = expiresAt ?? undefined;
  }

  /** Forget the own state in a room. */
  clearOwn(room: string): void {
    const link = this.#find(room);
    if (!link) return;
    link.own = NO_OWN;
    link.expiresAt = undefined;
    this.#prune(link);
  }

  /** Whether the client wrote this room's state on this connection (not as a restore). */
  wroteState(room: string): boolean {
    return this.#find(room)?.written === true;
  }

  /** Note that the client wrote this room's state on this connection. */
  markWritten(room: string): void {
    this.#link(room).written = true;
  }

  /** Send a frame; false when there is no socket or the runtime dropped it. */
  send(data: string): boolean {
    const socket = this.socket;
    if (!socket) return false;
    try {
      if (socket.send(data) === 0) return false;
    } catch {
      return false;
    }
    this.countSent(data.length);
    return true;
  }

  /** Count `chars` characters sent to the socket outside send() (a topic publish). */
  countSent(chars: number): void {
    this.backlogBound += MAX_UTF8_PER_CHAR * chars;
  }

  /** Whether the backlog could exceed `limit` bytes once `chars` more are sent. */
  mayExceed(limit: number, chars = 0): boolean {
    return this.backlogBound + MAX_UTF8_PER_CHAR * chars > limit;
  }

  /**
   * Whether the socket's backlog is over `limit` bytes: read (a runtime
   * call) only once the bound could be over it.
   */
  backlogOver(limit: number): boolean {
    return this.mayExceed(limit) && this.readBacklog() > limit;
  }

  /** Read the socket's real backlog (a runtime call); the bound starts again from it. */
  readBacklog(): number {
    return this.backlogBound = this.socket?.bufferedAmount ?? 0;
  }

  /** Take one request token; false when rate limited. */
  take(now: number, rate: number, burst: number): boolean {
    const elapsed = now - this.refilledAt;
    if (elapsed > 0) {
      this.tokens = Math.min(burst, this.tokens + (elapsed * rate) / 1000);
      this.refilledAt = now;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }

  /** Count a refusal in a 1 s window (from the first one in it); true when past `limit`. */
  refused(now: number, limit: number): boolean {
    const a = this.#abuse ??= new Abuse(now);
    if (now - a.refusedSince >= 1000) {
      a.refusedSince = now;
      a.refused = 0;
    }
    return ++a.refused > limit;
  }

  /** Count a malformed frame in a 10 s window (from the first one in it); true when past `limit`. */
  bad(now: number, limit: number): boolean {
    const a = this.#abuse ??= new Abuse(now);
    if (now - a.badSince >= 10_000) {
      a.badSince = now;
      a.bad = 0;
    }
    return ++a.bad > limit;
  }
}
