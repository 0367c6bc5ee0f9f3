// Wire constants shared by the server and the browser client: the protocol
// version and the close codes. Kept apart from protocol.ts so the client
// takes only these (each close code is also a plain const, which a bundler
// inlines: importing them costs the client nothing at load).

/** Close code: normal close (client or server called `close()`). */
export const CLOSE_NORMAL = 1000;
/** Close code: the server is shutting down. */
const CLOSE_GOING_AWAY = 1001;
/** Close code: the client spoke an unsupported protocol version. */
export const CLOSE_BAD_VERSION = 4400;
/** Close code: revoked by the server, or replaced by a resume of the same connection. */
export const CLOSE_UNAUTHORIZED = 4401;
/** Close code: no sign of life within the heartbeat deadline. */
export const CLOSE_HEARTBEAT_TIMEOUT = 4408;
/** Close code 1006: the socket failed without a close frame (never sent; reported locally). */
export const CLOSE_ABNORMAL = 1006;

/**
 * The protocol version spoken by this build (`?v=` on the socket URL).
 *
 * @example
 * ```ts
 * import { PROTOCOL_VERSION } from "@presently/presently";
 * // PresenceClient adds it itself; a hand-written client puts it on the URL.
 * const url = new URL("wss://example.com/presence");
 * url.searchParams.set("v", String(PROTOCOL_VERSION));
 * console.log(url.href); // "wss://example.com/presence?v=1"
 * ```
 */
export const PROTOCOL_VERSION = 1;

/** `PROTOCOL_VERSION` as the client sends it (the `v` query parameter). */
export const PROTOCOL_PARAM = "1";

/**
 * WebSocket close codes Presently uses (documented in docs/PROTOCOL.md).
 *
 * @example
 * ```ts
 * import { CloseCode } from "@presently/presently";
 * // A raw WebSocket client should not reconnect after these two.
 * const final: number[] = [CloseCode.badVersion, CloseCode.unauthorized];
 * const shouldReconnect = (event: CloseEvent) => !final.includes(event.code);
 * const lost = new CloseEvent("close", { code: CloseCode.heartbeatTimeout });
 * console.log(shouldReconnect(lost)); // true
 * ```
 */
export const CloseCode = {
  /** Normal close (client or server called `close()`). */
  normal: CLOSE_NORMAL,
  /** The server is shutting down. */
  goingAway: CLOSE_GOING_AWAY,
  /** The client spoke an unsupported protocol version. */
  badVersion: CLOSE_BAD_VERSION,
  /** Revoked by the server, or replaced by a resume of the same connection. */
  unauthorized: CLOSE_UNAUTHORIZED,
  /** No sign of life within the heartbeat deadline. */
  heartbeatTimeout: CLOSE_HEARTBEAT_TIMEOUT,
  /** The subscriber stayed over the pending outbound bytes limit. */
  slowConsumer: 4409,
  /** Too many malformed or oversized frames. */
  protocolAbuse: 4413,
  /** Kept flooding after being rate limited. */
  flood: 4429,
  /** The server holds its connection limit. */
  tooManyConnections: 4503,
} as const;
