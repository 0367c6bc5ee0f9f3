// Test harness: start a PresenceServer on the current runtime's adapter on
// 127.0.0.1 port 0, and a raw protocol-level client.

import net from "node:net";
import { PresenceServer, type PresenceServerOptions } from "../mod.ts";

/** `Promise.withResolvers()`, which Node 20 lacks. */
export function resolvers<T>(): {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason?: unknown) => void;
} {
  let resolve!: (value: T) => void, reject!: (reason?: unknown) => void;
  const promise = new Promise<T>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

/** The runtime this test process runs on. */
export const RUNTIME: "deno" | "bun" | "node" = "Bun" in globalThis
  ? "bun"
  : "Deno" in globalThis
  ? "deno"
  : "node";

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
    const ready = resolvers<void>();
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
  if (RUNTIME === "node") {
    // Node: node:http + the `ws` package, through the Node adapter.
    const http = await import("node:http");
    const ws = await import("ws");
    const { attachPresence } = await import("../src/adapters/node.ts");
    const httpServer = http.createServer(async (req, res) => {
      const response = fallback
        ? await fallback(new Request(`http://127.0.0.1${req.url ?? "/"}`))
        : new Response("Expected a WebSocket upgrade", { status: 426 });
      res.writeHead(response.status, Object.fromEntries(response.headers));
      res.end(new Uint8Array(await response.arrayBuffer()));
    });
    attachPresence(server, httpServer, ws);
    await new Promise<void>((r) => httpServer.listen(0, "127.0.0.1", () => r()));
    const port = (httpServer.address() as { port: number }).port;
    const sockets = new Set<{ destroy(): void }>();
    httpServer.on("connection", (s) => {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    return {
      server,
      port,
      url: `ws://127.0.0.1:${port}/`,
      async close() {
        await server.close();
        for (const s of sockets) s.destroy();
        await new Promise<void>((r) => httpServer.close(() => r()));
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
    const hello = resolvers<void>();
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

/** The HTTP status of a raw WebSocket upgrade request with `headers`. */
export function upgradeStatus(port: number, path: string, headers: Record<string, string> = {}) {
  return new Promise<number>((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => {
      const lines = [
        `GET ${path} HTTP/1.1`,
        `Host: 127.0.0.1:${port}`,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      ];
      socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    });
    let data = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      data += chunk;
      const m = data.match(/^HTTP\/1\.1 (\d{3})/);
      if (m) {
        socket.destroy();
        resolve(Number(m[1]));
      }
    });
    socket.on("error", reject);
    socket.setTimeout(5000, () => {
      socket.destroy();
      reject(new Error("no answer to the upgrade"));
    });
  });
}
