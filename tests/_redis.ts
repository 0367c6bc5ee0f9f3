// Test helper: start a real redis-server on a free port (Deno and Bun alike,
// through node:child_process), wait until it answers PING, stop or restart it.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createServer, Socket } from "node:net";
import process from "node:process";

/** A running redis-server owned by the test. */
export interface RedisServer {
  /** `redis://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** The server's pid (changes on restart). */
  pid(): number;
  /** Stop it (SIGTERM, then SIGKILL after 2 s) and wait for the exit. */
  stop(): Promise<void>;
  /**
   * Stop it and start a new one on the same port: empty, or with `dir`, from
   * the last `SAVE` there (as a failover to a replica that lags would).
   * `whileDown` runs after the stop, before the start.
   */
  restart(whileDown?: () => Promise<void>): Promise<void>;
}

/** The redis-server binary the tests use. */
export const REDIS_SERVER_BIN: string = process.env.PRESENTLY_REDIS_SERVER ??
  "redis-server";

let checked: string | null | undefined;

/**
 * `null` when redis-server can run, else a line naming what is missing. With
 * `PRESENTLY_REQUIRE_ALL=1` a missing redis-server throws instead, so CI fails
 * loudly; otherwise the caller skips its suites and prints the line.
 */
export function redisMissing(): string | null {
  if (checked !== undefined) return checked;
  const r = spawnSync(REDIS_SERVER_BIN, ["--version"], { encoding: "utf8" });
  checked = r.error !== undefined || r.status !== 0
    ? `redis-server not found ("${REDIS_SERVER_BIN}"): Redis suites skipped; install redis-server or set PRESENTLY_REDIS_SERVER`
    : null;
  if (checked !== null) {
    if (process.env.PRESENTLY_REQUIRE_ALL === "1") {
      throw new Error(`PRESENTLY_REQUIRE_ALL=1 but ${checked}`);
    }
    console.log(`\n!!!!! [redis] MISSING: ${checked} !!!!!\n`);
  }
  return checked;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      const port = typeof address === "object" && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** The pid of the redis-server answering on the port, or -1. */
function serverPid(port: number): Promise<number> {
  return new Promise((resolve) => {
    const socket = new Socket();
    let data = "";
    const done = (pid: number) => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(500, () => done(-1));
    socket.once("error", () => done(-1));
    socket.on("data", (chunk) => {
      data += chunk.toString();
      const m = data.match(/process_id:(\d+)\r\n/);
      if (m) done(Number(m[1]));
      else if (data.startsWith("-")) done(-1);
    });
    socket.connect(port, "127.0.0.1", () => socket.write("INFO server\r\n"));
  });
}

interface Child {
  process: ChildProcess;
  /** Settles when the process exited (listened to from the start). */
  exited: Promise<void>;
}

async function launch(port: number, extra: string[] = []): Promise<Child | null> {
  const child = spawn(REDIS_SERVER_BIN, [
    ...extra,
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--loglevel",
    "warning",
  ], { stdio: "ignore" });
  let failed = false;
  const exited = new Promise<void>((resolve) => {
    const end = () => {
      failed = true;
      resolve();
    };
    child.once("exit", end);
    child.once("error", end);
  });
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && !failed) {
    // Only this process counts: an old one may still hold the port.
    if (await serverPid(port) === child.pid) {
      return { process: child, exited };
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill("SIGKILL");
  await exited;
  return null;
}

/**
 * Start redis-server on a free port (retrying when the port was taken
 * meanwhile) and wait until it answers PING.
 *
 * @param options `dir`: keep `dump.rdb` there (written only by an explicit
 * `SAVE`), so a restart loads it.
 * @returns The running server.
 */
export async function startRedis(options: { dir?: string } = {}): Promise<RedisServer> {
  const extra = options.dir ? ["--dir", options.dir, "--dbfilename", "dump.rdb"] : [];
  const missing = redisMissing();
  if (missing !== null) throw new Error(missing);
  let child: Child | null = null;
  let port = 0;
  for (let attempt = 0; attempt < 5 && child === null; attempt++) {
    port = await freePort();
    child = await launch(port, extra);
  }
  if (child === null) throw new Error("redis-server did not start");
  let current: Child | null = child;
  const stop = async () => {
    const c = current;
    current = null;
    if (c === null) return;
    c.process.kill("SIGTERM");
    const timer = setTimeout(() => c.process.kill("SIGKILL"), 2_000);
    await c.exited;
    clearTimeout(timer);
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid: () => current?.process.pid ?? -1,
    stop,
    async restart(whileDown) {
      await stop();
      await whileDown?.();
      for (let attempt = 0; attempt < 50; attempt++) {
        current = await launch(port, extra);
        if (current !== null) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`redis-server did not restart on port ${port}`);
    },
  };
}

/** The redis-cli binary the cluster tests use. */
export const REDIS_CLI_BIN: string = process.env.PRESENTLY_REDIS_CLI ?? "redis-cli";

/** A running Redis Cluster owned by the test. */
export interface RedisClusterServer {
  /** One `redis://127.0.0.1:<port>` per node (any of them is a seed). */
  urls: string[];
  ports: number[];
  /** Kill one node with SIGKILL (a crash), and wait for its exit. */
  kill(port: number): Promise<void>;
  /** Send one command line to a node; answers the raw reply. */
  command(port: number, line: string): Promise<string>;
  /** `INFO commandstats` calls per command (lower case) on a node. */
  commandStats(port: number): Promise<Map<string, number>>;
  /** The port of the master that owns `key`'s slot. */
  ownerOf(key: string): Promise<number>;
  /** The port of a replica of the master on `master`. */
  replicaOf(master: number): Promise<number>;
  /**
   * Move `key`'s slot to the master on `toPort` the way `redis-cli --cluster
   * reshard` does (IMPORTING/MIGRATING, MIGRATE key by key, SETSLOT NODE),
   * pausing `pauseMs` after each key so traffic meets the half-moved slot;
   * `migrated` runs once every key moved, before the slot is handed over.
   * Answers how many keys moved.
   */
  moveSlot(
    key: string,
    toPort: number,
    pauseMs?: number,
    migrated?: () => Promise<void>,
  ): Promise<number>;
  /**
   * Kill every node (SIGKILL) and start them again on the same ports, empty
   * but with their cluster configuration, and wait until the cluster is ok.
   * `whileDown` runs after the kill, before the start.
   */
  restart(whileDown?: () => Promise<void>): Promise<void>;
  /** Stop every node. */
  stop(): Promise<void>;
}

/** Send one inline command to 127.0.0.1:`port`; answers the raw reply. */
export function redisCommand(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    let data = "";
    socket.setTimeout(5_000, () => {
      socket.destroy();
      reject(new Error(`no reply to ${line} on ${port}`));
    });
    socket.once("error", reject);
    socket.on("data", (chunk) => {
      data += chunk.toString();
      // A status, an error, an integer, or a complete bulk string.
      const bulk = data.match(/^\$(-?\d+)\r\n/);
      if (
        (/^[+\-:]/.test(data) && data.endsWith("\r\n")) ||
        (bulk && (Number(bulk[1]) < 0 || data.length >= bulk[0].length + Number(bulk[1]) + 2))
      ) {
        socket.destroy();
        resolve(data);
      }
    });
    socket.connect(port, "127.0.0.1", () => socket.write(`${line}\r\n`));
  });
}

