// Benchmark target: Presently on the Deno adapter (Deno.serve on 127.0.0.1:0).

import { presenceHandler } from "../../src/adapters/deno.ts";
import { benchPresence } from "./_presently.ts";

const presence = benchPresence((k) => Deno.env.get(k));
Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: ({ port }) => console.log(`PORT ${port}`),
}, presenceHandler(presence));
// Exit on SIGTERM so `--cpu-prof` can write its profile.
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
