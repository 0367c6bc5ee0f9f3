// An in-process WebSocket: a `WebSocket`-compatible class whose sockets
// connect straight to a PresenceServer, through the same admit/open seam the
// adapters use, with no network. For a PresenceClient in the server's own
// process (bots, bridges, tests, examples): `new PresenceClient(url, {
// WebSocket: server.inProcessWebSocket() })`.

import { CLOSE_ABNORMAL, CLOSE_NORMAL } from "../constants.ts";
import type { Admission, SocketHandlers, SocketLike } from "./socket.ts";

/** What the class needs from the server: the two adapter entry points. */
export interface InProcessHost {
  admit(request: Request, remoteAddr?: string | null): Admission | Promise<Admission>;
  open(socket: SocketLike, ticket: unknown): SocketHandlers;
}

type Listener = ((event: { data?: unknown; code?: number; reason?: string }) => void) | null;

/** The `WebSocket` class for `host` (see `PresenceServer.inProcessWebSocket`). */
export function inProcessWebSocket(host: InProcessHost): typeof WebSocket {
  class InProcessWebSocket {
    static readonly CONNECTING = 0;
    static readonly OPEN = 1;
    static readonly CLOSING = 2;
    static readonly CLOSED = 3;
    readyState = 0;
    bufferedAmount = 0;
    protocol = "";
    readonly url: string;
    onopen: Listener = null;
    onmessage: Listener = null;
    onclose: Listener = null;
    onerror: Listener = null;
    #handlers: SocketHandlers | null = null;

    constructor(
      url: string | URL,
      options?: string | string[] | { protocols?: string | string[]; headers?: HeadersInit },
    ) {
      this.url = String(url);
      const settings = typeof options === "object" && !Array.isArray(options) ? options : {};
      const protocols = typeof options === "string" || Array.isArray(options)
        ? options
        : settings.protocols;
      const headers = new Headers(settings.headers);
      if (protocols !== undefined) {
        headers.set("sec-websocket-protocol", [protocols].flat().join(", "));
      }
      const request = new Request(this.url.replace(/^ws/, "http"), { headers });
      Promise.resolve(host.admit(request, null)).then((admission) => {
        if (this.readyState !== 0) return; // closed while admitting
        if (!admission.ok) return this.#ended(CLOSE_ABNORMAL, admission.message);
        this.readyState = 1;
        this.protocol = admission.protocol ?? "";
        const socket: SocketLike = {
          send: (data) => {
            if (this.readyState !== 1) return 0;
            queueMicrotask(() => {
              if (this.readyState === 1) this.onmessage?.({ data });
            });
            return data.length;
          },
          close: (code, reason) => {
            if (this.readyState > 1) return;
            this.readyState = 2;
            queueMicrotask(() => {
              this.#handlers?.close(code ?? CLOSE_NORMAL, reason ?? "");
              this.#ended(code ?? CLOSE_NORMAL, reason ?? "");
            });
          },
          get bufferedAmount() {
            return 0;
          },
        };
        this.#handlers = host.open(socket, admission.ticket);
        this.onopen?.({});
      }, (error) => this.#ended(CLOSE_ABNORMAL, String(error)));
    }

    /** Hand a frame to the server, after this tick (as a network would). */
    send(data: string): void {
      if (this.readyState !== 1) {
        throw new DOMException("The socket is not open", "InvalidStateError");
      }
      queueMicrotask(() => {
        if (this.readyState === 1) this.#handlers?.message(data);
      });
    }

    /** Close: the server sees the close with `code`, then so does this socket. */
    close(code = CLOSE_NORMAL, reason = ""): void {
      if (this.readyState > 1) return;
      const open = this.readyState === 1;
      this.readyState = 2;
      queueMicrotask(() => {
        if (open) this.#handlers?.close(code, reason);
        this.#ended(code, reason);
      });
    }

    #ended(code: number, reason: string): void {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
  }
  return InProcessWebSocket as unknown as typeof WebSocket;
}
