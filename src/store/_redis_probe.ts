// Counts of what a RedisPresenceStore received over pub/sub, for the
// counting benchmarks (bench/cluster_counts.ts). Internal: not exported.

/** Pub/sub messages and the events in them, received by one store handle. */
export interface Received {
  messages: number;
  events: number;
}

/** Store handle -> what it received over pub/sub so far. */
export const received: WeakMap<object, Received> = new WeakMap();
