// The client's internal records: what PresenceClient keeps per request, per
// subscription (and per listener of it), and per joined room. Types only; the
// bundle carries none of this file.

import type { PresenceErrorCode } from "../errors.ts";
import type { Metadata } from "../protocol.ts";
import type { PresenceUpdate, RoomView } from "./sync.ts";
import type { SubscribeOptions } from "./client.ts";

/** An `ok`/`err` answer, or a local failure shaped like `err`. */
export type Answer = {
  t: string;
  code?: PresenceErrorCode;
  message?: string;
  [key: string]: unknown;
};

/** A timer handle on any runtime. */
export type Timer = ReturnType<typeof setTimeout>;

/** A request, queued until the socket is open and then in flight until answered. */
export interface Req {
  /** The frame, with its id. */
  frame: Record<string, unknown>;
  /** Clears the timeout, forgets the request and settles the caller's promise. */
  settle: (a: Answer) => void;
  /** The socket it was last sent on (`hello` sends it again on a new one). */
  socket?: WebSocket;
}

/** A presence listener. */
export type Cb<S, M extends Metadata> = (u: PresenceUpdate<S, M>) => void;

/** A subscription listener: its options, and whether it has its view yet. */
export type Ear = { options: SubscribeOptions; ready?: boolean };

/** One server subscription per room, shared by its listeners. */
export interface Sub<S, M extends Metadata> {
  /** The room as the events so far make it. */
  view: RoomView<S, M>;
  /** The listeners. */
  listeners: Map<Cb<S, M>, Ear>;
  /** What the server subscription covers: the union of the listeners' needs. */
  covers: SubscribeOptions;
  /** The latest `sub` request sent (first or widening). */
  latest?: Promise<Answer>;
  /** A `sub` request is in flight. */
  pending?: boolean;
  /** The server has answered a `sub` once: later ones are resyncs. */
  synced?: boolean;
  /** The count last heard in `count` mode. */
  count?: { connections: number; users: number };
  /** The last count told to the listeners, as `"connections,users"`. */
  told?: string;
}

/** Own state in a room (merged value) and its absolute expiry (`Infinity`: none). */
export type Own = { state: unknown; expiresAt: number } | undefined;
