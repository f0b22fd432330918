// Two browser contexts (two separate browsers, as far as storage goes) on the demo: each sees
// the other's writes in under a second, through the server.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  addNote,
  noteTexts,
  openDemo,
  screenshot,
  serverAndBrowser,
  waitForDemo,
  waitForNote,
  waitForStatus,
} from "./harness.mjs";

const env = serverAndBrowser();
const skip = env.skip;

/** Adds `text` in `from` and returns how long (ms) until `to` shows it. */
async function propagation(from, to, text) {
  const started = Date.now();
  await addNote(from, text);
  await waitForNote(to, text);
  return Date.now() - started;
}

test("two contexts see each other's writes in under a second", { skip }, async () => {
  const alice = await openDemo(await env.browser.newContext({ viewport: { width: 1280, height: 800 } }), env.server);
  const bob = await openDemo(await env.browser.newContext({ viewport: { width: 1280, height: 800 } }), env.server);
  await waitForStatus(alice, (s) => s.connected);
  await waitForStatus(bob, (s) => s.connected);

  const times = [];
  for (let i = 0; i < 3; i++) {
    times.push(await propagation(alice, bob, `from alice ${i}`));
    times.push(await propagation(bob, alice, `from bob ${i}`));
  }
  console.log(`write in one context -> shown in the other: ${times.join(", ")} ms`);
  for (const ms of times) assert.ok(ms < 1000, `took ${ms} ms`);

  // Edit and tick in one, seen in the other.
  await alice.click('[data-testid="note"] .text >> text="from bob 2"');
  await alice.fill('[data-testid="note"] input.edit', "edited by alice");
  await alice.press('[data-testid="note"] input.edit', "Enter");
  await alice.check('[data-testid="note"]:has-text("from alice 0") input[type="checkbox"]');
  await bob.waitForFunction(() => document.body.textContent.includes("edited by alice"), null, { timeout: 5_000 });
  await bob.waitForSelector('[data-testid="note"].done:has-text("from alice 0")', { timeout: 5_000 });

  const server_ = await env.server.all("notes");
  assert.equal(server_.length, 6);
  assert.deepEqual((await noteTexts(alice)).sort(), (await noteTexts(bob)).sort());
  await waitForStatus(alice, (s) => s.pendingWrites === 0 && s.lag === 0);
  await waitForStatus(bob, (s) => s.pendingWrites === 0 && s.lag === 0);
  await screenshot(alice, "sync-alice");
  await screenshot(bob, "sync-bob");

  // A reloaded page resumes from IndexedDB (same client id), and its next writes sync as well.
  await alice.reload();
  await waitForDemo(alice);
  await waitForStatus(alice, (s) => s.connected);
  assert.equal((await noteTexts(alice)).length, 6);
  const afterReload = await propagation(alice, bob, "written after a reload");
  assert.ok(afterReload < 1000, `took ${afterReload} ms`);
  await waitForStatus(alice, (s) => s.pendingWrites === 0);
});
