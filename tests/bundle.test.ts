// `deno task build` as a test: the client bundles to one minified ESM file
// within the 4 KB min+gzip budget and pulls in no server or store code.
// Runs under Deno (the build script is a Deno script); Bun only reports a skip.

import { it } from "node:test";
import assert from "node:assert/strict";

// deno-lint-ignore no-explicit-any
const D = (globalThis as any).Deno as typeof Deno | undefined;

if (!D) {
  it.skip("the client bundle check runs under Deno", () => {});
} else {
  it("the client bundle is within 4096 B min+gzip and holds no server or store code", async () => {
    const out = await new D.Command(D.execPath(), {
      args: ["run", "-A", "scripts/build.ts"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    const m = text.match(/min\+gzip: (\d+) B/);
    assert.ok(m, text);
    assert.ok(Number(m[1]) <= 4096, `bundle is ${m[1]} B`);
    assert.doesNotMatch(text, /src\/(server|store|adapters)\//);
    console.log(`[bundle] client min+gzip: ${m[1]} B`);
  });
}