/**
 * Start a Redis Cluster of `masters` masters with `replicas` replicas each on
 * free ports (cluster bus ports free too), join them with `redis-cli
 * --cluster create … --cluster-replicas <replicas> --cluster-yes`, and wait
 * until every node reports `cluster_state:ok`.
 */
export async function startRedisCluster(masters = 3, replicas = 0): Promise<RedisClusterServer> {
  const missing = redisMissing();
  if (missing !== null) throw new Error(missing);
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = mkdtempSync(join(tmpdir(), "presently-cluster-"));
  const nodes: Child[] = [];
  const ports: number[] = [];
  const args: string[][] = [];
  const dead = new Set<number>();
  const waitOk = async () => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const states = await Promise.all(
        ports.filter((p) => !dead.has(p)).map((p) =>
          redisCommand(p, "CLUSTER INFO").catch(() => "")
        ),
      );
      const links = await Promise.all(
        ports.filter((p) => !dead.has(p)).map((p) =>
          redisCommand(p, "INFO replication").catch(() => "")
        ),
      );
      if (
        states.every((s) => s.includes("cluster_state:ok")) &&
        // Replicas in sync with their masters, so a failover can promote them.
        links.every((l) => l.includes("role:master") || l.includes("master_link_status:up"))
      ) return;
      if (Date.now() > deadline) throw new Error("the Redis Cluster did not become ok");
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const stop = async () => {
    for (const c of nodes) c.process.kill("SIGKILL");
    await Promise.all(nodes.map((c) => c.exited));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      let child: Child | null = null;
      for (let attempt = 0; attempt < 5 && child === null; attempt++) {
        const port = await freePort();
        const bus = await freePort();
        const extra = [
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          join(dir, `nodes-${port}.conf`),
          "--cluster-port",
          String(bus),
          "--cluster-node-timeout",
          "2000",
          "--dir",
          dir,
        ];
        child = await launch(port, extra);
        if (child !== null) {
          ports.push(port);
          args.push(extra);
        }
      }
      if (child === null) throw new Error("redis-server (cluster node) did not start");
      nodes.push(child);
    }
    const created = spawnSync(REDIS_CLI_BIN, [
      "--cluster",
      "create",
      ...ports.map((p) => `127.0.0.1:${p}`),
      "--cluster-replicas",
      String(replicas),
      "--cluster-yes",
    ], { encoding: "utf8" });
    if (created.status !== 0) {
      throw new Error(`redis-cli --cluster create failed: ${created.stderr}${created.stdout}`);
    }
    await waitOk();
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    urls: ports.map((p) => `redis://127.0.0.1:${p}`),
    ports,
    command: redisCommand,
    async kill(port) {
      const c = nodes[ports.indexOf(port)]!;
      dead.add(port);
      c.process.kill("SIGKILL");
      await c.exited;
    },
    ownerOf: (key) => slotOwner(ports.filter((p) => !dead.has(p)), key),
    async replicaOf(master) {
      const live = ports.filter((p) => !dead.has(p));
      const nodes = await cli(live[0]!, ["CLUSTER", "NODES"]);
      const lines = nodes.split("\n").map((l) => l.trim().split(" "));
      const id = lines.find((f) => f[1]?.startsWith(`127.0.0.1:${master}@`))?.[0];
      const replica = lines.find((f) => f[2]?.includes("slave") && f[3] === id);
      if (!replica) throw new Error(`no replica of ${master}`);
      return Number(replica[1]!.split("@")[0]!.split(":")[1]);
    },
    async moveSlot(key, toPort, pauseMs = 0, migrated) {
      const from = await slotOwner(ports.filter((p) => !dead.has(p)), key);
      const slot = Number((await redisCommand(ports[0]!, `CLUSTER KEYSLOT ${key}`)).slice(1));
      const id = async (port: number) => (await cli(port, ["CLUSTER", "MYID"])).trim();
      const [fromId, toId] = [await id(from), await id(toPort)];
      await cli(toPort, ["CLUSTER", "SETSLOT", String(slot), "IMPORTING", fromId]);
      await cli(from, ["CLUSTER", "SETSLOT", String(slot), "MIGRATING", toId]);
      let moved = 0;
      for (;;) {
        const keys = (await cli(from, ["CLUSTER", "GETKEYSINSLOT", String(slot), "1"]))
          .split("\n").filter((k) => k !== "");
        if (keys.length === 0) break;
        const out = await cli(from, [
          "MIGRATE",
          "127.0.0.1",
          String(toPort),
          "",
          "0",
          "5000",
          "KEYS",
          ...keys,
        ]);
        if (!out.startsWith("OK") && !out.startsWith("NOKEY")) throw new Error(`MIGRATE: ${out}`);
        moved += keys.length;
        if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
      }
      await migrated?.();
      for (const port of [toPort, from, ...ports.filter((p) => p !== toPort && p !== from)]) {
        await cli(port, ["CLUSTER", "SETSLOT", String(slot), "NODE", toId]);
      }
      return moved;
    },
    async restart(whileDown) {
      dead.clear();
      for (const c of nodes) c.process.kill("SIGKILL");
      await Promise.all(nodes.map((c) => c.exited));
      await whileDown?.();
      for (let i = 0; i < ports.length; i++) {
        let child: Child | null = null;
        for (let attempt = 0; attempt < 50 && child === null; attempt++) {
          child = await launch(ports[i]!, args[i]!);
          if (child === null) await new Promise((r) => setTimeout(r, 100));
        }
        if (child === null) throw new Error(`cluster node ${ports[i]} did not restart`);
        nodes[i] = child;
      }
      await waitOk();
    },
    async commandStats(port) {
      const text = await redisCommand(port, "INFO commandstats");
      const out = new Map<string, number>();
      for (const m of text.matchAll(/cmdstat_([a-z|_-]+):calls=(\d+)/g)) {
        out.set(m[1]!, Number(m[2]));
      }
      return out;
    },
    stop,
  };
}

