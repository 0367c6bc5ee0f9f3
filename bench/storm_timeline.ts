// `deno run -A bench/storm_timeline.ts [--n 2000] [--targets raw-bun,presently-bun] [--every 50]`
//
// Where a Bun server's memory goes during a join storm: its RSS (from /proc)
// and its JS heap (size, capacity and extra memory, from `bun:jsc`, sampled
// inside the server without forcing a collection) every `--every` ms, from
// start through the storm (bench/gen.ts, `--phases join`) to 1 s after it.
// A peak RSS well above the heap's capacity is native memory: JIT code, send
// buffers, the allocator's slack. Prints one table per target.

const args = Deno.args;
const flag = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const n = flag("n", "2000");
const every = Number(flag("every", "50"));
const targets = flag("targets", "raw-bun,presently-bun").split(",");
const benchDir = new URL(".", import.meta.url).pathname;
const bun = new URL("../node_modules/.bin/bun", import.meta.url).pathname;
const mb = (bytes: number) => (bytes / 1048576).toFixed(1);

function rssKb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(status.match(/VmRSS:\s+(\d+)/)?.[1] ?? 0);
}

for (const target of targets) {
  const file = `${benchDir}servers/${target.replace("-", "_")}.ts`;
  const child = new Deno.Command(bun, {
    args: [file],
    stdout: "piped",
    stderr: "piped",
    env: { BENCH_HEAP_TRACE: String(every) },
  }).spawn();
  const t0 = performance.now();
  const heap: Array<[number, string]> = [];
  const decoder = new TextDecoder();
  // The server's trace lines are on stderr, its port on stdout.
  const traced = (async () => {
    let buf = "";
    for await (const chunk of child.stderr) {
      buf += decoder.decode(chunk);
      const lines = buf.split("\n");
      buf = lines.pop()!;
      for (const line of lines) {
        const m = line.match(/^TRACE (\d+) (\d+) (\d+) (\d+)/);
        if (m) heap.push([Number(m[1]), `${mb(+m[2]!)} / ${mb(+m[3]!)} / ${mb(+m[4]!)}`]);
      }
    }
  })();
  let port = 0;
  let out = "";
  const reader = child.stdout.getReader();
  while (port === 0) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${target} did not print its port`);
    out += decoder.decode(value);
    port = Number(out.match(/PORT (\d+)/)?.[1] ?? 0);
  }
  void (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  const rss: Array<[number, number]> = [];
  const sampler = setInterval(() => {
    rss.push([Math.round(performance.now() - t0), rssKb(child.pid)]);
  }, every);
  const gen = await new Deno.Command(bun, {
    args: [
      `${benchDir}gen.ts`,
      "--url",
      `ws://127.0.0.1:${port}/`,
      "--proto",
      "presently",
      "--n",
      n,
      "--phases",
      "join",
      "--server-pid",
      String(child.pid),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stormEnd = Math.round(performance.now() - t0);
  await new Promise((r) => setTimeout(r, 1000));
  clearInterval(sampler);
  child.kill("SIGTERM");
  await child.status;
  await traced;
  const storm = decoder.decode(gen.stderr).match(/join storm: complete in (\d+) ms/)?.[1];
  console.log(
    `\n${target}, N = ${n}: join storm ${storm ?? "?"} ms, the generator done at ${stormEnd} ms`,
  );
  console.log("| ms | RSS MB | JS heap MB: size / capacity / extra |");
  console.log("| -: | -----: | ----------------------------------: |");
  for (const [t, kb] of rss) {
    // The heap sample nearest in time (both every `every` ms; the heap's
    // clock starts with the server's process, a few ms after this one's).
    let near = "–";
    let best = Infinity;
    for (const [ht, h] of heap) {
      if (Math.abs(ht - t) < best) [best, near] = [Math.abs(ht - t), h];
    }
    console.log(`| ${t} | ${(kb / 1024).toFixed(1)} | ${near} |`);
  }
}
