// Benchmark peer: @prsm/realtime (Mesh) on Node with a local redis-server,
// presence tracked in every room. REDIS_PORT is set by bench/run.ts.
import { RealtimeServer } from "@prsm/realtime";

const server = new RealtimeServer({
  redis: { host: "127.0.0.1", port: Number(process.env.REDIS_PORT) },
});
server.trackPresence(/^.+$/);
server.onError(() => {});
await server.listen(0);
console.log(`PORT ${server.port}`);
process.on("SIGTERM", () => process.exit(0));
