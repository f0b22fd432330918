// Offline-queue drain benchmark: how long a browser replica takes to send N queued writes to a
// real `cstore serve` over the write channel (`GET /v1/write`, the default) and over HTTP
// (`POST /v1/txns`, `writeChannel: "http"`), in the same headless chromium run.
//
// It builds nothing: it expects web/scripts/build.sh (the package's browser build) and a
// release `cstore` (CSTORE_BIN, else $CARGO_TARGET_DIR/release/cstore, else
// target/release/cstore). It starts the server on a free loopback port with a temporary data
// directory serving a page that loads the package; then, for each size and each of --runs
// rounds, alternating the two ways, a fresh browser context opens a replica (its own database),
// goes offline, queues N inserts of ~100-byte documents, goes online, and times from going
// online until the replica has no pending write (every write answered by the server). It checks
// on the server that the collection holds N documents and that the committed LSN moved by N.
// Medians go to stdout and to web/test-results/drain.md. The server and the browser are
// stopped by their PIDs.
//
//   npm --prefix web run bench:drain [-- --writes 1000,5000 --runs 3]

import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { RESULTS_DIR, Server, cannotRun, launchBrowser } from "../tests/e2e/harness.mjs";
import { disposeAll, packagePage, packagePageDir, waitPageStatus } from "../tests/e2e/cluster.mjs";
import { releaseBin } from "./release-bin.mjs";

const { values: opts } = parseArgs({
  options: {
    writes: { type: "string", default: "1000,5000" },
    runs: { type: "string", default: "3" },
  },
});
const SIZES = opts.writes.split(",").map(Number);
const RUNS = Number(opts.runs);
if (![...SIZES, RUNS].every((x) => Number.isInteger(x) && x >= 1) || SIZES.some((n) => n > 10_000)) {
  throw new Error(`--writes takes sizes of 1 to 10,000 (the replica's pending bound), --runs a positive integer`);
}
const WAYS = [
  { name: "write channel (GET /v1/write)", options: {} },
  { name: "HTTP (POST /v1/txns)", options: { writeChannel: "http" } },
];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function countOf(server, collection) {
  const body = await (await fetch(`${server.url}/v1/c`)).json();
  return body.collections.find((c) => c.name === collection)?.count ?? 0;
}

/** One drain of `count` queued writes into a fresh collection; milliseconds. */
async function drainOnce(browser, server, way, count, label) {
  const collection = `drain_${label}`;
  const context = await browser.newContext();
  try {
    const page = await packagePage(context, server);
    await page.evaluate(
      async ([url, collection, options]) => {
        const db = await window.cstore.openReplica(url, { name: collection, multiTab: false, ...options });
        window.t = { db, coll: db.collection(collection), rejected: 0 };
        db.on("rejected", () => (window.t.rejected += 1));
      },
      [server.url, collection, way.options],
    );
    await waitPageStatus(page, (s) => s.connected);
    await context.setOffline(true);
    await waitPageStatus(page, (s) => !s.online && !s.connected);
    await page.evaluate(async (count) => {
      await Promise.all(
        Array.from({ length: count }, (_, n) =>
          window.t.coll.insert({ n, text: `offline write ${n}: water the plants`, done: n % 3 === 0, createdAt: 1764000000000 + n }),
        ),
      );
    }, count);
    await waitPageStatus(page, (s) => s.pendingWrites === count);
    const lsnBefore = (await server.status()).committed_lsn;
    // Timed in the page: from the `online` event's dispatch to the last write's answer.
    const drained = page.evaluate(
      () =>
        new Promise((resolve) => {
          let start = null;
          window.addEventListener("online", () => (start = performance.now()), { once: true });
          const poll = () => {
            const s = window.t.db.status;
            if (start !== null && s.pendingWrites === 0) resolve(performance.now() - start);
            else setTimeout(poll, 2);
          };
          poll();
        }),
    );
    await context.setOffline(false);
    const ms = await drained;
    const rejected = await page.evaluate(() => window.t.rejected);
    const moved = (await server.status()).committed_lsn - lsnBefore;
    const held = await countOf(server, collection);
    if (rejected || moved !== count || held !== count) {
      throw new Error(`${way.name}, ${count} writes: ${rejected} rejected, LSN moved ${moved}, server holds ${held}`);
    }
    return ms;
  } finally {
    await context.close();
  }
}

async function main() {
  const skip = cannotRun();
  if (skip) throw new Error(`${skip} (the bench needs web/scripts/build.sh)`);
  const bin = releaseBin();
  const loadAtStart = loadavg();
  const pageDir = packagePageDir();
  let server;
  let browser;
  const rows = [];
  try {
    server = await Server.start({ demoDir: pageDir, bin });
    browser = await launchBrowser();
    // A warm-up drain, not counted: the first page load compiles the wasm module.
    await drainOnce(browser, server, WAYS[0], 100, "warmup");
    for (const count of SIZES) {
      const times = WAYS.map(() => []);
      for (let run = 0; run < RUNS; run++) {
        for (const [i, way] of WAYS.entries()) {
          const ms = await drainOnce(browser, server, way, count, `${count}_${run}_${i}`);
          times[i].push(ms);
          console.log(`[bench] ${way.name}: ${count} writes drained in ${ms.toFixed(0)} ms`);
        }
      }
      for (const [i, way] of WAYS.entries()) {
        const ms = median(times[i]);
        rows.push({ count, way: way.name, ms, rate: count / (ms / 1000), all: times[i] });
      }
    }
  } finally {
    await browser?.close();
    await disposeAll([server], pageDir);
  }
  const loadAtEnd = loadavg();
  const lines = [
    `Offline-queue drain, headless chromium, release cstore on loopback (${cpus().length} cores; ` +
      `load average ${loadAtStart.map((x) => x.toFixed(2)).join(" ")} at start, ${loadAtEnd.map((x) => x.toFixed(2)).join(" ")} at end); ` +
      `median of ${RUNS} runs`,
    "",
    "| queued writes | way | drain (median) | writes/s | runs (ms) |",
    "|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.count} | ${r.way} | ${r.ms.toFixed(0)} ms | ${Math.round(r.rate)} | ${r.all.map((x) => x.toFixed(0)).join(", ")} |`,
    ),
  ];
  const text = lines.join("\n");
  console.log(`\n${text}`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, "drain.md"), `${text}\n`);
}

await main();
