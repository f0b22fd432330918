// The package's replica drains an offline queue through the server's write channel
// (`GET /v1/write`) by default, and through `POST /v1/txns` with `writeChannel: "http"`: a page
// goes offline, queues writes (one of them an insert of an id the server got meanwhile), comes
// back, and the test checks on the server that every write committed exactly once (the
// committed LSN moved by exactly the number of accepted writes), that the refused one was
// rolled back and reported with its code, and by the server's `/metrics` which way they came.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { cannotRun, launchBrowser } from "./harness.mjs";
import { disposeAll, packagePage, packagePageDir, startLone, waitPageStatus } from "./cluster.mjs";

const skip = cannotRun();
const WRITES = 200;

let pageDir;
let server;
let browser;

before(async () => {
  if (skip) return;
  pageDir = packagePageDir();
  server = await startLone(pageDir);
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await disposeAll([server], pageDir);
});

/** The sum of the server's `/metrics` samples whose name contains `part`, and their names. */
const metric = (part) => metricOf(server, part);

/** The same for any server. */
async function metricOf(target, part) {
  const text = await (await fetch(`${target.url}/metrics`)).text();
  let sum = 0;
  const names = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || !line.includes(part)) continue;
    const at = line.lastIndexOf(" ");
    sum += Number(line.slice(at + 1));
    names.push(line.slice(0, at));
  }
  return { sum, names };
}

const committedLsn = async () => (await server.status()).committed_lsn;

/**
 * Opens a replica with `options` in a fresh context, queues `count` writes and one refused
 * insert offline, goes online and waits for the drain; what the server saw.
 */
async function drainOffline(collection, count, options, through = server) {
  const context = await browser.newContext();
  const page = await packagePage(context, through);
  await server.insert(collection, { _id: "first" });
  await page.evaluate(
    async ([url, collection, options]) => {
      const db = await window.cstore.openReplica(url, { name: `wc-${collection}`, multiTab: false, ...options });
      window.t = { db, coll: db.collection(collection), rejected: [] };
      db.on("rejected", (r) => window.t.rejected.push({ seq: r.seq, code: r.code }));
    },
    [through.url, collection, options],
  );
  await waitPageStatus(page, (s) => s.connected && s.appliedLsn > 0);
  await context.setOffline(true);
  await waitPageStatus(page, (s) => !s.online && !s.connected);
  await page.evaluate(async (count) => {
    for (let n = 0; n < count; n++) await window.t.coll.insert({ _id: `w${String(n).padStart(5, "0")}`, n });
  }, count);
  await server.insert(collection, { _id: "taken", by: "server" });
  await page.evaluate(() => window.t.coll.insert({ _id: "taken", by: "replica" }));
  await waitPageStatus(page, (s) => s.pendingWrites === count + 1);

  const lsnBefore = await committedLsn();
  const channelBefore = await metric("write_channel_txns");
  const refusedBefore = through === server ? 0 : (await metricOf(through, "write_channel_txns")).sum;
  await context.setOffline(false);
  await page.waitForFunction(() => window.t.db.status.pendingWrites === 0, null, { polling: 20, timeout: 120_000 });
  await page.waitForFunction(() => window.t.rejected.length === 1, null, { timeout: 10_000 });
  const lsnAfter = await committedLsn();
  const channelAfter = await metric("write_channel_txns");
  const refused = through === server ? 0 : (await metricOf(through, "write_channel_txns")).sum - refusedBefore;
  const docs = await server.all(collection);
  await waitPageStatus(page, (s) => s.lag === 0 && s.connected);
  const local = await page.evaluate(async () => ({
    count: await window.t.coll.count(),
    taken: await window.t.coll.get("taken"),
    rejected: window.t.rejected,
  }));
  await context.close();
  return { docs, lsnMoved: lsnAfter - lsnBefore, channel: channelAfter.sum - channelBefore.sum, names: channelAfter.names, local, refused };
}

function checkDrain(result, count) {
  // Exactly once: one entry per accepted write, none for the refused one.
  assert.equal(result.lsnMoved, count, "entries committed by the drain");
  assert.equal(result.docs.length, count + 2, "first, taken and the writes");
  const ns = result.docs.filter((d) => d._id.startsWith("w")).map((d) => d.n).sort((a, b) => a - b);
  assert.deepEqual(ns, Array.from({ length: count }, (_, n) => n));
  assert.equal(result.docs.find((d) => d._id === "taken").by, "server");
  assert.equal(result.local.rejected.length, 1);
  assert.equal(result.local.rejected[0].code, "already_exists");
  assert.equal(result.local.taken.by, "server", "the refused insert is rolled back");
  assert.equal(result.local.count, count + 2);
}

test(`an offline queue of ${WRITES} writes drains through the write channel by default`, { skip, timeout: 180_000 }, async () => {
  const result = await drainOffline("wc_default", WRITES, {});
  checkDrain(result, WRITES);
  // The recorder shows a counter once it counted something: absent before is 0.
  assert.ok(result.names.length > 0, "the server's /metrics has cstore_write_channel_txns_total");
  assert.equal(result.channel, WRITES + 1, "the server's count of write-channel transactions");
});

test(`writeChannel: "http" drains over POST /v1/txns`, { skip, timeout: 180_000 }, async () => {
  const result = await drainOffline("wc_http", 50, { writeChannel: "http" });
  checkDrain(result, 50);
  assert.equal(result.channel, 0, "no transaction came through a write channel");
});

test("a page on a read replica writes over HTTP: the replica refuses the channel (not_leader) and forwards the writes", { skip, timeout: 180_000 }, async () => {
  const follower = await startLone(pageDir, () => ["--follow", `ws://127.0.0.1:${server.port}/v1/replicate`]);
  try {
    const result = await drainOffline("wc_follower", 50, {}, follower);
    checkDrain(result, 50);
    assert.equal(result.channel, 0, "nothing came to the leader through a write channel");
    assert.equal(result.refused, 0, "the read replica took no channel transaction");
  } finally {
    await disposeAll([follower]);
  }
});
