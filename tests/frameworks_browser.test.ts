// The framework recipes (examples/frameworks) in real Chromium, each with the
// real framework from npm: React (StrictMode), Vue, Svelte and Solid, all on
// the same `roomStore`. Per framework: the roster renders; a second page's
// join and typing show up; unmounting leaves; the roster and the count badge
// (two components on one room) make exactly one join on the wire; a state
// change does not re-render the count badge. Runs under Deno; Bun reports a skip.
// Page callbacks run in the browser, where the page's globals are untyped.
// deno-lint-ignore-file no-explicit-any

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";

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
const OUT = "test-output/frameworks";

/** Record every frame the page's sockets send, before any page script runs. */
const RECORD_FRAMES = () => {
  const sent: unknown[] = [];
  (globalThis as any).__sent = sent;
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (this: WebSocket, data: any) {
    try {
      sent.push(JSON.parse(String(data)));
    } catch { /* not JSON */ }
    return send.call(this, data);
  };
};

if (!D) {
  it.skip("framework recipes run in Chromium under Deno (browser-specific)", () => {});
} else if (!existsSync(CHROMIUM)) {
  if (REQUIRE_ALL) throw new Error(`Chromium not found at ${CHROMIUM}`);
  console.log(`\n!!!!! SKIPPING framework Chromium tests: no browser at ${CHROMIUM} !!!!!\n`);
  it.skip(`framework recipes (missing ${CHROMIUM})`, () => {});
} else {
  const { buildPages, serveFrameworks, FRAMEWORKS } = await import(
    "../examples/frameworks/server.ts"
  );
  describe("framework recipes in real Chromium", () => {
    let served: ReturnType<typeof serveFrameworks>;
    let port = 0;
    let browser: any;

    before(async () => {
      mkdirSync(OUT, { recursive: true });
      await buildPages(OUT);
      served = serveFrameworks(OUT);
      port = await served.ready;
      const { chromium } = await import("playwright-core");
      browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true });
    });

    after(async () => {
      await browser?.close();
      await served?.presence.close();
      await served?.server.shutdown();
    });

    for (const fw of FRAMEWORKS) {
      it(`${fw}: roster, a second page's join and typing, one join on the wire, unmount leaves`, async () => {
        const room = `doc`;
        const errors: string[] = [];
        const open = async (user: string, name: string) => {
          const ctx = await browser.newContext();
          const page = await ctx.newPage();
          page.on("pageerror", (e: Error) => errors.push(`${user}: ${e.message}`));
          await page.addInitScript(RECORD_FRAMES);
          await page.goto(`http://127.0.0.1:${port}/?fw=${fw}&user=${user}&name=${name}`);
          await page.waitForSelector('#roster[data-joined="true"] li[data-self="true"]', {
            timeout: 10_000,
          });
          return { page, ctx };
        };
        const joins = (page: any) =>
          page.evaluate(() =>
            (globalThis as any).__sent.filter((f: any) => f.op === "join" && f.room === "doc")
              .length
          );
        const leaves = (page: any) =>
          page.evaluate(() =>
            (globalThis as any).__sent.filter((f: any) => f.op === "leave").length
          );

        const a = await open(`ada-${fw}`, "Ada");
        assert.equal(await a.page.textContent('#roster li[data-self="true"]'), "Ada");
        const b = await open(`bob-${fw}`, "Bob");
        const bobCid = await b.page.evaluate(() =>
          (globalThis as any).presently.client.connectionId
        );
        // Ada sees Bob's join.
        await a.page.waitForSelector(`#roster li[data-cid="${bobCid}"]`, { timeout: 5_000 });
        assert.equal(await a.page.locator("#roster li").count(), 2);
        await a.page.waitForFunction(() => document.getElementById("count")?.textContent === "2");
        // Two components on one room (roster + count badge): one join each page,
        // also under React StrictMode's double mount.
        assert.equal(await joins(a.page), 1, "one join on the wire for page A");
        if (fw === "react") {
          const mounts = await a.page.evaluate(() =>
            (globalThis as any).presently.stats.rosterMounts
          );
          assert.equal(mounts, 2, "StrictMode mounted the roster twice");
        }
        assert.equal(await joins(b.page), 1, "one join on the wire for page B");
        // Bob types: Ada sees it; Ada's count badge does not re-render.
        const before = await a.page.evaluate(() =>
          (globalThis as any).presently.stats.countRenders
        );
        await b.page.click("#type");
        await a.page.waitForSelector(`#roster li[data-cid="${bobCid}"][data-typing="true"]`, {
          timeout: 5_000,
        });
        await a.page.waitForTimeout(100);
        const afterTyping = await a.page.evaluate(() =>
          (globalThis as any).presently.stats.countRenders
        );
        if (fw !== "svelte") {
          // (The Svelte recipe renders the count inside the roster component.)
          assert.equal(afterTyping, before, "a state change does not re-render the count badge");
        }
        await a.page.screenshot({ path: `${OUT}/${fw}-two-pages.png` });
        // Bob unmounts the roster: he leaves, Ada sees it.
        await b.page.click("#toggle");
        await a.page.waitForFunction(
          (cid: string) => !document.querySelector(`#roster li[data-cid="${cid}"]`),
          bobCid,
          { timeout: 5_000 },
        );
        await a.page.waitForFunction(() => document.getElementById("count")?.textContent === "1");
        assert.equal(await leaves(b.page), 1, "unmount leaves once");
        const present = await served.presence.getPresentConnections(room);
        assert.ok(!present.includes(bobCid), "the server agrees Bob left");
        // And mounting again joins again.
        await b.page.click("#toggle");
        await a.page.waitForSelector(`#roster li[data-cid="${bobCid}"]`, { timeout: 5_000 });
        assert.equal(await joins(b.page), 2);
        assert.deepEqual(errors, []);
        await a.ctx.close();
        await b.ctx.close();
        // Both pages gone: the room empties. A page closed with its context
        // may drop its socket without a close frame (seen under the full
        // suite's load): that leave comes after leaveGraceMs (5 s, the
        // default) as GUARANTEES.md promises, so wait for it and a margin.
        const deadline = Date.now() + 5_000 + 3_000;
        while ((await served.presence.getPresentConnections(room)).length > 0) {
          if (Date.now() > deadline) throw new Error("room did not empty");
          await new Promise((r) => setTimeout(r, 50));
        }
      });
    }
  });
}
