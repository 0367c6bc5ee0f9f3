// Two Redis connections (commands, pub/sub) behind one small interface: Bun's
// built-in RedisClient under Bun, the npm `redis` package elsewhere.

/** What the store needs from a Redis client pair. */
export interface RedisDriver {
  /** Which client is in use. */
  readonly kind: "bun" | "node-redis";
  /** Run one command on the command connection. */
  command(args: string[]): Promise<unknown>;
  /** Subscribe the pub/sub connection to a channel. */
  subscribe(channel: string): Promise<void>;
  /** Drop a channel subscription. */
  unsubscribe(channel: string): Promise<void>;
  /** Quit both connections. */
  close(): Promise<void>;
}

/** Callbacks from the connections to the store. */
export interface DriverHooks {
  /** A message arrived on a subscribed channel. */
  message(channel: string, message: string): void;
  /** A connection came back after a loss (subscriptions are restored). */
  reconnected(which: "command" | "pubsub"): void;
  /** A connection failed (reported once per outage). */
  error(error: unknown): void;
}

/** Connection settings shared by both clients. */
export interface DriverOptions {
  url: string;
  /** Longest wait between reconnection attempts, in ms. */
  maxReconnectDelayMs: number;
  /** How long to wait for a connection before a command fails, in ms. */
  connectTimeoutMs: number;
}

// -- Bun -------------------------------------------------------------------

type BunListener = (message: string, channel: string) => void;

interface BunRedisClient {
  connect(): Promise<void>;
  send(command: string, args: string[]): Promise<unknown>;
  subscribe(channel: string, listener: BunListener): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
  close(): void;
  onconnect: (() => void) | null;
  onclose: ((error: Error) => void) | null;
}

interface BunRedisOptions {
  autoReconnect?: boolean;
  maxRetries?: number;
  enableOfflineQueue?: boolean;
  connectionTimeout?: number;
}

interface BunLike {
  RedisClient: new (url: string, options?: BunRedisOptions) => BunRedisClient;
}

async function bunDriver(
  bun: BunLike,
  options: DriverOptions,
  hooks: DriverHooks,
): Promise<RedisDriver> {
  const settings: BunRedisOptions = {
    autoReconnect: true,
    // Keep trying for as long as the store is open: a restart can take a while.
    maxRetries: 2 ** 31 - 1,
    enableOfflineQueue: true,
    connectionTimeout: options.connectTimeoutMs,
  };
  const cmd = new bun.RedisClient(options.url, settings);
  const sub = new bun.RedisClient(options.url, settings);
  const channels = new Set<string>();
  const onMessage: BunListener = (message, channel) => hooks.message(channel, message);
  let cmdUp = 0;
  let subUp = 0;
  let closed = false;
  cmd.onconnect = () => {
    if (++cmdUp > 1 && !closed) hooks.reconnected("command");
  };
  // Bun reconnects but does not resubscribe: do it, once per channel.
  sub.onconnect = () => {
    if (++subUp <= 1 || closed) return;
    void Promise.all(
      [...channels].map(async (channel) => {
        await sub.unsubscribe(channel);
        await sub.subscribe(channel, onMessage);
      }),
    ).then(
      () => hooks.reconnected("pubsub"),
      (error) => hooks.error(error),
    );
  };
  await cmd.connect();
  await sub.connect();
  return {
    kind: "bun",
    command: ([name, ...args]) => cmd.send(name!, args),
    async subscribe(channel) {
      channels.add(channel);
      await sub.subscribe(channel, onMessage);
    },
    async unsubscribe(channel) {
      channels.delete(channel);
      await sub.unsubscribe(channel);
    },
    close() {
      closed = true;
      cmd.close();
      sub.close();
      return Promise.resolve();
    },
  };
}

// -- npm redis (node-redis) -------------------------------------------------

interface NodeRedisClient {
  connect(): Promise<unknown>;
  sendCommand(args: string[]): Promise<unknown>;
  duplicate(): NodeRedisClient;
  subscribe(channel: string, listener: BunListener): Promise<void>;
  unsubscribe(channel: string): Promise<void>;
  on(event: string, listener: (arg: unknown) => void): unknown;
  close(): Promise<void>;
  destroy(): void;
}

interface NodeRedisModule {
  createClient(options: {
    url: string;
    socket: {
      reconnectStrategy: (retries: number) => number;
      connectTimeout: number;
    };
  }): NodeRedisClient;
}

async function nodeRedisDriver(
  options: DriverOptions,
  hooks: DriverHooks,
): Promise<RedisDriver> {
  // Loaded only here (deno.json maps "redis" to npm:redis@^6.3.1), so nothing
  // else in Presently depends on an npm package.
  const mod = await import("redis") as unknown as NodeRedisModule;
  const cmd = mod.createClient({
    url: options.url,
    socket: {
      reconnectStrategy: (retries) =>
        Math.min(25 * 2 ** Math.min(retries, 10), options.maxReconnectDelayMs),
      connectTimeout: options.connectTimeoutMs,
    },
  });
  const sub = cmd.duplicate();
  let closed = false;
  const watch = (client: NodeRedisClient, which: "command" | "pubsub") => {
    let ready = 0;
    let failing = false;
    client.on("error", (error) => {
      if (closed || failing) return;
      failing = true;
      hooks.error(error);
    });
    client.on("ready", () => {
      failing = false;
      // node-redis resubscribes before it reports ready.
      if (++ready > 1 && !closed) hooks.reconnected(which);
    });
  };
  watch(cmd, "command");
  watch(sub, "pubsub");
  await cmd.connect();
  await sub.connect();
  const onMessage: BunListener = (message, channel) => hooks.message(channel, message);
  return {
    kind: "node-redis",
    command: (args) => cmd.sendCommand(args),
    subscribe: (channel) => sub.subscribe(channel, onMessage),
    unsubscribe: (channel) => sub.unsubscribe(channel),
    async close() {
      closed = true;
      await Promise.allSettled([cmd.close(), sub.close()]);
    },
  };
}

/** Open the connection pair for the current runtime. */
export function openDriver(
  options: DriverOptions,
  hooks: DriverHooks,
): Promise<RedisDriver> {
  const bun = (globalThis as unknown as { Bun?: BunLike }).Bun;
  if (bun !== undefined && typeof bun.RedisClient === "function") {
    return bunDriver(bun, options, hooks);
  }
  return nodeRedisDriver(options, hooks);
}
