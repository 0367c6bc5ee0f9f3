// Fakes for fast unit tests of the core: a socket that records frames, and a
// helper to connect one to a PresenceServer without any network.

import type { PresenceServer, SocketHandlers, SocketLike, TopicPublisher } from "../mod.ts";

const utf8 = new TextEncoder();

export class FakeSocket implements SocketLike {
  readonly sent: Record<string, unknown>[] = [];
  closed: { code?: number | undefined; reason?: string | undefined } | null = null;
  #buffered = 0;
  /** How many times the server read bufferedAmount (a runtime call on real sockets). */
  bufferedReads = 0;
  get bufferedAmount(): number {
    this.bufferedReads++;
    return this.#buffered;
  }
  set bufferedAmount(n: number) {
    this.#buffered = n;
  }
  /** When false, frames are "written" but count into bufferedAmount (in UTF-8 bytes). */
  reading = true;
  /** Native topics, as the Bun adapter's sockets have (see FakeTopics). */
  topics?: TopicPublisher;
  /** The close code, once closed by the server. */
  get closeCode(): number | undefined {
    return this.closed?.code;
  }
  send(data: string): number {
    if (this.closed) throw new Error("socket closed");
    this.sent.push(JSON.parse(data));
    if (!this.reading) this.#buffered += utf8.encode(data).length;
    return data.length;
  }
  close(code?: number, reason?: string): void {
    this.closed = { code, reason };
  }
}

/** Topics shared by fake sockets: publish() delivers to every subscribed socket, as Bun's does. */
export class FakeTopics {
  readonly subscribers = new Map<string, Set<FakeSocket>>();
  /** Give `socket` its topic publisher. */
  attach(socket: FakeSocket): FakeSocket {
    const subscribers = this.subscribers;
    socket.topics = {
      subscribe(topic) {
        let set = subscribers.get(topic);
        if (!set) subscribers.set(topic, set = new Set());
        set.add(socket);
      },
      unsubscribe(topic) {
        subscribers.get(topic)?.delete(socket);
      },
      publish(topic, data) {
        for (const s of subscribers.get(topic) ?? []) if (!s.closed) s.send(data);
      },
    };
    return socket;
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
  socket: FakeSocket = new FakeSocket(),
): Promise<FakeConn> {
  const admission = await server.admit(
    new Request(url.replace(/^ws/, "http"), { headers: { upgrade: "websocket", ...headers } }),
  );
  if (!admission.ok) throw new Error(`refused: ${admission.status}`);
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
