// Fakes for fast unit tests of the core: a socket that records frames, and a
// helper to connect one to a PresenceServer without any network.

import type { PresenceServer, SocketHandlers, SocketLike } from "../mod.ts";

export class FakeSocket implements SocketLike {
  readonly sent: Record<string, unknown>[] = [];
  closed: { code?: number | undefined; reason?: string | undefined } | null = null;
  bufferedAmount = 0;
  /** When false, frames are "written" but count into bufferedAmount. */
  reading = true;
  /** The close code, once closed by the server. */
  get closeCode(): number | undefined {
    return this.closed?.code;
  }
  send(data: string): number {
    if (this.closed) throw new Error("socket closed");
    this.sent.push(JSON.parse(data));
    if (!this.reading) this.bufferedAmount += data.length;
    return data.length;
  }
  close(code?: number, reason?: string): void {
    this.closed = { code, reason };
  }
}

export interface FakeConn {
  socket: FakeSocket;
  handlers: SocketHandlers;
  cid: string;
  token: string;
  /** Send a request frame (returns its id). */
  send(op: string, fields?: Record<string, unknown>): number;
  /** The answer to request `id`, once it arrived. */
  answer(id: number): Record<string, unknown> | undefined;
  /** All events for a room, flattened. */
  events(room: string): unknown[][];
}

let nextId = 1;

export async function connect(
  server: PresenceServer,
  url = "ws://test/?v=1",
  headers: Record<string, string> = {},
): Promise<FakeConn> {
  const admission = await server.admit(
    new Request(url.replace(/^ws/, "http"), { headers: { upgrade: "websocket", ...headers } }),
  );
  if (!admission.ok) throw new Error(`refused: ${admission.status}`);
  const socket = new FakeSocket();
  const handlers = server.open(socket, admission.ticket);
  const hello = socket.sent[0]!;
  return {
    socket,
    handlers,
    cid: hello.cid as string,
    token: hello.token as string,
    send(op, fields = {}) {
      const id = nextId++;
      handlers.message(JSON.stringify({ op, id, ...fields }));
      return id;
    },
    answer(id) {
      return socket.sent.find((f) => f.id === id && (f.t === "ok" || f.t === "err"));
    },
    events(room) {
      const out: unknown[][] = [];
      for (const f of socket.sent) {
        if (f.t === "ev" && f.r === room) out.push(...(f.e as unknown[][]));
      }
      return out;
    },
  };
}

/** Let pending promise chains (store calls, request queues) settle. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
  await new Promise((r) => setTimeout(r, 0));
  for (let i = 0; i < 20; i++) await Promise.resolve();
}
