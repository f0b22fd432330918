// What the cluster end-to-end tests share: three real `cstore serve --node-id N --cluster …`
// members on free loopback ports (each with its own temporary data directory), a page that
// loads the npm package from one of them, and helpers that read the members over HTTP.
//
// Every member is a `Server` of harness.mjs, so it is stopped by its own PID.

import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";

import { DEMO_DIR, Server, freePort, launchBrowser, sleep } from "./harness.mjs";

/**
 * A directory with a blank page that puts the package on `window.cstore`, next to the built
 * package (`lib/`, `pkg-web/`), for `--demo-dir`: the tests open replicas themselves, with the
 * options they need, instead of the demo's.
 */
export function packagePageDir() {
  const dir = mkdtempSync(join(tmpdir(), "cstore-e2e-page-"));
  cpSync(join(DEMO_DIR, "lib"), join(dir, "lib"), { recursive: true });
  cpSync(join(DEMO_DIR, "pkg-web"), join(dir, "pkg-web"), { recursive: true });
  writeFileSync(
    join(dir, "index.html"),
    `<!doctype html><meta charset="utf-8"><title>cstore e2e</title>
<script type="module">import * as cstore from "./lib/index.js"; window.cstore = cstore;</script>`,
  );
  return dir;
}

/**
 * Registers the hooks of a test file on `n` members serving the package page: before, they and
 * a browser start and `started({ pageDir, members, browser })` receives them; after, all stop
 * (by PID) and the page directory goes. Nothing starts when `skip` is set.
 */
export function useCluster(n, skip, started) {
  let suite = { pageDir: undefined, members: [], browser: undefined };
  before(async () => {
    if (skip) return;
    const pageDir = packagePageDir();
    suite = { pageDir, members: await startCluster(n, pageDir), browser: await launchBrowser() };
    started(suite);
  });
  after(async () => {
    await suite.browser?.close();
    await disposeAll(suite.members, suite.pageDir);
  });
}

/** Starts `n` members of one cluster serving `pageDir`; resolves once they agree on a leader. */
export async function startCluster(n, pageDir) {
  const ports = [];
  for (let i = 0; i < n; i++) ports.push(await freePort());
  const list = ports.map((port, i) => `${i + 1}=http://127.0.0.1:${port}`).join(",");
  const members = ports.map(
    (port, i) =>
      new Server(port, mkdtempSync(join(tmpdir(), "cstore-e2e-member-")), {
        demoDir: pageDir,
        args: ["--node-id", String(i + 1), "--cluster", list],
      }),
  );
  await Promise.all(members.map((m) => m.spawn()));
  await waitLeader(members);
  return members;
}

/** A one-process server of its own (`args`: e.g. a one-member cluster), serving `pageDir`. */
export async function startLone(pageDir, args = (port) => []) {
  const port = await freePort();
  const server = new Server(port, mkdtempSync(join(tmpdir(), "cstore-e2e-lone-")), {
    demoDir: pageDir,
    args: args(port),
  });
  await server.spawn();
  return server;
}

/** `/v1/status` of a member, or null when it does not answer. */
export async function statusOf(member) {
  if (!member.child) return null;
  try {
    const res = await fetch(`${member.url}/v1/status`);
    return res.ok ? await res.json() : null;
  } catch {
    return null;
  }
}

/** Waits until every live member names the same leader, which is live; returns it. */
export async function waitLeader(members, timeoutMs = 20_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const live = members.filter((m) => m.child);
    const statuses = await Promise.all(live.map(statusOf));
    const urls = new Set(statuses.map((s) => s?.leader_url ?? null));
    const leader = live.find((m) => m.url === [...urls][0]);
    if (urls.size === 1 && leader && statuses.every((s) => s?.cluster_id)) return leader;
    if (Date.now() > until) throw new Error(`no agreed leader in ${timeoutMs} ms: ${JSON.stringify(statuses)}`);
    await sleep(50);
  }
}

/** How many documents `collection` holds on `member` (its own committed copy). */
export async function countOn(member, collection) {
  const res = await fetch(`${member.url}/v1/c`);
  const body = await res.json();
  return body.collections.find((c) => c.name === collection)?.count ?? 0;
}

/** Waits until `collection` holds `count` documents on every member given. */
export async function waitCount(members, collection, count, timeoutMs = 60_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const counts = await Promise.all(members.map((m) => countOn(m, collection)));
    if (counts.every((c) => c === count)) return;
    if (Date.now() > until) throw new Error(`${collection}: counts ${counts} never all reached ${count}`);
    await sleep(100);
  }
}

/** Stops every server given and deletes its data, and the page directory. */
export async function disposeAll(servers, pageDir) {
  await Promise.all(servers.filter(Boolean).map((s) => s.dispose()));
  if (pageDir) rmSync(pageDir, { recursive: true, force: true });
}

/** A page on `server` with the package loaded (`window.cstore`). */
export async function packagePage(context, server) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[page ${page.url()}] ${e.message}`));
  await page.goto(`${server.url}/`);
  await page.waitForFunction(() => window.cstore, null, { timeout: 20_000 });
  return page;
}

/** The status of the replica the page keeps in `window.t.db`. */
export function pageStatus(page) {
  return page.evaluate(() => window.t.db.status);
}

/** Waits for `predicate(status)` of the page's `window.t.db`. */
export async function waitPageStatus(page, predicate, timeoutMs = 30_000) {
  const until = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await pageStatus(page);
    if (predicate(last)) return last;
    if (Date.now() > until) throw new Error(`status never matched in ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    await sleep(50);
  }
}
