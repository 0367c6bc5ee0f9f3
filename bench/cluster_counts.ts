// Counting, not timing, on a real 3-master Redis Cluster (issue 11):
//   deno task bench:cluster-counts        (deno run -A bench/cluster_counts.ts [seed])
//
// A seeded trace over 6 store handles (one per simulated instance), 600 rooms
// with Zipf-sized membership (most rooms 2-10 members, one of 640): every
// member joins, sets a state, half of them patch it, a quarter leave. Each
// handle watches a seeded third of the rooms. Counted:
//   - scripts run per master (INFO commandstats: evalsha + eval), against a
//     third of the total: rooms are the unit of placement, so the balance is
//     that of the rooms' hash slots, weighted by their traffic;
//   - events each handle received over sharded pub/sub, against the events
//     made in the rooms it watches (exactly those, nothing else);
//   - after the trace, 2 000 state writes in a busy room nobody watches:
//     what each handle received meanwhile (must be 0 more).
// Prints a Markdown report and writes it into bench/RESULTS.md.

import { RedisPresenceStore } from "../src/store/redis.ts";
import { received } from "../src/store/_redis_probe.ts";
import { startRedisCluster } from "../tests/_redis.ts";
import type { PresenceEvent } from "../src/store/types.ts";

const SEED = Number(Deno.args[0] ?? 11);
const HANDLES = 6;
const ROOMS = 600;
const BUSY_WRITES = 2_000;

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rnd = mulberry32(SEED);
const pick = (n: number) => Math.floor(rnd() * n);

const cluster = await startRedisCluster(3);
const prefix = `bench${SEED}:`;
const stores = Array.from(
  { length: HANDLES },
  (_, i) => new RedisPresenceStore({ cluster: [cluster.urls[i % 3]!], prefix }),
);
const rooms = Array.from({ length: ROOMS }, (_, r) => ({
  name: `doc:${r}`,
  size: Math.max(2, Math.floor(640 / (r + 1))),
}));
const made = new Map<string, number>();
const watching = stores.map(() => new Set<string>());
const seen = stores.map(() => new Map<string, number>());
const strays = stores.map(() => 0);
/** Events each handle made in rooms it does not watch (its listeners get those). */
const ownUnwatched = stores.map(() => 0);
for (const [i, store] of stores.entries()) {
  store.subscribe((e: PresenceEvent) => {
    if (watching[i]!.has(e.room)) seen[i]!.set(e.room, (seen[i]!.get(e.room) ?? 0) + 1);
    else strays[i]!++;
  });
  await store.renewLease(`inst${i}`, 60_000, Date.now());
}
for (const [i, store] of stores.entries()) {
  for (const room of rooms) {
    if (rnd() < 1 / 3) {
      watching[i]!.add(room.name);
      store.watchRoom(room.name);
    }
  }
}
// Let every subscription be in place, so pub/sub (not the log) carries all.
await new Promise((r) => setTimeout(r, 2_000));

const before = await Promise.all(cluster.ports.map((p) => cluster.commandStats(p)));
const got = (e: PresenceEvent | null | "not_member", room: string, h: number) => {
  if (e === null || e === "not_member") return;
  made.set(room, (made.get(room) ?? 0) + 1);
  if (!watching[h]!.has(room)) ownUnwatched[h]!++;
};
// The trace: per room, members join, set, patch, leave; rooms run 24 at a time.
const started = performance.now();
type Member = { id: string; h: number };
const plan = rooms.map((room) => ({
  room,
  members: Array.from({ length: room.size }, (_, k): Member => ({ id: `m${k}`, h: pick(HANDLES) })),
  patchers: new Set<number>(),
  leavers: new Set<number>(),
}));
for (const p of plan) {
  for (let k = 0; k < p.members.length; k++) {
    if (rnd() < 0.5) p.patchers.add(k);
    if (rnd() < 0.25) p.leavers.add(k);
  }
}
let ops = 0;
async function runRoom(p: typeof plan[number]): Promise<void> {
  const now = Date.now();
  const name = p.room.name;
  for (const m of p.members) {
    got(await stores[m.h]!.join(name, m.id, `inst${m.h}`, { k: m.id }, now), name, m.h);
    got(
      await stores[m.h]!.setState(name, m.id, { kind: "set", state: { x: 0 } }, null, now),
      name,
      m.h,
    );
    ops += 2;
  }
  for (const [k, m] of p.members.entries()) {
    if (p.patchers.has(k)) {
      got(
        await stores[m.h]!.setState(name, m.id, { kind: "patch", patch: { x: k } }, null, now),
        name,
        m.h,
      );
      ops++;
    }
    if (p.leavers.has(k)) {
      got(await stores[m.h]!.leave(name, m.id, "leave", now), name, m.h);
      ops++;
    }
  }
}
const queue = [...plan];
await Promise.all(Array.from({ length: 24 }, async () => {
  for (let p = queue.shift(); p !== undefined; p = queue.shift()) await runRoom(p);
}));
const traceMs = performance.now() - started;
const after = await Promise.all(cluster.ports.map((p) => cluster.commandStats(p)));
const scripts = after.map((m, i) =>
  (m.get("evalsha") ?? 0) + (m.get("eval") ?? 0) - (before[i]!.get("evalsha") ?? 0) -
  (before[i]!.get("eval") ?? 0)
);
const total = scripts.reduce((a, b) => a + b, 0);

