// Spawn and stop tests/fixtures/kv_node.ts processes (Deno only): shared by
// tests/cluster_kv.test.ts and bench/propagation_kv.ts.
/// <reference lib="deno.unstable" />

/** A running kv_node process. */
export interface KvNode {
  child: Deno.ChildProcess;
  /** `ws://127.0.0.1:<port>/` */
  url: string;
}

/** Start one instance on the KV file `kvPath`; resolves once it listens. */
export async function spawnKvNode(
  kvPath: string,
  env: { LEASE_TTL_MS?: number; POLL_MS?: number; GRACE_MS?: number } = {},
): Promise<KvNode> {
  const fixture = new URL("./fixtures/kv_node.ts", import.meta.url).pathname;
  const root = new URL("..", import.meta.url).pathname;
  const vars: Record<string, string> = { KV_PATH: kvPath };
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined) vars[k] = String(v);
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", fixture],
    cwd: root,
    env: vars,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const deadline = Date.now() + 20_000;
  for (;;) {
    const match = out.match(/LISTENING (\d+)/);
    if (match) {
      // Keep draining stdout so the child never blocks on a full pipe.
      (async () => {
        try {
          while (!(await reader.read()).done) { /* discard */ }
        } catch { /* the child died */ }
      })();
      return { child, url: `ws://127.0.0.1:${match[1]}/` };
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error("kv_node did not start within 20 s");
    }
    const { done, value } = await reader.read();
    if (done) throw new Error(`kv_node exited before listening: ${out}`);
    out += value;
  }
}

/** Send `signal` (SIGKILL after 3 s) and wait for the process to exit. */
export async function stopKvNode(
  node: KvNode | undefined,
  signal: Deno.Signal = "SIGTERM",
): Promise<void> {
  if (!node) return;
  try {
    node.child.kill(signal);
  } catch { /* already gone */ }
  const timer = setTimeout(() => {
    try {
      node.child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, 3_000);
  await node.child.status;
  clearTimeout(timer);
}
