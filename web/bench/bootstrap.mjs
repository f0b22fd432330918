// Browser bootstrap benchmark (issues 5 and 7): how fast a fresh browser replica copies N small
// documents from a real `cstore serve` into IndexedDB, against a raw Dexie `bulkPut` and
// PouchDB `bulkDocs`/replication of the same documents, in the same headless chromium run.
//
// It builds nothing: it expects web/scripts/build.sh (the package's browser build) and a
// release `cstore` (CSTORE_BIN, else $CARGO_TARGET_DIR/release/cstore, else
// target/release/cstore). It starts the server on a free loopback port with a temporary data
// directory and a temporary --demo-dir holding the bench page (web/bench/page), the package's
// wasm glue and the peers' ESM files; seeds N documents through `POST /v1/txn` in batches of
// 1,000; then, in one page and for each of --runs rounds, times (each on a fresh IndexedDB
// database) the cstore bootstrap, Dexie in one call and in chunks of 1,000, Dexie with strict
// durability (what the replica asks for), and PouchDB. Medians go to stdout and to
// web/test-results/bootstrap.md. The server and the browser are stopped by their PIDs.
//
//   npm --prefix web run bench:bootstrap [-- --docs 100000 --runs 2 --no-pouchdb]

import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

import { CHROMIUM_ARGS, DEMO_DIR, RESULTS_DIR, Server, cannotRun } from "../tests/e2e/harness.mjs";
import { releaseBin } from "./release-bin.mjs";

const WEB = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const PAGE_DIR = join(WEB, "bench/page");
const MODULES = join(WEB, "node_modules");
const COLLECTION = "notes";
const SEED_BATCH = 1_000;
const CHUNK = 1_000;

const { values: opts } = parseArgs({
  options: {
    docs: { type: "string", default: "100000" },
    runs: { type: "string", default: "3" },
    "no-pouchdb": { type: "boolean", default: false },
    "no-pouchdb-replicate": { type: "boolean", default: false },
    "pouchdb-docs": { type: "string", default: "20000" },
  },
});
const N = Number(opts.docs);
const RUNS = Number(opts.runs);
// PouchDB writes about 1K docs/s here (replication about half that): it gets the first
// POUCH_DOCS documents only, so the whole run stays near 3 minutes.
const POUCH_DOCS = Math.min(N, Number(opts["pouchdb-docs"]));
if (![N, RUNS, POUCH_DOCS].every((x) => Number.isInteger(x) && x >= 1)) {
  throw new Error(`--docs, --runs and --pouchdb-docs must be positive integers (got ${opts.docs}, ${opts.runs}, ${opts["pouchdb-docs"]})`);
}

function fail(message) {
  console.error(`[bench] ERROR: ${message}`);
  process.exit(2);
}

/** Wraps a CommonJS file as an ES module with a default export (what a bundler would do). */
function cjsAsEsm(path) {
  return `const module = { exports: {} }; const exports = module.exports;\n${readFileSync(path, "utf8")}\nexport default module.exports;\n`;
}

/** The temporary --demo-dir: the bench page, the package's browser build, the peers' files. */
function stageSite() {
  const site = mkdtempSync(join(tmpdir(), "cstore-bench-site-"));
  cpSync(PAGE_DIR, site, { recursive: true });
  cpSync(join(DEMO_DIR, "pkg-web"), join(site, "pkg-web"), { recursive: true });
  cpSync(join(DEMO_DIR, "lib"), join(site, "lib"), { recursive: true });
  const vendor = join(site, "vendor");
  mkdirSync(vendor);
  const need = (path) => {
    if (!existsSync(path)) fail(`${path} is missing: run 'npm ci' in web/`);
    return path;
  };
  cpSync(need(join(MODULES, "dexie/dist/dexie.mjs")), join(vendor, "dexie.mjs"));
  cpSync(need(join(MODULES, "pouchdb-browser/lib/index.es.js")), join(vendor, "pouchdb-browser.js"));
  cpSync(need(join(MODULES, "uuid/dist/esm-browser")), join(vendor, "uuid"), { recursive: true });
  writeFileSync(join(vendor, "spark-md5.js"), cjsAsEsm(need(join(MODULES, "spark-md5/spark-md5.js"))));
  writeFileSync(join(vendor, "vuvuzela.js"), cjsAsEsm(need(join(MODULES, "vuvuzela/index.js"))));
  return site;
}