// Every watched room's events, and nothing else, arrive at each handle.
const expected = watching.map((w) => [...w].reduce((n, room) => n + (made.get(room) ?? 0), 0));
const deadline = Date.now() + 20_000;
while (
  Date.now() < deadline &&
  stores.some((s, i) => (received.get(s)?.events ?? 0) < expected[i]!)
) await new Promise((r) => setTimeout(r, 100));
await new Promise((r) => setTimeout(r, 500));
const transport = stores.map((s) => received.get(s)!.events);
const delivered = seen.map((m) => [...m.values()].reduce((a, b) => a + b, 0));

// A busy room nobody watches.
const busyBefore = stores.map((s) => received.get(s)!.events);
const straysBefore = [...strays];
const busyStats = await Promise.all(cluster.ports.map((p) => cluster.commandStats(p)));
await stores[0]!.join("busy", "b0", "inst0", {}, Date.now());
for (let i = 0; i < BUSY_WRITES; i++) {
  await stores[0]!.setState("busy", "b0", { kind: "set", state: { i } }, null, Date.now());
}
await new Promise((r) => setTimeout(r, 500));
ownUnwatched[0]! += BUSY_WRITES + 1;
const busyDelta = stores.map((s, i) => received.get(s)!.events - busyBefore[i]!);
const busyAfter = await Promise.all(cluster.ports.map((p) => cluster.commandStats(p)));
const busyScripts = busyAfter.map((m, i) =>
  (m.get("evalsha") ?? 0) - (busyStats[i]!.get("evalsha") ?? 0)
);

// Which master holds each room: its slot (CLUSTER KEYSLOT) in CLUSTER NODES' ranges.
const nodes = await cluster.command(cluster.ports[0]!, "CLUSTER NODES");
const ranges: Array<[number, number, number]> = [];
for (const line of nodes.split("\n")) {
  const m = line.match(/127\.0\.0\.1:(\d+)@/);
  if (!m || !line.includes("master")) continue;
  const master = cluster.ports.indexOf(Number(m[1]));
  for (const r of line.matchAll(/ (\d+)-(\d+)/g)) ranges.push([Number(r[1]), Number(r[2]), master]);
}
const roomsOn = [0, 0, 0];
const membersOn = [0, 0, 0];
for (const room of rooms) {
  const slot = Number(
    (await cluster.command(cluster.ports[0]!, `CLUSTER KEYSLOT ${prefix}{${room.name}}:q`)).slice(
      1,
    ),
  );
  const master = ranges.find(([lo, hi]) => slot >= lo && slot <= hi)![2];
  roomsOn[master]!++;
  membersOn[master]! += room.size;
}

