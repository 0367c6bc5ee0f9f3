// Every recipe under examples/ (the demo has its own tests) type-checks with
// `deno check`, including those only ever run as processes or under Bun.
// Deno only.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { RUNTIME } from "./_harness.ts";

const root = new URL("..", import.meta.url).pathname;

function recipeFiles(dir = `${root}examples`): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory && entry.name !== "demo") out.push(...recipeFiles(path));
    else if (entry.isFile && entry.name.endsWith(".ts")) out.push(path);
  }
  return out.sort();
}

if (RUNTIME !== "deno") {
  console.log("[recipes_check] SKIPPED under Bun: `deno check` runs under `deno test`");
  describe.skip("recipes type-check (Deno only)", () => {
    it("runs under Deno", () => {});
  });
} else {
  describe("recipes type-check", () => {
    it("deno check passes on every recipe file", async () => {
      const files = recipeFiles();
      assert.ok(files.length >= 10, `found ${files.length} recipe files`);
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["check", "--quiet", ...files],
        cwd: root,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, text);
    });
  });
}