const WORDS = ["water the plants", "call ann", "buy milk", "fix the bike", "read the paper", "book the train", "pay rent", "email bob"];
const CREATED_AT = 1_764_000_000_000;

/** Document `i`: about 100 bytes, shaped like the demo's notes. */
function note(i) {
  return {
    _id: `n${String(i).padStart(7, "0")}`,
    text: `note ${i}: ${WORDS[i % WORDS.length]}`,
    done: i % 3 === 0,
    createdAt: CREATED_AT + i,
    author: "bench",
  };
}

/** Seeds N documents through `POST /v1/txn`, SEED_BATCH per transaction. */
async function seed(server) {
  const post = async (ops) => {
    const res = await fetch(`${server.url}/v1/txn`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ops }),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(`POST /v1/txn: ${res.status} ${JSON.stringify(body)}`);
    return body.lsn;
  };
  await post([{ op: "create_collection", collection: COLLECTION }]);
  for (let i = 0; i < N; i += SEED_BATCH) {
    const ops = [];
    for (let j = i; j < Math.min(N, i + SEED_BATCH); j++) ops.push({ op: "insert", collection: COLLECTION, doc: note(j) });
    await post(ops);
  }
  return (await server.status()).last_lsn;
}

/** The installed version of npm package `name`. */
const version = (name) => JSON.parse(readFileSync(join(MODULES, name, "package.json"), "utf8")).version;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  const skip = cannotRun();
  if (skip) fail(`${skip} (the bench needs the package's browser build from web/scripts/build.sh)`);
  const bin = releaseBin();
  const started = Date.now();
  const loadAtStart = loadavg()[0];
  const site = stageSite();
  let server;
  let browserServer;
  let browser;
  try {
    server = await Server.start({ demoDir: site, bin });
    const t0 = Date.now();
    const lastLsn = await seed(server);
    const seedMs = Date.now() - t0;
    console.log(`[bench] seeded ${N} documents in ${N / SEED_BATCH} transactions in ${seedMs} ms; last LSN ${lastLsn}`);

    browserServer = await chromium.launchServer({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: CHROMIUM_ARGS,
    });
    browser = await chromium.connect(browserServer.wsEndpoint());
    const page = await (await browser.newContext()).newPage();
    page.on("pageerror", (e) => console.error(`[page] ${e.message}`));
    await page.goto(`${server.url}/index.html`);
    await page.waitForFunction(() => window.bench, null, { timeout: 20_000 });
    await page.evaluate(() => window.bench.ready());
    const userAgent = await page.evaluate(() => window.bench.userAgent());
    const fetched = await page.evaluate((c) => window.bench.fetchDocs(c), COLLECTION);
    if (fetched.count !== N) throw new Error(`fetched ${fetched.count} documents, expected ${N}`);
    const docBytes = Math.round(fetched.bytes / N);
    console.log(`[bench] page has the ${N} documents (${docBytes} B each as JSON), e.g. ${JSON.stringify(fetched.sample)}`);

    const results = new Map();
    const record = (key, ms, count, docs = N) => {
      if (count !== docs) throw new Error(`${key}: ${count} documents at the end, expected ${docs}`);
      if (!results.has(key)) results.set(key, { docs, ms: [] });
      results.get(key).ms.push(ms);
      console.log(`[bench]   ${key}: ${ms.toFixed(0)} ms for ${docs} (${Math.round(docs / (ms / 1000))} docs/s)`);
    };
    const pouchNotes = [];
    let stored = null;
    for (let run = 1; run <= RUNS; run++) {
      console.log(`[bench] round ${run} of ${RUNS}`);
      const c = await page.evaluate((a) => window.bench.cstore(a), { name: `bench-cstore-${run}`, lastLsn, collection: COLLECTION });
      if (c.status.appliedLsn !== lastLsn) throw new Error(`cstore applied ${c.status.appliedLsn}, leader's last is ${lastLsn}`);
      record("cstore", c.ms, c.count);
      stored = c.stored;
      const dexies = [["dexie-one", 0, null], ["dexie-chunks", CHUNK, null]];
      // The extras (strict durability, raw IndexedDB, PouchDB) run in the first round only.
      if (run === 1) dexies.push(["dexie-strict", 0, "strict"]);
      for (const [key, chunk, durability] of dexies) {
        const d = await page.evaluate((a) => window.bench.dexie(a), { name: `bench-${key}-${run}`, chunk, durability, collection: COLLECTION });
        record(key, d.ms, d.count);
      }
      if (run === 1) {
        const r = await page.evaluate((a) => window.bench.rawIdb(a), { name: `bench-raw-${run}`, collection: COLLECTION });
        record("raw-idb", r.ms, r.count);
      }
      if (!opts["no-pouchdb"] && run === 1) {
        // PouchDB is much slower: one round only, to keep the whole run near 3 minutes.
        try {
          const p = await page.evaluate((a) => window.bench.pouchdb(a), {
            name: `bench-pouch-${run}`,
            docs: POUCH_DOCS,
            chunk: CHUNK,
            replicate: !opts["no-pouchdb-replicate"],
            batchSize: CHUNK,
          });
          record("pouchdb-bulk", p.bulkMs, p.bulkCount, POUCH_DOCS);
          if (p.replicateMs !== null) record("pouchdb-replicate", p.replicateMs, p.replicateCount, POUCH_DOCS);
        } catch (e) {
          pouchNotes.push(`PouchDB failed: ${e.message.split("\n")[0]}`);
          console.error(`[bench] ${pouchNotes.at(-1)}`);
        }
      }
    }

    const report = renderReport({ results, lastLsn, seedMs, docBytes, userAgent, pouchNotes, sample: fetched.sample, stored, loadAtStart });
    console.log(`\n${report.table}`);
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(join(RESULTS_DIR, "bootstrap.md"), report.markdown);
    console.log(`\n[bench] wrote ${join(RESULTS_DIR, "bootstrap.md")} (${((Date.now() - started) / 1000).toFixed(0)} s in all)`);
    return report.ok;
  } finally {
    await browser?.close().catch(() => {});
    await stopBrowser(browserServer);
    await server?.dispose();
    rmSync(site, { recursive: true, force: true });
  }
}

