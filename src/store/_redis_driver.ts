// Two Redis connections (commands, pub/sub) behind one small interface: Bun's
// built-in RedisClient under Bun, the npm `redis` package elsewhere. A Redis
// Cluster always goes through the npm `redis` package's cluster client (Bun's
// client has no cluster mode), which follows MOVED/ASK and topology changes.

/** What the store needs from a Redis client pair. */
export interface RedisDriver {
  /** Which client is in use. */
  readonly kind: "bun" | "node-redis" | "node-redis-cluster";
  /**
   * True when every command goes over one connection, in order: a command
   * sent after another is applied after it without waiting for its reply.
   */
  readonly ordered: boolean;
  /**
   * False while the command connection of a single Redis is down, or on a
   * cluster the connection to the master serving `homeSlot`: commands sent
   * meanwhile wait in the client's offline queue.
   */
  up(): boolean;
  /** Run one command; `key` routes it to its slot's node on a cluster. */
  command(args: string[], key?: string): Promise<unknown>;
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
  /**
   * The command connection of a single Redis (or, on a cluster, to the
   * master serving `homeSlot`) dropped after it was up, reported before the
   * `reconnected` that follows it (Bun tells only at the reconnect; a write
   * can ask `RedisDriver.up` meanwhile): commands sent until then wait in
   * the client's offline queue and land in whatever Redis comes back,
   * before the store could check it.
   */
  lost(): void;
  /** A connection failed (reported once per outage). */
  error(error: unknown): void;
  /**
   * A sharded channel's slot moved to another node (cluster only): the
   * client subscribes there again, and messages published meanwhile are lost.
   */
  channelMoved?(channel: string): void;
}

/** Connection settings shared by both clients. */
export interface DriverOptions {
  url: string;
  /** Seed nodes of a Redis Cluster (`url` is then ignored). */
  cluster: string[] | null;
  /**
   * On a cluster, the hash slot of the store's own keys (leases, indexes):
   * `up()` and `lost` follow the master serving it.
   */
  homeSlot: number;
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
  readonly connected: boolean;
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
    if (++cmdUp <= 1 || closed) return;
    // Bun reports no drop (onclose fires only once it gives up): the
    // reconnect is the first word of it.
    hooks.lost();
    hooks.reconnected("command");
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
    ordered: true,
    // Bun reports no drop (onclose fires only once it gives up), so writes ask.
    up: () => cmd.connected,
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
  readonly isReady: boolean;
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
      if (which === "command" && ready > 0) hooks.lost();
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
    ordered: true,
    up: () => cmd.isReady,
    command: (args) => cmd.sendCommand(args),
    subscribe: (channel) => sub.subscribe(channel, onMessage),
    unsubscribe: (channel) => sub.unsubscribe(channel),
    async close() {
      closed = true;
      await Promise.allSettled([cmd.close(), sub.close()]);
    },
  };
}

// -- npm redis, cluster mode ------------------------------------------------

interface NodeRedisCluster {
  /** Per hash slot, the master serving it (undefined before discovery). */
  readonly slots: ReadonlyArray<{ master?: unknown } | undefined>;
  /** Its masters; `pubSub` is a master's sharded pub/sub connection. */
  readonly masters: ReadonlyArray<{
    pubSub?: { client: { on(event: string, listener: (channel: string) => void): unknown } };
  }>;
  connect(): Promise<unknown>;
  sendCommand(key: string | undefined, readonly: boolean, args: string[]): Promise<unknown>;
  sSubscribe(channel: string, listener: BunListener): Promise<void>;
  sUnsubscribe(channel: string): Promise<void>;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  close(): Promise<void>;
}

interface NodeRedisClusterModule {
  createCluster(options: {
    rootNodes: Array<{ url: string }>;
    topologyRefreshOnReconnectionAttemptStrategy?: number;
    defaults: {
      username?: string | undefined;
      password?: string | undefined;
      socket: {
        reconnectStrategy: (retries: number) => number;
        connectTimeout: number;
        tls?: boolean;
      };
    };
  }): NodeRedisCluster;
}

