// `deno task build` as a test: each client entry (the core within 4 KB
// min+gzip, the bindings and the throttled client within their own budgets)
// bundles to one minified ESM file and pulls in no server or store code.
// Runs under Deno (the build script is a Deno script); Bun only reports a skip.

import { it } from "node:test";
import assert from "node:assert/strict";

// deno-lint-ignore no-explicit-any
const D = (globalThis as any).Deno as typeof Deno | undefined;

if (!D) {
  it.skip("the client bundle check runs under Deno", () => {});
} else {
  it("every client entry bundles within its budget and holds no server or store code", async () => {
    const out = await new D.Command(D.execPath(), {
      args: ["run", "-A", "scripts/build.ts"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    const sizes = new Map(
      [...text.matchAll(/(\S+\.ts) minified: \d+ B, min\+gzip: (\d+) B \(budget (\d+) B\)/g)]
        .map((m) => [m[1]!, { gz: Number(m[2]), budget: Number(m[3]) }]),
    );
    // The core stays within 4 KB; bindings and throttling have budgets of their own.
    assert.deepEqual([...sizes.keys()], ["client.ts", "presence.ts", "throttle.ts"], text);
    assert.equal(sizes.get("client.ts")!.budget, 4096);
    for (const [entry, { gz, budget }] of sizes) {
      assert.ok(gz <= budget, `${entry} is ${gz} B (budget ${budget} B)`);
      console.log(`[bundle] ${entry} min+gzip: ${gz} B (budget ${budget} B)`);
    }
    assert.doesNotMatch(text, /inputs: .*src\/(server|store|adapters)\//);
  });
}
