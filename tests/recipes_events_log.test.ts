// The events log recipe (examples/events_log.ts), run as its own process: a
// client's join, state and leave come out as JSON lines on stdout, and nothing
// else does.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PresenceClient } from "../client.ts";
import { RUNTIME, waitUntil } from "./_harness.ts";
import { type RecipeProcess, spawnRecipe } from "./_recipes.ts";

interface Line {
  type: string;
  room: string;
  connectionId: string;
  seq: number;
  timestamp: number;
  meta?: unknown;
  state?: unknown;
  reason?: string;
}

describe(`events log recipe (${RUNTIME})`, () => {
  let proc: RecipeProcess;
  const lines = () =>
    proc.stdout().split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l) as Line);

  before(async () => {
    proc = await spawnRecipe("events_log.ts");
  });

  after(async () => {
    await proc?.stop();
  });

  it("logs a join, a state and a leave as JSON lines on stdout", async () => {
    const ada = new PresenceClient(`ws://127.0.0.1:${proc.port}/?user=ada`);
    await ada.connect();
    await ada.joinRoom("room:log");
    await ada.publishPresenceState("room:log", { state: { typing: true } });
    await ada.leaveRoom("room:log");
    const id = ada.connectionId;
    await ada.close();

    await waitUntil(() => lines().some((l) => l.type === "leave"), 5000, "the leave line");
    const mine = lines().filter((l) => l.connectionId === id);
    assert.deepEqual(mine.map((l) => [l.type, l.room, l.seq]), [
      ["join", "room:log", 1],
      ["state", "room:log", 2],
      ["leave", "room:log", 3],
    ]);
    assert.deepEqual(mine[0]!.meta, { userId: "ada" });
    assert.deepEqual(mine[1]!.state, { typing: true });
    assert.equal(mine[2]!.reason, "leave");
    for (const l of mine) assert.equal(typeof l.timestamp, "number");
    assert.match(proc.stderr(), /listening on/, "human messages go to stderr");
  });
});
