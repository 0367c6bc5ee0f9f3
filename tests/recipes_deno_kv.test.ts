// The Deno KV recipe (examples/deno-kv/server.ts): two processes sharing one
// temporary KV file see each other's clients, and shut down cleanly. Deno only.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PresenceClient, type PresenceUpdate } from "../client.ts";
import { RUNTIME, waitUntil } from "./_harness.ts";
import { type RecipeProcess, spawnRecipe } from "./_recipes.ts";

/** Events cross processes by polling the shared file (KV_POLL_MS below). */
const CROSS_MS = 5_000;

if (RUNTIME !== "deno") {
  console.log("[recipes_deno_kv] SKIPPED under Bun: Deno KV needs Deno; it runs under `deno test`");
  describe.skip("Deno KV recipe (Deno only)", () => {
    it("runs under Deno", () => {});
  });
} else {
  describe("Deno KV recipe: two processes on one KV file", () => {
    let dir = "";
    let a: RecipeProcess;
    let b: RecipeProcess;
    const clients: PresenceClient[] = [];

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), "presently-kv-recipe-"));
      const env = { KV_PATH: join(dir, "presence.sqlite3"), KV_POLL_MS: "100" };
      // One after the other: both would create the SQLite file at once otherwise.
      a = await spawnRecipe("deno-kv/server.ts", env);
      b = await spawnRecipe("deno-kv/server.ts", env);
    });

    after(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await Promise.all([a?.stop(), b?.stop()]);
      await rm(dir, { recursive: true, force: true });
    });

    it("a client on each process sees the other join, publish and leave", async () => {
      const ada = new PresenceClient(`ws://127.0.0.1:${a.port}/?user=ada`);
      const bob = new PresenceClient(`ws://127.0.0.1:${b.port}/?user=bob`);
      clients.push(ada, bob);
      await ada.connect();
      await bob.connect();

      const adaSees: PresenceUpdate[] = [];
      assert.equal((await ada.joinRoom("room:kv", (u) => adaSees.push(u))).success, true);
      const joined = await bob.joinRoom("room:kv");
      assert.deepEqual(
        joined.present.map((p) => p.id).sort(),
        [ada.connectionId, bob.connectionId].sort(),
        "bob's join in process B lists ada from process A",
      );
      await bob.publishPresenceState("room:kv", { state: { typing: true } });
      await waitUntil(
        () => adaSees.some((u) => u.type === "state" && u.connectionId === bob.connectionId),
        CROSS_MS,
        "bob's state in process A",
      );
      const join = adaSees.find((u) => u.type === "join" && u.connectionId === bob.connectionId);
      assert.deepEqual(join && "meta" in join ? join.meta : null, { userId: "bob" });

      const bobId = bob.connectionId;
      await bob.close();
      await waitUntil(
        () => adaSees.some((u) => u.type === "leave" && u.connectionId === bobId),
        CROSS_MS,
        "bob's leave in process A",
      );
    });

    it("each process shuts down cleanly on SIGTERM", async () => {
      await Promise.all([a.stop("SIGTERM"), b.stop("SIGTERM")]);
      assert.match(a.stdout(), /closed\n/);
      assert.match(b.stdout(), /closed\n/);
    });
  });
}
