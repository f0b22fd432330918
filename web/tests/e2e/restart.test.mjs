// The server is SIGKILLed and started again (same port, same data) while two browsers keep
// writing. Every write a browser saw acknowledged ends up on the server exactly once, the
// writes made while it was down are sent after the reconnect, and everyone converges.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  noteIds,
  openDemo,
  screenshot,
  serverAndBrowser,
  sleep,
  status,
  waitForStatus,
} from "./harness.mjs";

const env = serverAndBrowser();
const skip = env.skip;

/** Starts a loop in the page that inserts a note every `everyMs` until `window.stopWriting`. */
function startWriter(page, name, everyMs) {
  return page.evaluate(
    ([name, everyMs]) => {
      const w = { acked: [], failed: [], done: null };
      window.writer = w;
      window.stopWriting = false;
      w.done = (async () => {
        for (let i = 0; !window.stopWriting; i++) {
          const now = Date.now();
          try {
            const { id } = await window.cstoreDemo.notes.insert({
              text: `${name} #${i}`,
              done: false,
              createdAt: now,
              updatedAt: now,
              author: name,
            });
            w.acked.push(id);
          } catch (e) {
            w.failed.push(`${e.code}: ${e.message}`);
          }
          await new Promise((r) => setTimeout(r, everyMs));
        }
      })();
    },
    [name, everyMs],
  );
}

async function stopWriter(page) {
  return page.evaluate(async () => {
    window.stopWriting = true;
    await window.writer.done;
    return { acked: window.writer.acked, failed: window.writer.failed };
  });
}

test("a SIGKILLed server loses nothing acknowledged; pending writes are sent after restart", { skip }, async () => {
  const pages = [];
  for (const name of ["north", "south"]) {
    const page = await openDemo(await env.browser.newContext({ viewport: { width: 1280, height: 800 } }), env.server);
    await waitForStatus(page, (s) => s.connected);
    await startWriter(page, name, 40);
    pages.push(page);
  }
  await sleep(1500);
  const lsnBeforeKill = (await env.server.status()).last_lsn;
  await env.server.kill9();
  const down = Date.now();
  // The browsers keep writing; their writes wait in the pending queue.
  const whileDown = await Promise.all(pages.map((p) => waitForStatus(p, (s) => !s.connected && s.pendingWrites > 0)));
  await sleep(800);
  await screenshot(pages[0], "restart-server-down");
  await env.server.spawn();
  console.log(`server down for ${Date.now() - down} ms; it had ${lsnBeforeKill} entries when killed`);
  await sleep(1200);
  const results = await Promise.all(pages.map(stopWriter));

  await Promise.all(pages.map((p) => waitForStatus(p, (s) => s.connected && s.pendingWrites === 0, 30_000)));
  const acked = results.flatMap((r) => r.acked);
  for (const r of results) assert.deepEqual(r.failed, [], "no write failed locally");
  const onServer = (await env.server.all("notes")).map((d) => d._id).sort();
  const missing = acked.filter((id) => !onServer.includes(id));
  assert.deepEqual(missing, [], "every acknowledged write is on the server");
  assert.equal(onServer.length, acked.length, "and nothing else, nothing twice");
  assert.ok(whileDown.every((s) => s.pendingWrites > 0), "writes were pending while the server was down");
  // Every page catches up to the server's last entry and holds exactly the server's notes.
  const lastLsn = (await env.server.status()).last_lsn;
  for (const [i, page] of pages.entries()) {
    await waitForStatus(page, (s) => s.appliedLsn >= lastLsn && s.lag === 0);
    const local = await noteIds(page);
    const absent = onServer.filter((id) => !local.includes(id));
    const whose = absent.map((id) => (results[i].acked.includes(id) ? "own" : "other's"));
    assert.deepEqual(absent, [], `page ${i} lacks ${whose.join(", ")} notes`);
    assert.deepEqual(local, onServer);
  }
  console.log(`${acked.length} acknowledged writes (${whileDown.map((s) => s.pendingWrites).join(" + ")} pending at one point while down), all on the server`);
  console.log(`status after: ${JSON.stringify(await status(pages[0]))}`);
  await screenshot(pages[0], "restart-converged");
});
