// Cluster test helpers: spawn tests/fixtures/cluster_node.ts instances as
// separate Deno or Bun processes, and rebuild a client's view of a room from
// the raw frames it received (snapshot + events, resyncs included).

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import process from "node:process";
import { applyMergePatch } from "../src/merge_patch.ts";
import type { RawClient } from "./_harness.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const FIXTURE = new URL("./fixtures/cluster_node.ts", import.meta.url).pathname;

/** Bun from the dev dependencies, else from PATH, else `null`. */
export const BUN_BIN: string | null = existsSync(`${ROOT}node_modules/.bin/bun`)
  ? `${ROOT}node_modules/.bin/bun`
  : null;

/** One instance process. */
export interface ClusterNode {
  name: string;
  runtime: "deno" | "bun";
  port: number;
  /** `ws://127.0.0.1:<port>/` */
  url: string;
  pid: number;
  /** Its stdout and stderr lines, newest last (bounded). */
  log: string[];
  /** SIGKILL: no goodbye, no lease release. */
  kill(): Promise<void>;
}

/**
 * Start one instance and wait for its `LISTENING <port>` line.
 *
 * @param name A label for logs.
 * @param runtime Which runtime runs the fixture.
 * @param env REDIS_URL, REDIS_PREFIX, LEASE_TTL_MS.
 */
export function spawnNode(
  name: string,
  runtime: "deno" | "bun",
  env: Record<string, string>,
): Promise<ClusterNode> {
  const deno = (globalThis as unknown as { Deno?: { execPath(): string } })
    .Deno;
  const [cmd, args] = runtime === "deno"
    ? [deno?.execPath() ?? "deno", ["run", "-A", FIXTURE]]
    : [BUN_BIN ?? "bun", [FIXTURE]];
  const child: ChildProcess = spawn(cmd, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log: string[] = [];
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", () => resolve());
  });
  return new Promise((resolve, reject) => {
    let port = 0;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${name} did not start: ${log.join("\n")}`));
    }, 30_000);
    const onLine = (line: string) => {
      log.push(line);
      if (log.length > 200) log.shift();
      const m = line.match(/^LISTENING (\d+)/);
      if (m && port === 0) {
        port = Number(m[1]);
        clearTimeout(timer);
        resolve({
          name,
          runtime,
          port,
          url: `ws://127.0.0.1:${port}/`,
          pid: child.pid ?? -1,
          log,
          async kill() {
            child.kill("SIGKILL");
            await exited;
          },
        });
      }
    };
    for (const stream of [child.stdout!, child.stderr!]) {
      let buffer = "";
      stream.on("data", (chunk: Uint8Array) => {
        buffer += new TextDecoder().decode(chunk);
        const lines = buffer.split("\n");
        buffer = lines.pop()!;
        for (const line of lines) onLine(line);
      });
    }
    void exited.then(() => {
      if (port === 0) {
        clearTimeout(timer);
        reject(new Error(`${name} exited early: ${log.join("\n")}`));
      }
    });
  });
}

/** A client's view of one room, rebuilt from frames. */
export interface RoomView {
  seq: number;
  /** Present connection id -> metadata, in join order. */
  present: Map<string, unknown>;
  states: Map<string, unknown>;
  /** Connection ids whose leave event was seen, in order. */
  leaves: string[];
  /** Connection ids whose state was set to null by an expiry or clear. */
  cleared: string[];
}

type Frame = Record<string, unknown>;

/**
 * Rebuild a room view from `start` (the `ok` answer of a subscribing
 * request) onwards: `snap` frames replace it, event tuples apply in order.
 */
export function roomView(
  client: RawClient,
  room: string,
  start: Frame,
): RoomView {
  const view: RoomView = {
    seq: 0,
    present: new Map(),
    states: new Map(),
    leaves: [],
    cleared: [],
  };
  const load = (f: Frame) => {
    view.seq = f.seq as number;
    view.present = new Map(
      (f.present as Array<{ id: string; meta: unknown }>).map((p) => [p.id, p.meta]),
    );
    view.states = new Map(f.states as Array<[string, unknown]>);
  };
  const from = client.frames.indexOf(start);
  if (from < 0) throw new Error("start frame not received by this client");
  load(start);
  for (const f of client.frames.slice(from + 1)) {
    if (f.r !== room) continue;
    if (f.t === "snap") load(f);
    if (f.t !== "ev") continue;
    for (const e of f.e as unknown[][]) {
      const [seq, kind, cid, arg] = e as [number, string, string, unknown];
      if (kind === "u" || seq <= view.seq) continue;
      view.seq = seq;
      if (kind === "j") view.present.set(cid, arg);
      else if (kind === "l") {
        view.present.delete(cid);
        view.states.delete(cid);
        view.leaves.push(cid);
      } else if (kind === "s" || kind === "p") {
        const next = kind === "s" ? arg : applyMergePatch(view.states.get(cid), arg);
        if (next === null) {
          view.states.delete(cid);
          view.cleared.push(cid);
        } else view.states.set(cid, next);
      }
    }
  }
  return view;
}