// The same rooms under other names, so other hash slots: how the spread
// varies with placement alone (each member joins and sets a state).
const PLACEMENTS = 20;
const placements: number[] = [];
for (let k = 1; k <= PLACEMENTS; k++) {
  const at = await Promise.all(cluster.ports.map((p) => cluster.commandStats(p)));
  const todo = rooms.map((room, r) => ({ name: `place${k}:${r}`, size: room.size }));
  await Promise.all(Array.from({ length: 24 }, async () => {
    for (let room = todo.shift(); room !== undefined; room = todo.shift()) {
      for (let m = 0; m < room.size; m++) {
        const store = stores[m % HANDLES]!;
        await store.join(room.name, `m${m}`, `inst${m % HANDLES}`, {}, Date.now());
        await store.setState(room.name, `m${m}`, { kind: "set", state: 1 }, null, Date.now());
      }
    }
  }));
  const end = await Promise.all(cluster.ports.map((p) => cluster.commandStats(p)));
  const n = end.map((m, i) => (m.get("evalsha") ?? 0) - (at[i]!.get("evalsha") ?? 0));
  const all = n.reduce((a, b) => a + b, 0);
  placements.push(Math.max(...n.map((x) => Math.abs(x - all / 3) / (all / 3))));
}

for (const s of stores) await s.close();
await cluster.stop();

const members = rooms.reduce((n, r) => n + r.size, 0);
const third = total / 3;
const spread = scripts.map((n) => (n - third) / third);
const lines: string[] = [];
lines.push(
  `Seed ${SEED}: ${HANDLES} handles, ${ROOMS} rooms (sizes 2..${rooms[0]!.size}, ${
    rooms.filter((r) => r.size <= 10).length
  } rooms of 2-10), ${members} members, ${ops} store writes in ${(traceMs / 1000).toFixed(1)} s.`,
  "",
  "| master | rooms | members | scripts | scripts vs a third of the total |",
  "|---|---:|---:|---:|---:|",
  ...scripts.map((n, i) =>
    `| ${i + 1} | ${roomsOn[i]} | ${membersOn[i]} | ${n} | ${(spread[i]! * 100).toFixed(1)} % |`
  ),
  `| all | ${ROOMS} | ${members} | ${total} | max deviation ${
    (Math.max(...spread.map(Math.abs)) * 100).toFixed(1)
  } % |`,
  "",
  "| handle | rooms watched | events made there | received over pub/sub | delivered to listeners | other rooms' events delivered (own writes there) | received during 2 000 writes in an unwatched room |",
  "|---|---:|---:|---:|---:|---:|---:|",
  ...stores.map((_, i) =>
    `| ${i + 1} | ${watching[i]!.size} | ${expected[i]} | ${transport[i]} | ${delivered[i]} | ${
      strays[i]
    } (${ownUnwatched[i]}) | ${busyDelta[i]} |`
  ),
  "",
  `The busy room's scripts ran on one master: ${busyScripts.join(" / ")} per master.`,
  "",
  `Placement alone: the same ${ROOMS} room sizes under ${PLACEMENTS} other sets of names (so other hash slots), each member joining and setting a state: the busiest master's deviation from a third was within ±15 % in ${
    placements.filter((d) => d <= 0.15).length
  } of ${PLACEMENTS} (median ${
    (([...placements].sort((x, y) => x - y)[PLACEMENTS >> 1]!) * 100).toFixed(1)
  } %, range ${(Math.min(...placements) * 100).toFixed(1)}–${
    (Math.max(...placements) * 100).toFixed(1)
  } %).`,
);
const report = lines.join("\n");
console.log(report);
const ok = spread.every((d) => Math.abs(d) <= 0.15) &&
  transport.every((n, i) => n === expected[i]) &&
  delivered.every((n, i) => n === expected[i]) &&
  busyDelta.every((n) => n === 0) &&
  strays.every((n, i) => n === ownUnwatched[i]);
void straysBefore;
console.log(ok ? "\nall counting checks met" : "\nSOME COUNTING CHECK MISSED");

const path = new URL("./RESULTS.md", import.meta.url);
const text = await Deno.readTextFile(path);
const start = "<!-- cluster-counts:start -->";
const end = "<!-- cluster-counts:end -->";
const block = `${start}\nCommand: \`deno task bench:cluster-counts\` (seed ${SEED}), ${
  new Date().toISOString().slice(0, 10)
}.\n\n${report}\n${end}`;
const i = text.indexOf(start);
const j = text.indexOf(end);
await Deno.writeTextFile(
  path,
  i >= 0 && j > i ? text.slice(0, i) + block + text.slice(j + end.length) : `${text}\n${block}\n`,
);
Deno.exit(ok ? 0 : 1);
