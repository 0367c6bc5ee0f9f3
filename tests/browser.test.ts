// Real Chromium (Debian's, driven by playwright-core) against the demo server
// (`examples/demo/server.ts`, the same file `deno task demo` runs). Runs under
// Deno; browser-specific, so under Bun it only reports a skip.
// Page callbacks run in the browser, where the demo's globals are untyped.
// deno-lint-ignore-file no-explicit-any

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { type CuttableProxy, startProxy } from "./_proxy.ts";

const D = (globalThis as any).Deno as typeof Deno | undefined;
const CHROMIUM = D?.env.get("PRESENTLY_CHROMIUM") ?? "/usr/bin/chromium";
const REQUIRE_ALL = D?.env.get("PRESENTLY_REQUIRE_ALL") === "1";
const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];
const OUT = "test-output/browser";

type Page = any;

/** Start the demo server as its own process; resolves its port. */
async function startDemo(
  runtime: "deno" | "bun" = "deno",
): Promise<{ port: number; stop(): Promise<void> }> {
  const [cmd, args] = runtime === "deno"
    ? [D!.execPath(), ["run", "-A", "examples/demo/server.ts"]]
    : [D!.env.get("PRESENTLY_BUN") ?? "node_modules/.bin/bun", ["examples/demo/bun.ts"]];
  const child = new D!.Command(cmd, {
    args,
    env: { PORT: "0", HOST: "127.0.0.1", DEMO_GRACE_MS: "5000" },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`demo exited early: ${text}`);
    text += value;
    const m = text.match(/localhost:(\d+)\//);
    if (m) {
      // Keep draining stdout so the child never blocks on a full pipe.
      (async () => {
        while (!(await reader.read()).done);
      })().catch(() => {});
      return {
        port: Number(m[1]),
        async stop() {
          child.kill("SIGTERM");
          await child.status;
        },
      };
    }
  }
}

if (!D) {
  it.skip("Chromium tests run under Deno (browser-specific)", () => {});
} else if (!existsSync(CHROMIUM)) {
  if (REQUIRE_ALL) throw new Error(`Chromium not found at ${CHROMIUM}`);
  console.log(`\n!!!!! SKIPPING Chromium tests: no browser at ${CHROMIUM} !!!!!\n`);
  it.skip(`Chromium tests (missing ${CHROMIUM})`, () => {});
} else {
  describe("demo in real Chromium", () => {
    let demo: { port: number; stop(): Promise<void> };
    let proxy: CuttableProxy;
    let browser: any;
    let ada: Page;
    let bob: Page;
    let adaTab2: Page;

    const open = async (url: string): Promise<Page> => {
      const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
      page.on("pageerror", (e: Error) => console.error("[page error]", e.message));
      await page.goto(url);
      await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
      return page;
    };
    const cid = (p: Page): Promise<string> =>
      p.evaluate(() => (globalThis as any).presently.client.connectionId);

    before(async () => {
      mkdirSync(OUT, { recursive: true });
      demo = await startDemo();
      proxy = await startProxy(demo.port);
      const { chromium } = await import("playwright-core");
      browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true });
    });

    after(async () => {
      await browser?.close();
      await proxy?.close();
      await demo?.stop();
    });

    it("two pages with different users see each other", async () => {
      ada = await open(`http://127.0.0.1:${demo.port}/?name=Ada&user=ada#lobby`);
      // Bob goes through the cuttable proxy (page and socket).
      bob = await open(`${proxy.url("/").replace("ws:", "http:")}?name=Bob&user=bob#lobby`);
      await ada.waitForSelector('#roster li[data-user="bob"]', { timeout: 5000 });
      await bob.waitForSelector('#roster li[data-user="ada"]', { timeout: 5000 });
      assert.equal(await ada.locator("#roster li").count(), 2);
      assert.equal(await bob.textContent('#roster li[data-user="ada"] b'), "Ada");
      await ada.screenshot({ path: `${OUT}/two-users.png` });
    });

    it("a typing state published with expireAfter appears in the other page, then disappears", async () => {
      await bob.fill("#message", "");
      await bob.type("#message", "hello", { delay: 20 });
      const t0 = Date.now();
      await ada.waitForSelector('#roster li[data-user="bob"][data-typing="true"]', {
        timeout: 3000,
      });
      assert.match(await ada.textContent("#typing-line"), /Bob is typing/);
      await ada.waitForSelector('#roster li[data-user="bob"][data-typing="false"]', {
        timeout: 6000,
      });
      const gone = Date.now() - t0;
      assert.ok(gone >= 2500 && gone < 5000, `typing expired after ${gone} ms (expireAfter 3000)`);
    });

    it("two pages of the same user show as one user with tabCount 2", async () => {
      adaTab2 = await open(`http://127.0.0.1:${demo.port}/?name=Ada&user=ada#lobby`);
      await bob.waitForSelector('#roster li[data-user="ada"][data-tabs="2"]', { timeout: 5000 });
      assert.equal(await bob.locator("#roster li").count(), 2);
      await bob.screenshot({ path: `${OUT}/two-tabs.png` });
    });

    it("closing a page makes the other see the leave", async () => {
      const gone = await cid(adaTab2);
      const t0 = Date.now();
      await adaTab2.close();
      await bob.waitForSelector('#roster li[data-user="ada"][data-tabs="1"]', { timeout: 3000 });
      const took = Date.now() - t0;
      const leaves = await bob.evaluate(
        (id: string) =>
          (globalThis as any).presently.log.events.filter((e: any) =>
            e.type === "leave" && e.cid === id
          ).length,
        gone,
      );
      assert.equal(leaves, 1);
      assert.ok(took < 2000, `leave seen after ${took} ms (clean close is immediate)`);
    });

    it("a dropped TCP connection resumed inside the grace window shows no leave and no join, and state survives", async () => {
      const bobCid = await cid(bob);
      // Bob's cursor becomes state that Ada sees.
      const box = await bob.locator("#stage").boundingBox();
      await bob.mouse.move(box.x + 200, box.y + 150);
      await bob.mouse.move(box.x + 240, box.y + 180, { steps: 4 });
      await ada.waitForSelector(`[data-cursor="${bobCid}"]`, { timeout: 3000 });
      const mark = await ada.evaluate(() => ({
        events: (globalThis as any).presently.log.events.length,
        rosters: (globalThis as any).presently.log.rosters.length,
      }));
      const t0 = Date.now();
      proxy.cut();
      await bob.waitForFunction(
        () => document.getElementById("status")?.textContent === "reconnecting",
        null,
        { timeout: 3000 },
      ).catch(() => {}); // may flip faster than we can observe
      await bob.waitForFunction(
        () => document.getElementById("status")?.textContent === "resumed",
        null,
        { timeout: 5000 },
      );
      const restored = Date.now() - t0;
      console.log(`[browser] cut -> resumed session in ${restored} ms`);
      assert.equal(await cid(bob), bobCid, "same connection id after resume");
      await new Promise((r) => setTimeout(r, 800));
      const after = await ada.evaluate((m: { events: number; rosters: number }) => ({
        events: (globalThis as any).presently.log.events.slice(m.events),
        rosters: (globalThis as any).presently.log.rosters.slice(m.rosters),
      }), mark);
      assert.deepEqual(
        after.events.filter((e: any) => e.cid === bobCid),
        [],
        "no leave, join or clear for Bob",
      );
      for (const r of after.rosters) {
        assert.ok(r.includes("bob:1"), `Bob never left the roster: ${r}`);
      }
      assert.equal(
        await ada.locator(`[data-cursor="${bobCid}"]`).count(),
        1,
        "Bob's cursor state survived",
      );
      // And Bob still works after the resume.
      await bob.type("#message", "x");
      await ada.waitForSelector('#roster li[data-user="bob"][data-typing="true"]', {
        timeout: 3000,
      });
      await ada.screenshot({ path: `${OUT}/after-resume.png` });
    });
  });

  describe("the same demo on Bun, in real Chromium", () => {
    let demo: { port: number; stop(): Promise<void> };
    let browser: any;
    before(async () => {
      demo = await startDemo("bun");
      const { chromium } = await import("playwright-core");
      browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true });
    });
    after(async () => {
      await browser?.close();
      await demo?.stop();
    });

    it("shows both users, typing, and live cursors that follow the mouse", async () => {
      const open = async (q: string): Promise<Page> => {
        const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
        await page.goto(`http://127.0.0.1:${demo.port}/?${q}#design`);
        await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
        return page;
      };
      const ada = await open("name=Ada&user=ada");
      const bob = await open("name=Bob&user=bob");
      await ada.waitForSelector('#roster li[data-user="bob"]', { timeout: 5000 });
      await bob.waitForSelector('#roster li[data-user="ada"]', { timeout: 5000 });
      await bob.type("#message", "hi", { delay: 20 });
      await ada.waitForSelector('#roster li[data-user="bob"][data-typing="true"]', {
        timeout: 3000,
      });
      const bobCid = await bob.evaluate(() => (globalThis as any).presently.client.connectionId);
      const box = await bob.locator("#stage").boundingBox();
      await bob.mouse.move(box.x + 100, box.y + 100);
      await ada.waitForSelector(`[data-cursor="${bobCid}"]`, { timeout: 3000 });
      // Sweep the mouse; the cursor in Ada's page must end where Bob's mouse is.
      await bob.mouse.move(box.x + 500, box.y + 300, { steps: 30 });
      await ada.waitForFunction(
        (id: string) => {
          const el = document.querySelector(`[data-cursor="${id}"]`) as HTMLElement | null;
          const m = el?.style.transform.match(/translate\(([\d.]+)px, ([\d.]+)px\)/);
          return m !== null && m !== undefined && Math.abs(Number(m[1]) - 500) < 3 &&
            Math.abs(Number(m[2]) - 300) < 3;
        },
        bobCid,
        { timeout: 3000 },
      );
      await ada.screenshot({ path: `${OUT}/bun-demo.png` });
      await bob.close();
      await ada.waitForSelector('#roster li[data-user="bob"]', {
        state: "detached",
        timeout: 3000,
      });
      await ada.waitForSelector(`[data-cursor="${bobCid}"]`, { state: "detached", timeout: 3000 });
    });
  });
}
