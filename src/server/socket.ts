// The tiny socket seam between adapters and the core.

/**
 * Native topic fan-out (Bun's `ws.subscribe` / `server.publish`).
 *
 * @example
 * ```ts
 * import type { TopicPublisher } from "@presently/presently";
 * // An in-process hub with the shape of Bun's pub/sub.
 * const hub = new Map<string, Set<(data: string) => void>>();
 * function topicsFor(deliver: (data: string) => void): TopicPublisher {
 *   return {
 *     subscribe: (topic) => void hub.set(topic, (hub.get(topic) ?? new Set()).add(deliver)),
 *     unsubscribe: (topic) => void hub.get(topic)?.delete(deliver),
 *     publish: (topic, data) => hub.get(topic)?.forEach((send) => send(data)),
 *   };
 * }
 * const topics = topicsFor((data) => console.log(data));
 * topics.subscribe("lobby");
 * topics.publish("lobby", "hi"); // logs "hi"
 * ```
 */
export interface TopicPublisher {
  /** Subscribe this socket to a topic. */
  subscribe(topic: string): void;
  /** Unsubscribe this socket from a topic. */
  unsubscribe(topic: string): void;
  /** Send `data` to every socket subscribed to `topic`. */
  publish(topic: string, data: string): void;
}

/**
 * What the core needs from a WebSocket. Adapters wrap theirs in this.
 *
 * @example
 * ```ts
 * import type { SocketLike } from "@presently/presently";
 * function wrap(ws: WebSocket): SocketLike {
 *   return {
 *     send: (data) => ws.send(data),
 *     close: (code, reason) => ws.close(code, reason),
 *     get bufferedAmount() {
 *       return ws.bufferedAmount;
 *     },
 *   };
 * }
 * // An adapter calls `server.open(wrap(socket), admission.ticket)` once the socket is open.
 * ```
 */
export interface SocketLike {
  /**
   * Send a text frame. May return a number: Bun's `-1` means queued, `0`
   * means dropped, a positive number means sent. `undefined` means sent.
   */
  send(data: string): number | void;
  /** Close the socket. */
  close(code?: number, reason?: string): void;
  /** Bytes queued for sending but not yet written. */
  readonly bufferedAmount: number;
  /** Present when the runtime has native topic fan-out. */
  readonly topics?: TopicPublisher;
}

/**
 * Callbacks an adapter forwards socket events to. They never throw.
 *
 * @example
 * ```ts
 * import { PresenceServer, type SocketHandlers } from "@presently/presently";
 * const server = new PresenceServer();
 * server.trackPresence("lobby");
 * const admission = await server.admit(new Request("http://localhost/"));
 * if (!admission.ok) throw new Error(admission.message);
 * const answered = Promise.withResolvers<string>();
 * const socket = {
 *   send(data: string) {
 *     if (data.includes('"t":"ok"')) answered.resolve(data);
 *   },
 *   close() {},
 *   bufferedAmount: 0,
 * };
 * const handlers: SocketHandlers = server.open(socket, admission.ticket);
 * handlers.message(JSON.stringify({ op: "join", id: 1, room: "lobby" }));
 * console.log(await answered.promise); // {"t":"ok","id":1,"present":[...]}
 * handlers.close(1000, "");
 * await server.close();
 * ```
 */
export interface SocketHandlers {
  /** A frame arrived. */
  message(data: unknown): void;
  /** The socket closed. `code` 1000/1001 from the client is a clean leave. */
  close(code: number, reason: string): void;
  /** The socket's send buffer drained (Bun's `drain`). */
  drain(): void;
}

/**
 * The outcome of `server.admit(request)`.
 *
 * @example
 * ```ts
 * import { type Admission, PresenceServer } from "@presently/presently";
 * const bearer = (request: Request) => request.headers.get("authorization");
 * const server = new PresenceServer({
 *   authenticate: (request) => bearer(request) === "Bearer secret" ? {} : null,
 * });
 * const admission: Admission = await server.admit(new Request("http://localhost/"));
 * if (!admission.ok) console.log(admission.status, admission.message); // 401 "Unauthorized"
 * await server.close();
 * ```
 */
export type Admission =
  | {
    ok: true;
    /** Opaque ticket to hand to `server.open(socket, ticket)`. */
    ticket: unknown;
    /** The subprotocol to answer with, when the client offered some. */
    protocol?: string;
  }
  | { ok: false; status: number; message: string };
