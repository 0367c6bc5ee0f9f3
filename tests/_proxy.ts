// A loopback TCP proxy that a test can cut: every connection through it is
// destroyed at once (no close frame, no FIN handshake from the peer's side),
// which is how an abrupt network loss looks to the server and the client.

import net from "node:net";

export interface CuttableProxy {
  port: number;
  url(path?: string): string;
  /** Destroy every live connection through the proxy. */
  cut(): void;
  /** Send new connections to another port from now on (a balancer moving a client). */
  retarget(port: number): void;
  /** Stop accepting new connections until resume(). */
  pause(): void;
  /**
   * Black-hole the live connections (and new ones): bytes in either
   * direction are held, not forwarded, until `heal()`, then delivered in
   * order, as TCP does across a partition that heals in time.
   */
  blackhole(): void;
  heal(): void;
  resume(): void;
  close(): Promise<void>;
}

export async function startProxy(targetPort: number): Promise<CuttableProxy> {
  let target = targetPort;
  const live = new Set<net.Socket>();
  let paused = false;
  let held: Array<() => void> | null = null;
  const server = net.createServer((client) => {
    if (paused) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target, "127.0.0.1");
    live.add(client);
    live.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      live.delete(client);
      live.delete(upstream);
    };
    client.on("error", drop);
    upstream.on("error", drop);
    client.on("close", drop);
    upstream.on("close", drop);
    const forward = (from: net.Socket, to: net.Socket) => {
      from.on("data", (chunk: Buffer) => {
        if (held) held.push(() => to.write(chunk));
        else to.write(chunk);
      });
    };
    forward(client, upstream);
    forward(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: (path = "/") => `ws://127.0.0.1:${port}${path}`,
    cut() {
      for (const s of live) s.destroy();
      live.clear();
    },
    retarget(port: number) {
      target = port;
    },
    pause() {
      paused = true;
    },
    blackhole() {
      held ??= [];
    },
    heal() {
      const pending = held ?? [];
      held = null;
      for (const send of pending) send();
    },
    resume() {
      paused = false;
    },
    close() {
      for (const s of live) s.destroy();
      live.clear();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
