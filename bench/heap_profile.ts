// Where a Bun server's memory per connection goes: the raw Bun.serve ceiling
// and Presently on Bun, each holding C connections over C/10 Zipf rooms (the
// capacity benchmark's ramp-up: joined, subscribed, with a state), heap after
// a full GC (bun:jsc heapStats) before and after, per connection, by object
// type.
//
//   deno run -A bench/heap_profile.ts [--c 5000] [--gens 2] [--targets raw-bun,presently-bun]
//     [--snapshot]
//
// --snapshot also takes a full heap snapshot before and after, and prints
// per connection the bytes by class (class instances by name, which
// heapStats lumps into "Object"), plain objects by their property names, and
// each Map's and Set's storage by the property that holds it.

const root = new URL("..", import.meta.url).pathname;
const bun = `${root}node_modules/.bin/bun`;
const arg = (name: string, dflt: string) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1]! : dflt;
};
const C = Number(arg("c", "5000"));
const GENS = Number(arg("gens", "2"));
const targets = arg("targets", "raw-bun,presently-bun").split(",");
const SNAPSHOT = Deno.args.includes("--snapshot");
const FILES: Record<string, string> = {
  "raw-bun": "bench/servers/raw_bun.ts",
  "presently-bun": "bench/servers/presently_bun.ts",
};

interface Heap {
  heapSize: number;
  heapCapacity: number;
  extraMemorySize: number;
  rss: number;
  objectCount: number;
  types: Record<string, number>;
}

function spawn(cmd: string[], env: Record<string, string> = {}): Deno.ChildProcess {
  const quoted = cmd.map((c) => `'${c.replace(/'/g, "'\\''")}'`).join(" ");
  return new Deno.Command("sh", {
    args: ["-c", `ulimit -n "$(ulimit -Hn)"; exec ${quoted}`],
    env,
    cwd: root,
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
}

function lines(child: Deno.ChildProcess): () => Promise<string> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const queue: string[] = [];
  return async () => {
    for (;;) {
      if (queue.length) return queue.shift()!;
      const { value, done } = await reader.read();
      if (done) throw new Error("stdout ended");
      buf += value;
      const parts = buf.split("\n");
      buf = parts.pop()!;
      queue.push(...parts);
    }
  };
}

async function expect(next: () => Promise<string>, prefix: string): Promise<string> {
  for (;;) {
    const l = await next();
    if (l.startsWith(prefix)) return l.slice(prefix.length).trim();
  }
}

const rss = (pid: number) => {
  const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^VmRSS:\s+(\d+) kB/m);
  return m ? Number(m[1]) : 0;
};

/** A heap snapshot (JSC inspector format, version 2 or 3) by node. */
interface Snapshot {
  nodes: number[];
  nodeClassNames: string[];
  edges: number[];
  edgeTypes: string[];
  edgeNames: string[];
}

/**
 * Bytes per snapshot node group: `class` (class name, or a plain object's
 * sorted property names) and `store` (a Map's or Set's size plus its
 * storage, by the class and property that hold it).
 */
function groups(path: string): { byClass: Map<string, number>; stores: Map<string, number> } {
  const s = JSON.parse(Deno.readTextFileSync(path)) as Snapshot;
  const size = new Map<number, number>();
  const cls = new Map<number, string>();
  for (let i = 0; i < s.nodes.length; i += 4) {
    size.set(s.nodes[i]!, s.nodes[i + 1]!);
    cls.set(s.nodes[i]!, s.nodeClassNames[s.nodes[i + 2]!]!);
  }
  const props = new Map<number, string[]>();
  const owner = new Map<number, string>();
  const storage = new Map<number, number>();
  for (let i = 0; i < s.edges.length; i += 4) {
    const [from, to, type, name] = s.edges.slice(i, i + 4) as [number, number, number, number];
    const kind = s.edgeTypes[type];
    if (kind === "Property" || kind === "Variable") {
      const label = s.edgeNames[name] ?? String(name);
      let list = props.get(from);
      if (!list) props.set(from, list = []);
      list.push(label);
      owner.set(to, `${cls.get(from)}.${label}`);
    } else if (cls.get(to) === "Cell Butterfly") {
      storage.set(from, (storage.get(from) ?? 0) + (size.get(to) ?? 0));
    }
  }
  const byClass = new Map<string, number>();
  const stores = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  for (const [id, c] of cls) {
    if (c === "Cell Butterfly") continue; // counted with what holds it
    const own = (size.get(id) ?? 0) + (storage.get(id) ?? 0);
    const key = c === "Object" ? `{${(props.get(id) ?? []).sort().join(",")}}` : c;
    add(byClass, key, own);
    if (c === "Map" || c === "Set") add(stores, `${c} in ${owner.get(id) ?? "?"}`, own);
  }
  return { byClass, stores };
}