/** Run redis-cli against 127.0.0.1:`port` without blocking the event loop; answers its stdout. */
async function cli(port: number, args: string[]): Promise<string> {
  const { execFile } = await import("node:child_process");
  return await new Promise((resolve, reject) => {
    execFile(REDIS_CLI_BIN, ["-p", String(port), ...args], (error, stdout) => {
      if (error) reject(error);
      else resolve(String(stdout));
    });
  });
}

/** The port of the master serving `key`'s slot, from CLUSTER NODES. */
async function slotOwner(ports: number[], key: string): Promise<number> {
  const slot = Number((await redisCommand(ports[0]!, `CLUSTER KEYSLOT ${key}`)).slice(1));
  const nodes = await cli(ports[0]!, ["CLUSTER", "NODES"]);
  // "<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot or lo-hi>..."
  for (const line of nodes.split("\n")) {
    const f = line.trim().split(" ");
    if (f.length < 9 || !f[2]!.includes("master")) continue;
    const port = Number(f[1]!.split("@")[0]!.split(":")[1]);
    for (const range of f.slice(8)) {
      if (range.startsWith("[")) continue; // a slot being imported or migrated
      const [lo, hi = lo] = range.split("-").map(Number);
      if (slot >= lo! && slot <= hi!) return port;
    }
  }
  throw new Error(`no master owns slot ${slot}`);
}
