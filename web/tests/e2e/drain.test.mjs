// An offline queue drains into a real 3-member cluster: a page writes while offline, comes
// back online, and the test times the drain (until the page has no pending write) and the
// convergence (until every member holds every write), first over HTTP one write per request
// (the fallback for a server without `/v1/txns`, forced here by answering that route 404), then
// over HTTP in batches (`POST /v1/txns`), then through the write channel (`GET /v1/write`, the
// default), whose transactions the leader's `/metrics` must count. Prints the three rates; the
// batched drain must be faster than one write per request.

import assert from "node:assert/strict";
import { test } from "node:test";

import { cannotRun } from "./harness.mjs";
import { packagePage, useCluster, waitCount, waitLeader, waitPageStatus } from "./cluster.mjs";

const skip = cannotRun();
/** Writes queued offline for the batched drain (the figure) and for the one-per-request baseline. */
const BATCHED_WRITES = 10_000;
const PER_REQUEST_WRITES = Number(process.env.CSTORE_E2E_PER_REQUEST_WRITES || 1_000);

let pageDir;
let members = [];
let browser;

useCluster(3, skip, (started) => ({ pageDir, members, browser } = started));

/** Queues `count` inserts into `collection` offline, goes online, times drain and convergence. */
async function drain(collection, count, { perRequest, writeChannel }) {
  const context = await browser.newContext();
  const page = await packagePage(context, members[0]);
  if (perRequest) {
    await page.route("**/v1/txns", (route) =>
      route.fulfill({
        status: 404,
        contentType: "application/json",
        body: JSON.stringify({ error: { code: "route_not_found", message: "an older server" } }),
      }),
    );
  }
  await page.evaluate(
    async ([urls, collection, writeChannel]) => {
      const db = await window.cstore.openReplica(urls, { name: `drain-${collection}`, writeChannel });
      window.t = { db, coll: db.collection(collection), rejected: [] };
      db.on("rejected", (r) => window.t.rejected.push(r));
    },
    [members.map((m) => m.url), collection, writeChannel],
  );
  await waitPageStatus(page, (s) => s.connected);
  await context.setOffline(true);
  await waitPageStatus(page, (s) => !s.online && !s.connected);
  const enqueueMs = await page.evaluate(async (count) => {
    const start = performance.now();
    await Promise.all(Array.from({ length: count }, (_, n) => window.t.coll.insert({ n, text: `offline write ${n}` })));
    return performance.now() - start;
  }, count);
  await waitPageStatus(page, (s) => s.pendingWrites === count);

  const start = Date.now();
  await context.setOffline(false);
  await page.waitForFunction(() => window.t.db.status.pendingWrites === 0, null, { polling: 20, timeout: 600_000 });
  const drainMs = Date.now() - start;
  try {
    await waitCount(members, collection, count, 120_000);
  } catch (e) {
    // Which writes are missing, and what the page says, to tell a lost write from a slow one.
    const held = new Set((await members[0].all(collection)).map((d) => d.n));
    const missing = Array.from({ length: count }, (_, n) => n).filter((n) => !held.has(n));
    const status = await page.evaluate(() => window.t.db.status);
    const rejected = await page.evaluate(() => window.t.rejected.map((r) => `${r.seq}:${r.code}:${r.message}`));
    for (const m of members) console.log(`---- member ${m.url}\n${m.log}`);
    throw new Error(
      `${e.message}; missing n (${missing.length}): ${missing.slice(0, 20)}…${missing.slice(-5)}; ` +
        `rejected ${rejected.length}: ${rejected.slice(0, 3)}; page status ${JSON.stringify(status)}`,
    );
  }
  const convergeMs = Date.now() - start;
  await waitPageStatus(page, (s) => s.lag === 0 && s.connected);
  const rejected = await page.evaluate(() => window.t.rejected.map((r) => `${r.seq}:${r.code}`));
  assert.deepEqual(rejected, [], "no write refused");
  assert.equal((await page.evaluate(() => window.t.coll.count())), count);
  const status = await page.evaluate(() => window.t.db.status);
  assert.equal(status.rebootstraps, 0);
  await context.close();
  return { enqueueMs, drainMs, convergeMs, rate: count / (drainMs / 1000) };
}

/** The leader's count of transactions that came through write channels. */
async function channelTxns() {
  const leader = await waitLeader(members);
  const text = await (await fetch(`${leader.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("cstore_write_channel_txns_total"));
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
}

test(`an offline queue drains into a 3-member cluster: ${PER_REQUEST_WRITES} one per request, ${BATCHED_WRITES} batched, ${BATCHED_WRITES} through the write channel`, { skip, timeout: 900_000 }, async () => {
  const before = await drain("drain_per_request", PER_REQUEST_WRITES, { perRequest: true, writeChannel: "http" });
  const after = await drain("drain_batched", BATCHED_WRITES, { perRequest: false, writeChannel: "http" });
  const channelBefore = await channelTxns();
  const channel = await drain("drain_channel", BATCHED_WRITES, { perRequest: false, writeChannel: "websocket" });
  const channelCounted = (await channelTxns()) - channelBefore;
  const line = (name, n, r) =>
    `# ${name}: ${n} offline writes queued in ${(r.enqueueMs / 1000).toFixed(1)} s; drained in ${(r.drainMs / 1000).toFixed(2)} s ` +
    `= ${Math.round(r.rate)} writes/s; every member holds all after ${(r.convergeMs / 1000).toFixed(2)} s`;
  console.log(line("one write per request (before)", PER_REQUEST_WRITES, before));
  console.log(line("batched, POST /v1/txns (after)", BATCHED_WRITES, after));
  console.log(line("write channel, GET /v1/write", BATCHED_WRITES, channel));
  console.log(`# batched / per request drain rate: ${(after.rate / before.rate).toFixed(1)}x`);
  console.log(`# write channel / batched drain rate: ${(channel.rate / after.rate).toFixed(1)}x`);
  assert.ok(channelCounted >= BATCHED_WRITES, `the leader counted ${channelCounted} write-channel transactions`);
  assert.ok(after.rate > 2 * before.rate, `batched ${after.rate}/s vs per request ${before.rate}/s`);
});
