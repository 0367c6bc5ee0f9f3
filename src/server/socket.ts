// The tiny socket seam between adapters and the core.

/** Native topic fan-out (Bun's `ws.subscribe` / `server.publish`). */
export interface TopicPublisher {
  /** Subscribe this socket to a topic. */
  subscribe(topic: string): void;
  /** Unsubscribe this socket from a topic. */
  unsubscribe(topic: string): void;
  /** Send `data` to every socket subscribed to `topic`. */
  publish(topic: string, data: string): void;
}

/** What the core needs from a WebSocket. Adapters wrap theirs in this. */
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

/** Callbacks an adapter forwards socket events to. They never throw. */
export interface SocketHandlers {
  /** A frame arrived. */
  message(data: unknown): void;
  /** The socket closed. `code` 1000/1001 from the client is a clean leave. */
  close(code: number, reason: string): void;
  /** The socket's send buffer drained (Bun's `drain`). */
  drain(): void;
}

/** The outcome of `server.admit(request)`. */
export type Admission =
  | {
    ok: true;
    /** Opaque ticket to hand to `server.open(socket, ticket)`. */
    ticket: unknown;
    /** The subprotocol to answer with, when the client offered some. */
    protocol?: string;
  }
  | { ok: false; status: number; message: string };
