// The demo on a 3-member Raft cluster: three real `cstore serve --node-id N --cluster …`
// processes on loopback, each serving the built demo; the page is opened on the leader, so the
// member that served it is the one that dies.
//   - with no configuration the page follows all three (from the serving member's
//     /v1/status), and its cluster panel lists 3 members, one of them the leader;
//   - kill -9 the leader (by its PID) while the page's writer runs and notes are added through
//     the form during the election and after it;
//   - every note and every writer document is on both surviving members exactly once, the
//     page shows the new leader and the dead member as down, it switched members without
//     fetching its copy again (no re-bootstrap), and the chart recorded the gap;
//   - reloaded while the member that served it is still dead, the page comes back from the
//     service worker and IndexedDB with the remembered member list, and writes again.

import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import {
  addNote,
  cannotRun,
  freePort,
  launchBrowser,
  openDemo,
  screenshot,
  Server,
  sleep,
  status,
  waitForDemo,
  waitForStatus,
} from "./harness.mjs";

const skip = cannotRun();
/** How long the cluster may take to elect a leader (first election, or after the kill). */
const ELECTION_WAIT_MS = 10_000;

/** A cluster member: a `Server` of the harness with its `--node-id` and the member list. */
function member(id, port, list) {
  const m = new Server(port, mkdtempSync(join(tmpdir(), `cstore-demo-cluster-${id}-`)), {
    args: ["--node-id", String(id), "--cluster", list],
  });
  m.id = String(id);
  return m;
}

/** The member every live member names as leader (one says it leads), else null. */
async function leaderOf(members) {
  const states = await Promise.all(
    members.map(async (m) => {
      try {
        return { m, s: await m.status() };
      } catch {
        return null;
      }
    }),
  );
  const up = states.filter(Boolean);
  const leaders = up.filter(({ s }) => s.role === "leader");
  if (leaders.length !== 1) return null;
  const leader = leaders[0];
  return up.every(({ s }) => s.leader_id === leader.s.node_id) ? leader : null;
}

async function waitForLeader(members, except = null) {
  const until = Date.now() + ELECTION_WAIT_MS;
  for (;;) {
    const found = await leaderOf(members);
    if (found && found.m !== except) return found;
    if (Date.now() > until) throw new Error(`no leader among ${members.map((m) => m.id)} in ${ELECTION_WAIT_MS} ms`);
    await sleep(50);
  }
}

/** The rows of the page's cluster panel: id and role of each member. */
function panelRows(page) {
  return page.$$eval('[data-testid="member"]', (rows) => rows.map((r) => ({ id: r.dataset.id, role: r.dataset.role })));
}

async function waitForPanel(page, predicate, what, timeoutMs = ELECTION_WAIT_MS) {
  const until = Date.now() + timeoutMs;
  let rows;
  for (;;) {
    rows = await panelRows(page);
    if (predicate(rows)) return rows;
    if (Date.now() > until) throw new Error(`the panel never showed ${what}; last: ${JSON.stringify(rows)}`);
    await sleep(50);
  }
}

/** The documents of `collection` on `member`, read locally there. */
async function docsOn(member, collection) {
  return member.all(collection);
}

const env = { members: [], browser: undefined };

before(async () => {
  if (skip) return;
  const ports = [await freePort(), await freePort(), await freePort()];
  const list = ports.map((p, i) => `${i + 1}=http://127.0.0.1:${p}`).join(",");
  env.members = ports.map((p, i) => member(i + 1, p, list));
  await Promise.all(env.members.map((m) => m.spawn()));
  env.browser = await launchBrowser();
});

after(async () => {
  await env.browser?.close();
  for (const m of env.members) await m.dispose();
});