async function clusterDriver(
  urls: string[],
  options: DriverOptions,
  hooks: DriverHooks,
): Promise<RedisDriver> {
  const mod = await import("redis") as unknown as NodeRedisClusterModule;
  // Nodes found through the seeds get these settings (credentials, TLS).
  const first = new URL(urls[0]!);
  const cluster = mod.createCluster({
    rootNodes: urls.map((url) => ({ url })),
    // A node that stops answering may have failed over: look at the topology
    // again a second after the first reconnection attempt (default 5 s).
    topologyRefreshOnReconnectionAttemptStrategy: 1_000,
    defaults: {
      username: first.username === "" ? undefined : decodeURIComponent(first.username),
      password: first.password === "" ? undefined : decodeURIComponent(first.password),
      socket: {
        reconnectStrategy: (retries) =>
          Math.min(25 * 2 ** Math.min(retries, 10), options.maxReconnectDelayMs),
        connectTimeout: options.connectTimeoutMs,
        ...(first.protocol === "rediss:" ? { tls: true } : {}),
      },
    },
  });
  let closed = false;
  let failing = false;
  const report = (error: unknown) => {
    if (closed || failing) return;
    failing = true;
    hooks.error(error);
  };
  cluster.on("error", report);
  cluster.on("node-error", report);
  // A node that comes back (a restart, a failover) may have lost writes: the
  // store checks, as after any reconnect. Its shard channels are resubscribed.
  // ("node-ready" alone also fires for each new pub/sub connection.) A node
  // first seen after connecting (a replica promoted by a failover, a node
  // added) may hold an older copy of the data too: the same check.
  const down = new Set<string>();
  const seen = new Set<string>();
  let connected = false;
  const nodeId = (node: unknown) => {
    const { host, port } = node as { host?: string; port?: number };
    return `${host}:${port}`;
  };
  // The master serving the store's own keys, as the client's topology says.
  const home = () => {
    const master = cluster.slots[options.homeSlot]?.master;
    return master === undefined ? null : nodeId(master);
  };
  cluster.on("node-reconnecting", (node) => {
    const id = nodeId(node);
    down.add(id);
    if (id === home() && !closed) hooks.lost();
  });
  cluster.on("node-ready", (node) => {
    failing = false;
    const id = nodeId(node);
    const fresh = connected && !seen.has(id);
    seen.add(id);
    if ((down.delete(id) || fresh) && !closed) hooks.reconnected("command");
  });
  await cluster.connect();
  connected = true;
  const onMessage: BunListener = (message, channel) => hooks.message(channel, message);
  // The client moves a sharded subscription whose slot moved by itself, but
  // tells only its node connection: listen there, on each one as it appears.
  const watched = new WeakSet<object>();
  const watchMoves = () => {
    for (const master of cluster.masters) {
      const client = master.pubSub?.client;
      if (client === undefined || watched.has(client)) continue;
      watched.add(client);
      client.on("sharded-channel-moved", (channel) => {
        hooks.channelMoved?.(channel);
        setTimeout(watchMoves, 50);
      });
    }
  };
  return {
    kind: "node-redis-cluster",
    up: () => {
      const id = home();
      return id === null || !down.has(id);
    },
    ordered: false,
    command: (args, key) => cluster.sendCommand(key, false, args),
    async subscribe(channel) {
      await cluster.sSubscribe(channel, onMessage);
      watchMoves();
    },
    unsubscribe: (channel) => cluster.sUnsubscribe(channel),
    async close() {
      closed = true;
      await Promise.allSettled([cluster.close()]);
    },
  };
}

/** Open the connection pair for the current runtime (or a cluster client). */
export function openDriver(
  options: DriverOptions,
  hooks: DriverHooks,
): Promise<RedisDriver> {
  if (options.cluster !== null) return clusterDriver(options.cluster, options, hooks);
  const bun = (globalThis as unknown as { Bun?: BunLike }).Bun;
  if (bun !== undefined && typeof bun.RedisClient === "function") {
    return bunDriver(bun, options, hooks);
  }
  return nodeRedisDriver(options, hooks);
}
