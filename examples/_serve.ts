// Serve a PresenceServer on Deno.serve or Bun.serve, whichever runs the file:
// the recipes that run on both runtimes share it. In your own app, use the
// quick start of your runtime from the README instead (two lines).

import process from "node:process";
import type { PresenceServer } from "../mod.ts";

/** The runtime running this process. */
export const RUNTIME: "deno" | "bun" = "Bun" in globalThis ? "bun" : "deno";

/** Options of {@link serve}. */
export interface ServeOptions {
  /** Port to listen on; `0` picks a free one. Default: `PORT` from the environment, else 8000. */
  port?: number;
  /** Interface to listen on. Default: `HOST` from the environment, else `0.0.0.0`. */
  hostname?: string;
  /** Answers requests that are not WebSocket upgrades. Default: HTTP 426. */
  fallback?: (request: Request) => Response | Promise<Response>;
}

/** A running listener. */
export interface Served {
  /** The port it listens on. */
  port: number;
  /** Stop listening. Close the presence server first: it says goodbye to its sockets (1001). */
  close(): Promise<void>;
}

/** The part of `Bun.serve` used here (declared locally: no Bun types needed). */
interface BunLike {
  serve(options: {
    port: number;
    hostname: string;
    fetch: unknown;
    websocket: unknown;
  }): { port: number; stop(closeActive?: boolean): void };
}

/**
 * Serve `presence`: WebSocket upgrades become presence connections, other
 * requests go to `fallback`.
 *
 * @param presence The presence server.
 * @param options Port, interface and fallback.
 * @returns The port and a `close()` for the listener.
 */
export async function serve(presence: PresenceServer, options: ServeOptions = {}): Promise<Served> {
  const port = options.port ?? Number(process.env.PORT ?? 8000);
  const hostname = options.hostname ?? process.env.HOST ?? "0.0.0.0";
  const fallback = options.fallback ? { fallback: options.fallback } : {};
  if (RUNTIME === "bun") {
    const { bunPresence } = await import("../src/adapters/bun.ts");
    const Bun = (globalThis as unknown as { Bun: BunLike }).Bun;
    const p = bunPresence(presence, fallback);
    const server = Bun.serve({ port, hostname, fetch: p.fetch, websocket: p.websocket });
    return {
      port: server.port,
      close: () => Promise.resolve(server.stop(true)),
    };
  }
  const { presenceHandler } = await import("../src/adapters/deno.ts");
  const listening = Promise.withResolvers<number>();
  const server = Deno.serve(
    { port, hostname, onListen: (addr) => listening.resolve(addr.port) },
    presenceHandler(presence, fallback),
  );
  return { port: await listening.promise, close: () => server.shutdown() };
}

/**
 * Run `cleanup` once on SIGINT or SIGTERM, then exit: the presence server
 * closes its sockets with 1001 and releases its presence at once, so other
 * instances see the leaves now instead of after a lease lapses.
 *
 * @param cleanup Closes the presence server, its store and the listener.
 */
export function onShutdown(cleanup: () => Promise<void>): void {
  let closing = false;
  const run = async () => {
    if (closing) return;
    closing = true;
    try {
      await cleanup();
    } finally {
      process.exit(0);
    }
  };
  process.on("SIGINT", run);
  process.on("SIGTERM", run);
}
