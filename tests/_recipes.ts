// Test helper: run a recipe from examples/ as its own process on this runtime
// (deno run -A / bun), wait for its "listening on http://host:port/" line,
// collect its output, and stop it with a signal.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import process from "node:process";
import { RUNTIME } from "./_harness.ts";

/** A recipe process started by a test. */
export interface RecipeProcess {
  child: ChildProcess;
  /** The port from its "listening on" line. */
  port: number;
  /** Everything it wrote to stdout so far. */
  stdout(): string;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  /**
   * Send `signal` (SIGKILL after 3 s) and wait for the exit. Check a clean
   * shutdown by the process's output: under Deno, node:child_process reports
   * the signal sent even when the child handled it and exited 0.
   */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

const root = new URL("..", import.meta.url).pathname;

/** The Bun binary of the npm dev dependencies, when installed. */
export const BUN_BIN: string | null = (() => {
  const path = `${root}node_modules/.bin/bun`;
  return existsSync(path) ? path : null;
})();

/**
 * Start `examples/<file>` with `env` added to this process's environment.
 *
 * @param file The recipe, relative to examples/.
 * @param env Extra environment variables (PORT defaults to 0, HOST to 127.0.0.1).
 * @param runtime The runtime to run it on (default: this one).
 * @returns The running process, once it listens.
 */
export async function spawnRecipe(
  file: string,
  env: Record<string, string> = {},
  runtime: "deno" | "bun" = RUNTIME === "bun" ? "bun" : "deno",
): Promise<RecipeProcess> {
  const path = `${root}examples/${file}`;
  const bin = runtime === RUNTIME ? process.execPath : runtime === "bun" ? BUN_BIN : null;
  if (bin === null) throw new Error(`No ${runtime} binary to run examples/${file}`);
  const args = runtime === "deno" ? ["run", "-A", path] : [path];
  const child = spawn(bin, args, {
    cwd: root,
    env: { ...process.env, PORT: "0", HOST: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
  const exited = new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    child.once("exit", (code) => resolve(code));
  });
  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), 3_000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 20_000;
  let gone = false;
  void exited.then(() => (gone = true));
  for (;;) {
    const m = (out + err).match(/listening on http:\/\/[^\s/]+:(\d+)\//);
    if (m) {
      return { child, port: Number(m[1]), stdout: () => out, stderr: () => err, stop };
    }
    if (gone) throw new Error(`examples/${file} exited before listening:\n${out}${err}`);
    if (Date.now() > deadline) {
      await stop("SIGKILL");
      throw new Error(`examples/${file} did not listen within 20 s:\n${out}${err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
