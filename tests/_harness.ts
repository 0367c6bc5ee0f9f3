// Test harness: start a PresenceServer on the current runtime's adapter on
// 127.0.0.1 port 0, and a raw protocol-level client.

import { PresenceServer, type PresenceServerOptions } from "../mod.ts";

/** The runtime this test process runs on. */
export const RUNTIME: "deno" | "bun" = "Bun" in globalThis ? "bun" : "deno";

export interface Running {
  server: PresenceServer;
  url: string;
  port: number;
  /** Close the presence server and the HTTP listener. */
  close(): Promise<void>;
}

export async function startServer(
  options: PresenceServerOptions = {},
  setup?: (server: PresenceServer) => void,
  fallback?: (req: Request) => Response | Promise<Response>,
): Promise<Running> {
  const server = new PresenceServer(options);
  if (setup) setup(server);
  if (RUNTIME === "deno") {
    const { presenceHandler } = await import("../src/adapters/deno.ts");
    const D = (globalThis as unknown as { Deno: typeof Deno }).Deno;
    const ac = new AbortController();
    let port = 0;
    const ready = Promise.withResolvers<void>();
    const httpServer = D.serve({
      hostname: "127.0.0.1",
      port: 0,
      signal: ac.signal,
      onListen: (addr) => {
        port = addr.port;
        ready.resolve();
      },
    }, presenceHandler(server, fallback ? { fallback } : {}));
    await ready.promise;
    return {
      server,
      port,
      url: `ws://127.0.0.1:${port}/`,
      async close() {
        await server.close();
        ac.abort();
        await httpServer.finished;
      },
    };
  }
  const { bunPresence } = await import("../src/adapters/bun.ts");
  // deno-lint-ignore no-explicit-any
  const B = (globalThis as any).Bun;
  const p = bunPresence(server, fallback ? { fallback } : {});
  const httpServer = B.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: p.fetch,
    websocket: p.websocket,
  });
  return {
    server,
    port: httpServer.port,
    url: `ws://127.0.0.1:${httpServer.port}/`,
    async close() {
      await server.close();
      httpServer.stop(true);
    },
  };
}

/** A raw protocol client: sends frames, records everything it receives. */
export class RawClient {
  readonly ws: WebSocket;
  readonly frames: Record<string, unknown>[] = [];
  cid = "";
  token = "";
  #nextId = 1;
  #waiters: Array<() => void> = [];
  closed: { code: number; reason: string } | null = null;
  readonly opened: Promise<void>;

  constructor(url: string, protocols?: string | string[]) {
    this.ws = new WebSocket(url, protocols);
    const hello = Promise.withResolvers<void>();
    this.opened = hello.promise;
    this.ws.onmessage = (e) => {
      const frame = JSON.parse(String(e.data));
      if (frame.t === "hello") {
        this.cid = frame.cid;
        this.token = frame.token;
        hello.resolve();
      }
      if (frame.t === "ping") this.ws.send('{"op":"pong"}');
      this.frames.push(frame);
      this.#wake();
    };
    this.ws.onclose = (e) => {
      this.closed = { code: e.code, reason: e.reason };
      hello.reject(new Error(`closed ${e.code}`));
      this.#wake();
    };
    this.ws.onerror = () => {};
    hello.promise.catch(() => {});
  }

  #wake() {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Send a request and await its answer. */
  async request(
    op: string,
    fields: Record<string, unknown> = {},
  ): Promise<Record<string, unknown>> {
    const id = this.#nextId++;
    this.ws.send(JSON.stringify({ op, id, ...fields }));
    return await this.waitFor((f) => f.id === id && (f.t === "ok" || f.t === "err"));
  }

  sendRaw(data: string | Uint8Array): void {
    this.ws.send(data);
  }

  /** Wait until a received frame matches, returning it. */
  async waitFor(
    match: (f: Record<string, unknown>) => boolean,
    timeoutMs = 5000,
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    let seen = 0;
    for (;;) {
      for (; seen < this.frames.length; seen++) {
        if (match(this.frames[seen]!)) return this.frames[seen]!;
      }
      if (this.closed) throw new Error(`socket closed (${this.closed.code}) while waiting`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("timed out waiting for a frame");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** All events received for a room, flattened, in arrival order. */
  events(room: string): unknown[][] {
    const out: unknown[][] = [];
    for (const f of this.frames) {
      if (f.t === "ev" && f.r === room) out.push(...(f.e as unknown[][]));
    }
    return out;
  }

  async close(code = 1000): Promise<void> {
    if (this.closed) return;
    const done = new Promise<void>((resolve) => {
      const prev = this.ws.onclose;
      this.ws.onclose = (e) => {
        prev?.call(this.ws, e);
        resolve();
      };
    });
    this.ws.close(code);
    await done;
  }
}

/** Poll `cond` until true or time out. */
export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
