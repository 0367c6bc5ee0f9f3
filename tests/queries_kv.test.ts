// The cluster-wide queries on Deno KV under churn: 3 instance processes of
// tests/fixtures/kv_node.ts on one KV file (polling), each serving the query
// API; clients join, leave and reopen tabs across them while every instance
// answers, and at the end every instance's answers equal the truth.

import { after, before, describe, it } from "node:test";
import { type KvNode, spawnKvNode, stopKvNode } from "./_kv_cluster.ts";
import { queriesUnderChurn } from "./_churn_queries.ts";

const D = (globalThis as unknown as { Deno?: typeof Deno }).Deno;
const IS_DENO = D !== undefined && !("Bun" in globalThis);

if (!IS_DENO) {
  console.log("[queries_kv] SKIPPED: the Deno KV cluster needs Deno; it runs under `deno test`");
  describe.skip("Deno KV queries under churn (Deno only)", () => {
    it("runs under Deno", () => {});
  });
} else {
  describe("Deno KV: queries under churn on 3 processes sharing one KV file", () => {
    let dir = "";
    let nodes: KvNode[] = [];

    before(async () => {
      dir = await D!.makeTempDir({ prefix: "presently-queries-kv-" });
      const path = `${dir}/presence.sqlite3`;
      const env = { LEASE_TTL_MS: 2000, POLL_MS: 100 };
      nodes = await Promise.all([0, 1, 2].map(() => spawnKvNode(path, env)));
    });

    after(async () => {
      await Promise.all(nodes.map((n) => stopKvNode(n)));
      if (dir) D!.removeSync(dir, { recursive: true });
    });

    it("count, getRoom, listRooms and userRooms on every instance equal the truth", async () => {
      const { checks } = await queriesUnderChurn(nodes.map((n) => n.url), 120);
      console.log(
        `[queries_kv] 120 churn steps, ${checks} query rounds during churn, all 3 instances agree`,
      );
    });
  });
}
