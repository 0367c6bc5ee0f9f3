// Where a Bun server's memory per connection goes: the raw Bun.serve ceiling
// and Presently on Bun, each holding C connections over C/10 Zipf rooms (the
// capacity benchmark's ramp-up: joined, subscribed, with a state), heap after
// a full GC (bun:jsc heapStats) before and after, per connection, by object
// type.
//
//   deno run -A bench/heap_profile.ts [--c 5000] [--gens 2] [--targets raw-bun,presently-bun]

const root = new URL("..", import.meta.url).pathname;
const bun = `${root}node_modules/.bin/bun`;
const arg = (name: string, dflt: string) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1]! : dflt;
};
const C = Number(arg("c", "5000"));
const GENS = Number(arg("gens", "2"));
const targets = arg("targets", "raw-bun,presently-bun").split(",");
const FILES: Record<string, string> = {
  "raw-bun": "bench/servers/raw_bun.ts",
  "presently-bun": "bench/servers/presently_bun.ts",
};

interface Heap {
  heapSize: number;
  objectCount: number;
  types: Record<string, number>;
}

function spawn(cmd: string[]): Deno.ChildProcess {
  const quoted = cmd.map((c) => `'${c.replace(/'/g, "'\\''")}'`).join(" ");
  return new Deno.Command("sh", {
    args: ["-c", `ulimit -n "$(ulimit -Hn)"; exec ${quoted}`],
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

async function profile(target: string) {
  const server = spawn([bun, FILES[target]!]);
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
  return {
    target,
    joined,
    heapBytesPerConn: per(before.heapSize, after.heapSize),
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
console.log("| target | joined | heap B/conn | objects/conn | RSS KB/conn |");
console.log("| --- | ---: | ---: | ---: | ---: |");
for (const r of results) {
  console.log(
    `| ${r.target} | ${r.joined} | ${r.heapBytesPerConn.toFixed(0)} | ${
      r.objectsPerConn.toFixed(1)
    } | ${r.rssKbPerConn.toFixed(2)} |`,
  );
}
for (const r of results) {
  console.log(`\n${r.target}: objects per connection by type (top 16)`);
  console.log(
    r.types.slice(0, 16).map((t) => `${t.type} ${t.perConn.toFixed(2)}`).join(", "),
  );
}
