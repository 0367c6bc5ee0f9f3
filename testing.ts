/**
 * A presence server and a client connected to it in memory, for tests, bots
 * and examples: no port, no network, the same admission, protocol and
 * request queue as a real socket (`server.inProcessWebSocket()`).
 *
 * @example
 * ```ts
 * import { openPair } from "@presently/presently/testing";
 *
 * await using pair = await openPair(); // closed at the end of the block
 * const { presence, client } = pair;
 * await client.joinRoom("lobby");
 * console.log(await presence.getPresentConnections("lobby")); // [client.connectionId]
 * ```
 *
 * @module
 */

import { PresenceServer } from "./src/server/server.ts";
import type { PresenceServerOptions } from "./src/server/options.ts";
import type { Metadata } from "./src/protocol.ts";
import { PresenceClient, type PresenceClientOptions } from "./src/client/client.ts";

/** What {@linkcode openPair} returns: close it (or `await using` it) when done. */
export interface PresencePair<State = unknown, Meta extends Metadata = Metadata>
  extends AsyncDisposable {
  /** The server. */
  presence: PresenceServer;
  /** A client, connected (`status` is `"open"`). */
  client: PresenceClient<State, Meta>;
  /**
   * Another client on the same server, connected on first use (each call of
   * `connect` makes a new one); all are closed with the pair.
   */
  connect(options?: Omit<PresenceClientOptions, "WebSocket">): Promise<PresenceClient<State, Meta>>;
  /** Close the clients, then the server. */
  close(): Promise<void>;
}

/** Options of {@linkcode openPair}. */
export interface OpenPairOptions extends PresenceServerOptions {
  /** The rooms the server tracks (`trackPresence`). Default: every room. */
  rooms?: string | RegExp;
  /** Options of the first client (its `WebSocket` is the in-memory one). */
  client?: Omit<PresenceClientOptions, "WebSocket">;
}

/**
 * Start a `PresenceServer` and connect a `PresenceClient` to it in memory.
 *
 * @param options Server options, plus the rooms to track and the client's options.
 * @returns The pair, with `connect()` for more clients.
 *
 * @example Two clients see each other
 * ```ts
 * import { openPair } from "@presently/presently/testing";
 *
 * await using pair = await openPair({ rooms: "lobby" });
 * const other = await pair.connect();
 * await other.joinRoom("lobby");
 * const { present } = await pair.client.joinRoom("lobby");
 * console.log(present.length); // 2
 * ```
 */
export async function openPair<State = unknown, Meta extends Metadata = Metadata>(
  options: OpenPairOptions = {},
): Promise<PresencePair<State, Meta>> {
  const { rooms = /^/, client: clientOptions, ...serverOptions } = options;
  const presence = new PresenceServer(serverOptions);
  presence.trackPresence(rooms);
  const WebSocket = presence.inProcessWebSocket();
  const clients: PresenceClient<State, Meta>[] = [];
  const connect = async (more: Omit<PresenceClientOptions, "WebSocket"> = {}) => {
    const client = new PresenceClient<State, Meta>("ws://presence/", { ...more, WebSocket });
    clients.push(client);
    await client.connect();
    return client;
  };
  const close = async () => {
    await Promise.all(clients.map((c) => c.close()));
    await presence.close();
  };
  try {
    const client = await connect(clientOptions);
    return { presence, client, connect, close, [Symbol.asyncDispose]: close };
  } catch (e) {
    await close();
    throw e;
  }
}