function perConnection(
  before: Map<string, number>,
  after: Map<string, number>,
  joined: number,
): Array<[string, number]> {
  return [...after].map(([k, v]) => [k, (v - (before.get(k) ?? 0)) / joined] as [string, number])
    .filter(([, v]) => v >= 1).sort((a, b) => b[1] - a[1]);
}

async function profile(target: string) {
  const prefix = `${root}bench/out/heap-${target}`;
  Deno.mkdirSync(`${root}bench/out`, { recursive: true });
  const server = spawn([bun, FILES[target]!], SNAPSHOT ? { BENCH_HEAP_SNAPSHOT: prefix } : {});
  const out = lines(server);
  const port = await expect(out, "PORT");
  await new Promise((r) => setTimeout(r, 1000));
  server.kill("SIGUSR2");
  const before = JSON.parse(await expect(out, "HEAP")) as Heap;
  const rss0 = rss(server.pid);
  const gens = Array.from({ length: GENS }, (_, g) =>
    spawn([
      bun,
      "bench/capacity_gen.ts",
      "--url",
      `ws://127.0.0.1:${port}/`,
      "--c",
      String(C),
      "--r",
      String(Math.round(C / 10)),
      "--gen",
      String(g),
      "--gens",
      String(GENS),
    ]));
  const joined = (await Promise.all(gens.map((g) => expect(lines(g), "JOINED"))))
    .reduce((a, j) => a + JSON.parse(j).joined, 0);
  await new Promise((r) => setTimeout(r, 2000));
  server.kill("SIGUSR2");
  const after = JSON.parse(await expect(out, "HEAP")) as Heap;
  const rss1 = rss(server.pid);
  for (const g of gens) g.kill("SIGKILL");
  server.kill("SIGKILL");
  await Promise.all([server.status, ...gens.map((g) => g.status)]);
  const per = (a: number, b: number) => (b - a) / joined;
  const types = Object.keys(after.types).map((t) => ({
    type: t,
    perConn: per(before.types[t] ?? 0, after.types[t]!),
  })).sort((a, b) => b.perConn - a.perConn);
  let snapshot = null;
  if (SNAPSHOT) {
    const [a, b] = [groups(`${prefix}-0.json`), groups(`${prefix}-1.json`)];
    snapshot = {
      byClass: perConnection(a.byClass, b.byClass, joined),
      stores: perConnection(a.stores, b.stores, joined),
    };
  }
  return {
    target,
    joined,
    snapshot,
    heapBytesPerConn: per(before.heapSize, after.heapSize),
    capacityBytesPerConn: per(before.heapCapacity, after.heapCapacity),
    extraBytesPerConn: per(before.extraMemorySize, after.extraMemorySize),
    gcRssKbPerConn: per(before.rss, after.rss) / 1024,
    objectsPerConn: per(before.objectCount, after.objectCount),
    rssKbPerConn: per(rss0, rss1),
    types,
  };
}

const results = [];
for (const t of targets) results.push(await profile(t));
console.log(
  `C = ${C}, R = ${Math.round(C / 10)}, ${GENS} generators (Bun ${
    Deno.env.get("BUN_VERSION") ?? ""
  })`,
);
console.log(
  "| target | joined | heap B/conn | heap capacity B/conn | extra memory B/conn | objects/conn | RSS KB/conn after GC | RSS KB/conn |",
);
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const r of results) {
  console.log(
    `| ${r.target} | ${r.joined} | ${r.heapBytesPerConn.toFixed(0)} | ${
      r.capacityBytesPerConn.toFixed(0)
    } | ${r.extraBytesPerConn.toFixed(0)} | ${r.objectsPerConn.toFixed(1)} | ${
      r.gcRssKbPerConn.toFixed(2)
    } | ${r.rssKbPerConn.toFixed(2)} |`,
  );
}
for (const r of results) {
  console.log(`\n${r.target}: objects per connection by type (top 16)`);
  console.log(
    r.types.slice(0, 16).map((t) => `${t.type} ${t.perConn.toFixed(2)}`).join(", "),
  );
}
for (const r of results) {
  if (!r.snapshot) continue;
  const list = (rows: Array<[string, number]>) =>
    rows.slice(0, 20).map(([k, v]) => `  ${v.toFixed(1).padStart(7)} B  ${k}`).join("\n");
  console.log(`\n${r.target}: heap bytes per connection by class or shape (snapshot)`);
  console.log(list(r.snapshot.byClass));
  console.log(`${r.target}: Map and Set bytes per connection (with storage), by holder`);
  console.log(list(r.snapshot.stores));
}
