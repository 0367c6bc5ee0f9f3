// Log every presence change as one JSON line on stdout, from `server.events()`:
// ready for jq, Loki, Datadog or any log pipeline. Runs on Deno and Bun:
//   deno run -A examples/events_log.ts | jq -c 'select(.type == "join")'
//   bun examples/events_log.ts > presence.jsonl
// Env: PORT (8000; 0 picks a free one), HOST (0.0.0.0). Human messages go to
// stderr, so stdout holds JSON lines only.

import process from "node:process";
import { PresenceServer } from "../mod.ts";
import { onShutdown, serve } from "./_serve.ts";

/**
 * Write each event of `server.events()` as a JSON line, until the server
 * closes or `stop()` is called. Events carry `type` (`join`, `leave`,
 * `state`), `room`, `connectionId`, `seq` and `timestamp`, plus `meta` (the
 * public metadata) on joins, `reason` on leaves and `state` on states.
 *
 * @param server The presence server.
 * @param write Where lines go. Default: stdout.
 * @returns `stop()`, which resolves once logging has stopped.
 */
export function logPresenceEvents(
  server: PresenceServer,
  write: (line: string) => void = (line) => console.log(line),
): () => Promise<void> {
  const reader = server.events().getReader();
  const done = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        write(JSON.stringify(value));
      }
    } catch (error) {
      // The reader fell more than 100 000 events behind, or was cancelled.
      console.error("events_log: stopped:", error);
    }
  })();
  return async () => {
    await reader.cancel();
    await done;
  };
}

if (import.meta.main) {
  const presence = new PresenceServer({
    authenticate: (req) => ({ userId: new URL(req.url).searchParams.get("user") ?? "anon" }),
  });
  presence.trackPresence(/^room:/);
  const stopLogging = logPresenceEvents(presence);
  const served = await serve(presence);
  onShutdown(async () => {
    await presence.close(); // logs the last leaves, then ends the stream
    await stopLogging();
    await served.close();
  });
  console.error(
    `Presently events log listening on http://${process.env.HOST ?? "0.0.0.0"}:${served.port}/`,
  );
}