/** Each member's role, term, leader and LSNs: printed when the test fails. */
async function describeMembers() {
  const lines = await Promise.all(
    env.members.map(async (m) => {
      try {
        const s = await m.status();
        return `member ${m.id}: ${s.role} term ${s.term} leader ${s.leader_id} last ${s.last_lsn} committed ${s.committed_lsn} applied ${s.applied_lsn}`;
      } catch {
        return `member ${m.id}: down`;
      }
    }),
  );
  return lines.join("\n");
}

test("the demo follows a 3-member cluster through a kill -9 of the leader", { skip, timeout: 60_000 }, async (t) => {
  try {
    await followThroughKill();
  } catch (error) {
    t.diagnostic(`members when it failed:\n${await describeMembers()}`);
    for (const m of env.members) if (m.log) t.diagnostic(`member ${m.id} log (tail):\n${m.log.slice(-3_000)}`);
    throw error;
  }
});

async function followThroughKill() {
  const started = Date.now();
  const { m: first, s: firstStatus } = await waitForLeader(env.members);

  // Opened on the leader, with no configuration: it finds the other two in /v1/status.
  const page = await openDemo(await env.browser.newContext({ viewport: { width: 1280, height: 1000 } }), first);
  const following = await page.evaluate(() => window.cstoreDemoFollowing);
  assert.deepEqual([...following.urls].sort(), env.members.map((m) => m.url).sort());
  assert.equal(following.urls[0], first.url, "the serving member comes first");
  await waitForStatus(page, (s) => s.connected);
  // The service worker holds the page, for the reload below from a dead member.
  await page.evaluate(() => navigator.serviceWorker.ready);

  const before = await waitForPanel(
    page,
    (rows) => rows.length === 3 && rows.filter((r) => r.role === "leader").length === 1,
    "3 members with one leader",
  );
  assert.equal(before.find((r) => r.role === "leader").id, first.id);
  assert.match(await page.textContent('[data-testid="cluster-term"]'), new RegExp(`term ${firstStatus.term}\\b`));

  const texts = ["before the kill 1", "before the kill 2"];
  for (const t of texts) await addNote(page, t);
  await waitForStatus(page, (s) => s.pendingWrites === 0);

  // The writer (a document every 200 ms) keeps traffic going through the failover.
  await page.click('[data-testid="writer"]');
  await sleep(1_200);
  const switchesBefore = (await status(page)).memberSwitches;

  await first.kill9();
  const killedAt = Date.now();
  // Notes through the form while the cluster elects (about half a second) and just after.
  for (let i = 1; i <= 5; i++) {
    const t = `during the election ${i}`;
    texts.push(t);
    await addNote(page, t);
    await sleep(100);
  }
  const survivors = env.members.filter((m) => m !== first);
  const { m: second, s: secondStatus } = await waitForLeader(survivors);
  const rows = await waitForPanel(
    page,
    (r) => r.find((x) => x.id === second.id)?.role === "leader" && r.find((x) => x.id === first.id)?.role === "down",
    `member ${second.id} as leader and member ${first.id} as down`,
  );
  assert.equal(rows.filter((r) => r.role === "leader").length, 1);
  assert.equal(await page.textContent('[data-testid="cluster-leader"]'), `Member ${second.id} leads.`);
  assert.ok(secondStatus.term > firstStatus.term, `term ${secondStatus.term} after ${firstStatus.term}`);
  console.log(`leader ${first.id} killed; member ${second.id} leads in term ${secondStatus.term}, seen ${Date.now() - killedAt} ms after the kill`);

  for (let i = 1; i <= 2; i++) {
    const t = `after the election ${i}`;
    texts.push(t);
    await addNote(page, t);
  }
  // Writes go on until the chart has recorded traffic in a second after the gap: it takes one
  // sample a second, so stopping sooner could leave the last writes inside the gap's sample
  // (seen once in CI: samples 0/1 3/4* 15/9*, then the writer stopped).
  await page.waitForFunction(
    () => {
      const samples = window.cstoreDemoChart.recent();
      const gap = samples.findLastIndex((s) => s.gap);
      return gap >= 0 && samples.slice(gap + 1).some((s) => s.rate > 0);
    },
    null,
    { timeout: 10_000, polling: 100 },
  );
  await page.click('[data-testid="writer"]'); // stop
  await sleep(300); // a tick already scheduled still writes

  const settled = await waitForStatus(page, (s) => s.connected && s.pendingWrites === 0, 15_000);
  console.log(`page status after: ${JSON.stringify(settled)}`);
  assert.equal(settled.rebootstraps, 0, "the page kept its copy through the failover");
  assert.ok(settled.memberSwitches > switchesBefore, "the replica moved to another member");
  assert.notEqual(settled.member, first.url);

  // Every write the page made is on both survivors, exactly once.
  const pageTicks = await page.evaluate(async () => (await window.cstoreDemo.db.collection("ticks").find({})).map((d) => d._id).sort());
  assert.ok(pageTicks.length >= 10, `the writer wrote ${pageTicks.length} documents`);
  for (const m of survivors) {
    // A follower applies what the leader committed a moment later: wait for its LSN.
    const leaderLsn = (await second.status()).committed_lsn;
    for (const until = Date.now() + 5_000; (await m.status()).applied_lsn < leaderLsn && Date.now() < until; ) await sleep(50);
    const notes = (await docsOn(m, "notes")).map((d) => d.text);
    for (const t of texts) {
      assert.equal(notes.filter((x) => x === t).length, 1, `"${t}" once on member ${m.id}; it has ${JSON.stringify(notes)}`);
    }
    assert.equal(notes.length, texts.length, `member ${m.id} holds exactly the page's notes`);
    const ticks = (await docsOn(m, "ticks")).map((d) => d._id).sort();
    assert.deepEqual(ticks, pageTicks, `member ${m.id} holds exactly the page's writer documents`);
  }

  // The page still shows every note, and the chart has the gap.
  const shown = await page.$$eval('[data-testid="note"] .text', (els) => els.map((e) => e.textContent));
  assert.deepEqual([...shown].sort(), [...texts].sort());
  const samples = await page.evaluate(() => window.cstoreDemoChart.recent());
  console.log(`chart, one sample a second (entries/s, pending, * = gap): ${samples.map((s) => `${Math.round(s.rate)}/${s.pending}${s.gap ? "*" : ""}`).join(" ")}`);
  assert.ok(samples.some((s) => s.gap), `no gap among the chart's samples: ${JSON.stringify(samples)}`);
  assert.ok(samples.some((s) => s.gap && s.pending > 0), `no writes queued in the gap: ${JSON.stringify(samples)}`);
  assert.ok(samples.some((s) => s.rate > 0 && !s.gap), "the chart shows traffic around the gap");
  assert.match(await page.textContent(".cluster"), /scripts\/cluster\.sh kill-leader/);
  await page.evaluate(() => window.scrollTo(0, 0));
  await screenshot(page, "demo-cluster");

  // Reloaded while the member that served it is still dead: the service worker answers with the
  // page, the member list comes from the last visit, the copy from IndexedDB, and the replica
  // connects to a survivor without fetching everything again.
  await page.reload();
  await waitForDemo(page);
  assert.equal(await page.evaluate(() => window.cstoreDemoFollowing.source), "remembered");
  const reloaded = await waitForStatus(page, (s) => s.connected && s.pendingWrites === 0);
  assert.equal(reloaded.rebootstraps, 0);
  await page.waitForSelector(`[data-testid="note"]:has-text("after the election 2")`, { timeout: 5_000 });
  await waitForPanel(page, (r) => r.length === 3 && r.find((x) => x.id === first.id)?.role === "down", "3 members, one down");
  const afterReload = "after the reload";
  await addNote(page, afterReload);
  await waitForStatus(page, (s) => s.pendingWrites === 0);
  assert.ok((await docsOn(second, "notes")).some((d) => d.text === afterReload));
  console.log(`test body took ${Date.now() - started} ms`);
}
