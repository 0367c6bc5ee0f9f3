// On SIGUSR2, a Bun benchmark server prints `HEAP {json}` on stdout: its heap
// after a full GC (`bun:jsc` heapStats: size and object counts by type), for
// bench/heap_profile.ts. Nothing happens unless the signal comes.

interface ProcessLike {
  on(sig: string, cb: () => void): void;
  env?: Record<string, string | undefined>;
}

let snapshots = 0;

/**
 * With BENCH_HEAP_TRACE=<ms> (Bun only), print `TRACE <ms since start>
 * <heapSize> <heapCapacity> <extraMemorySize>` on stderr every <ms>, without
 * forcing a collection: for bench/storm_timeline.ts.
 */
export function traceHeap(proc: ProcessLike): void {
  const every = Number(proc.env?.BENCH_HEAP_TRACE ?? 0);
  if (!(every > 0) || !(globalThis as { Bun?: unknown }).Bun) return;
  const t0 = performance.now();
  import("bun:jsc" as string).then((jsc) => {
    setInterval(() => {
      const s = jsc.heapStats();
      const t = Math.round(performance.now() - t0);
      console.error(`TRACE ${t} ${s.heapSize} ${s.heapCapacity} ${s.extraMemorySize}`);
    }, every);
  });
}

/** Install the SIGUSR2 heap report (Bun only). */
export function reportHeapOnSignal(proc: ProcessLike): void {
  const bun = (globalThis as unknown as {
    Bun?: {
      gc(sync: boolean): void;
      generateHeapSnapshot(): unknown;
      write(path: string, data: string): Promise<number>;
    };
  }).Bun;
  if (!bun) return;
  proc.on("SIGUSR2", async () => {
    const jsc = await import("bun:jsc" as string) as {
      heapStats(): {
        heapSize: number;
        heapCapacity: number;
        extraMemorySize: number;
        objectCount: number;
        objectTypeCounts: Record<string, number>;
      };
    };
    bun.gc(true);
    bun.gc(true);
    const s = jsc.heapStats();
    // With BENCH_HEAP_SNAPSHOT=<prefix>, also write a full heap snapshot
    // (JSC's inspector format) to <prefix>-<n>.json, for --snapshot.
    const prefix = proc.env?.BENCH_HEAP_SNAPSHOT;
    if (prefix) {
      const file = `${prefix}-${snapshots++}.json`;
      await bun.write(file, JSON.stringify(bun.generateHeapSnapshot()));
      console.log(`SNAPSHOT ${file}`);
    }
    console.log(
      `HEAP ${
        JSON.stringify({
          heapSize: s.heapSize,
          heapCapacity: s.heapCapacity,
          extraMemorySize: s.extraMemorySize,
          rss: (globalThis as unknown as { process: { memoryUsage(): { rss: number } } }).process
            .memoryUsage().rss,
          objectCount: s.objectCount,
          types: s.objectTypeCounts,
        })
      }`,
    );
  });
}
