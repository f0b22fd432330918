// Two tabs of one origin share one connection: one owns the replica, the other talks to it
// over a BroadcastChannel. Both update live; when the owner closes, the other takes over.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  addNote,
  openDemo,
  screenshot,
  serverAndBrowser,
  sleep,
  waitForStatus,
} from "./harness.mjs";

const env = serverAndBrowser();
const skip = env.skip;

/** The replicas the server reports as connected. */
async function replicaCount() {
  const status = await env.server.status();
  return Array.isArray(status.replicas) ? status.replicas.length : NaN;
}

async function waitForReplicas(n, timeoutMs = 10_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const count = await replicaCount();
    if (count === n) return;
    if (Date.now() > until) throw new Error(`server reports ${count} replicas, expected ${n}`);
    await sleep(50);
  }
}

test("two tabs share one connection and both update; the second takes over when the first closes", { skip }, async () => {
  const context = await env.browser.newContext({ viewport: { width: 1280, height: 800 } });
  const first = await openDemo(context, env.server);
  const second = await openDemo(context, env.server);
  await waitForStatus(first, (s) => s.connected && s.tab === "owner");
  await waitForStatus(second, (s) => s.connected && s.tab === "follower");
  await waitForReplicas(1);
  // A second context is a second browser: its own connection.
  const other = await openDemo(await env.browser.newContext(), env.server);
  await waitForStatus(other, (s) => s.connected && s.tab === "owner");
  await waitForReplicas(2);

  await addNote(second, "typed in the second tab");
  await first.waitForSelector('[data-testid="note"]:has-text("typed in the second tab")');
  await addNote(first, "typed in the first tab");
  await second.waitForSelector('[data-testid="note"]:has-text("typed in the first tab")');
  await other.waitForSelector('[data-testid="note"]:has-text("typed in the second tab")');
  await addNote(other, "from another browser");
  await second.waitForSelector('[data-testid="note"]:has-text("from another browser")');
  const followerStatus = await waitForStatus(second, (s) => s.pendingWrites === 0 && s.lag === 0);
  assert.equal(followerStatus.tab, "follower");
  assert.ok(followerStatus.appliedLsn >= 3, JSON.stringify(followerStatus));
  await screenshot(second, "tabs-follower");

  // The owner tab closes: the follower opens the replica (from IndexedDB) and carries on.
  await first.close();
  await waitForStatus(second, (s) => s.tab === "owner" && s.connected, 20_000);
  await waitForReplicas(2);
  await addNote(second, "after the takeover");
  await other.waitForSelector('[data-testid="note"]:has-text("after the takeover")');
  assert.equal((await env.server.all("notes")).length, 4);
  await screenshot(second, "tabs-after-takeover");
});