/** Closes the browser server, then makes sure its process (by PID) is gone. */
async function stopBrowser(browserServer) {
  if (!browserServer) return;
  const pid = browserServer.process()?.pid;
  await browserServer.close().catch(() => {});
  if (pid === undefined) return;
  try {
    process.kill(pid, 0);
    process.kill(pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

const LABELS = {
  cstore: "cstore replica bootstrap (`Replica.open` → caught up)",
  "dexie-one": "Dexie `bulkPut`, one call",
  "dexie-chunks": `Dexie \`bulkPut\`, chunks of ${CHUNK.toLocaleString("en")}`,
  "dexie-strict": "Dexie `bulkPut`, one call, `durability: \"strict\"`",
  "raw-idb": "raw IndexedDB `put` loop, one transaction",
  "pouchdb-bulk": `PouchDB \`bulkDocs\`, chunks of ${CHUNK.toLocaleString("en")}`,
  "pouchdb-replicate": `PouchDB \`replicate\` idb → fresh idb (batch ${CHUNK.toLocaleString("en")})`,
};

function renderReport({ results, lastLsn, seedMs, docBytes, userAgent, pouchNotes, sample, stored, loadAtStart }) {
  const ms = (key) => (results.has(key) ? median(results.get(key).ms) : null);
  // The reference: the faster plain Dexie variant (browser-default durability).
  const dexieKey = ms("dexie-chunks") < ms("dexie-one") ? "dexie-chunks" : "dexie-one";
  const dexieRate = N / ms(dexieKey);
  const rows = [...results.keys()].map((key) => {
    const { docs } = results.get(key);
    const m = ms(key);
    return {
      system: LABELS[key],
      docs,
      ms: Math.round(m),
      rate: Math.round(docs / (m / 1000)),
      pct: Math.round((docs / m / dexieRate) * 100),
      runs: results.get(key).ms.map((x) => Math.round(x)).join(", "),
    };
  });
  const fmt = (n) => n.toLocaleString("en");
  const head = "| system | docs | ms | docs/s | % of Dexie | runs (ms) |\n|---|--:|--:|--:|--:|---|";
  const body = rows.map((r) => `| ${r.system} | ${fmt(r.docs)} | ${fmt(r.ms)} | ${fmt(r.rate)} | ${r.pct}% | ${r.runs} |`).join("\n");
  const table = `${head}\n${body}`;
  const cstore = rows[0];
  const rateOk = cstore.rate >= 20_000;
  const pctOk = cstore.pct >= 70;
  const targets = [
    `- bootstrap ≥ 20,000 docs/s: ${fmt(cstore.rate)} docs/s — ${rateOk ? "met" : "**missed**"}`,
    `- bootstrap ≥ 70% of Dexie (${LABELS[dexieKey]}): ${cstore.pct}% — ${pctOk ? "met" : "**missed**"}`,
  ].join("\n");
  const storedLine = Object.entries(stored)
    .map(([store, { records, bytes }]) => `\`${store}\` ${fmt(records)} record${records === 1 ? "" : "s"} (${fmt(Math.round(bytes / 1024))} KiB)`)
    .join(", ");
  const pouchLine = pouchNotes.length ? `\n${pouchNotes.map((n) => `- ${n}`).join("\n")}\n` : "";
  const markdown = `# Browser bootstrap: cstore vs Dexie vs PouchDB

${N.toLocaleString("en")} documents of about ${docBytes} B (as JSON), e.g. \`${JSON.stringify(sample)}\`,
in one headless chromium run; median of the rounds (strict Dexie, raw IndexedDB and PouchDB:
first round only; PouchDB on the first
${POUCH_DOCS.toLocaleString("en")} documents only: it is too slow for all of them within the run's
3 minutes). "% of Dexie" is throughput (docs/s) relative to ${LABELS[dexieKey]} (the faster plain
Dexie variant).

${table}

Targets (issue 5 / issue 7):
${targets}
${pouchLine}
Why the replica is ahead: the raw IndexedDB loop is no faster than Dexie, so the cost is
IndexedDB's, per record; the replica writes the log as a few large framed segments (below),
while Dexie, the raw loop and PouchDB write one record per document (PouchDB several, plus
revision trees). The replica answers queries from its in-memory state, so it pays no per-document index
in IndexedDB; the price is memory and a replay of the log at open.

## Method

- \`cstore serve\` (release) on 127.0.0.1 with a fresh data directory; the documents were
  written through \`POST /v1/txn\` in ${N / SEED_BATCH} transactions of ${fmt(SEED_BATCH)}
  (${fmt(seedMs)} ms), last LSN ${lastLsn}.
- The page fetched the documents once through \`POST /v1/c/${COLLECTION}/find\` (untimed) for
  Dexie and PouchDB.
- cstore: from \`Replica.open({url, name})\` on a fresh IndexedDB database until
  \`status().appliedLsn\` equals the leader's last LSN: WebSocket, entries, IndexedDB writes
  (read-write transactions with \`durability: "strict"\`) and the in-memory state. The replica
  stores the log as framed byte segments, not one record per document; after the bootstrap its
  database held: ${storedLine}.
- Dexie ${version("dexie")}: an opened table keyed by \`_id\` (opening untimed); \`bulkPut\` of the
  in-memory documents; chromium's default durability unless marked strict.
- Raw IndexedDB: an object store with \`keyPath: "_id"\`, one read-write transaction
  \`put\`ting every document (chromium's default durability), until \`complete\`.
- PouchDB (\`pouchdb-browser\` ${version("pouchdb-browser")}, idb adapter, loaded through an import map, with a small
  \`events\` stand-in): \`bulkDocs\` of copies of the documents; then \`PouchDB.replicate\`
  from that database into a fresh one (pouchdb-browser has no in-memory adapter).
- Every measurement on a fresh database, deleted afterwards; timed in the page with
  \`performance.now()\`.

## Machine

${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"}; ${userAgent}. One-minute load average
${loadAtStart.toFixed(1)} at the start and ${loadavg()[0].toFixed(1)} at the end (the machine may be shared: compare rows of one
run, not runs).

Command: \`npm --prefix web run bench:bootstrap\` (after \`web/scripts/build.sh\` and
\`cargo build --release -p cstore-server --bin cstore\`).
`;
  return { table: `${table}\n\n${targets}`, markdown, ok: true };
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`[bench] ERROR: ${e.stack || e}`);
    process.exit(1);
  },
);
