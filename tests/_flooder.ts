// A flooding client in its own process (so it does not share the server's
// event loop): for `<ms>` it opens a connection, joins `<room>`, and sends
// publishes and metadata reads as fast as the socket takes them; when the
// server closes it (4429) it reconnects at once. Prints one JSON line of
// counters at the end.
//
//   deno run -A tests/_flooder.ts <port> <ms> <room>
//   bun tests/_flooder.ts <port> <ms> <room>

import process from "node:process";
import { RawWs } from "./_rawws.ts";

const [port, ms, room] = process.argv.slice(-3);
const end = Date.now() + Number(ms);
const totals = {
  connections: 0,
  sent: 0,
  ok: 0,
  rateLimited: 0,
  otherErrors: 0,
  closes: {} as Record<string, number>,
};

while (Date.now() < end) {
  let ws: RawWs;
  try {
    ws = await RawWs.connect(Number(port));
  } catch {
    continue;
  }
  totals.connections++;
  ws.keep = false;
  ws.onText = (t) => {
    if (t.startsWith('{"t":"ok"')) totals.ok++;
    else if (t.includes('"rate_limited"')) totals.rateLimited++;
    else if (t.startsWith('{"t":"err"')) totals.otherErrors++;
  };
  ws.sendText(JSON.stringify({ op: "join", id: 1, room }));
  let id = 1;
  while (!ws.ended && ws.closeFrame === null && Date.now() < end) {
    for (let i = 0; i < 100; i++) {
      ws.sendText(
        ++id % 2 === 0
          ? `{"op":"state","id":${id},"room":${JSON.stringify(room)},"state":{"flood":${id}}}`
          : `{"op":"meta","id":${id},"cid":"x"}`,
      );
    }
    totals.sent += 100;
    // Yield to read answers; wait when the kernel no longer takes our bytes.
    await new Promise((r) => setTimeout(r, ws.socket.writableLength > 256 * 1024 ? 5 : 0));
  }
  const code = String(ws.closeFrame?.code ?? (ws.ended ? "dropped" : "open at the end"));
  totals.closes[code] = (totals.closes[code] ?? 0) + 1;
  ws.destroy();
}
console.log(JSON.stringify(totals));
process.exit(0);
