// What the browser end-to-end tests share: a real `cstore serve` on a free loopback port with a
// temporary data directory and the built demo, Debian's chromium driven by playwright-core,
// and helpers that read the demo page.
//
// Processes are stopped by their own PID (never by name). Screenshots go to web/test-results/.

import { spawn } from "node:child_process";
import { after, before } from "node:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const WEB = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const ROOT = resolve(WEB, "..");
export const DEMO_DIR = join(WEB, "dist/demo");
export const RESULTS_DIR = join(WEB, "test-results");

/**
 * Why the suite cannot run against this build, or `false`: the demo must be built, and its
 * wasm module must export the browser replica (a build of cstore-wasm from before the replica
 * exports only `version`). Tests pass this as `skip`, so the reason shows in the test report.
 */
export function cannotRun() {
  const glue = join(DEMO_DIR, "pkg-web/cstore_wasm.js");
  if (!existsSync(glue)) return `no built demo in ${DEMO_DIR}: run web/scripts/build.sh`;
  if (!/export class Replica\b/.test(readFileSync(glue, "utf8"))) {
    return "this build of cstore-wasm has no Replica export (the browser replica is not in it)";
  }
  return false;
}

/** The `cstore` binary: CSTORE_BIN, else the debug build in the cargo target dir. */
export function cstoreBin() {
  const bin = process.env.CSTORE_BIN || join(process.env.CARGO_TARGET_DIR || join(ROOT, "target"), "debug/cstore");
  if (!existsSync(bin)) {
    throw new Error(`no cstore binary at ${bin}: build it (cargo build -p cstore-server) or set CSTORE_BIN`);
  }
  if (!existsSync(join(DEMO_DIR, "index.html"))) {
    throw new Error(`no built demo in ${DEMO_DIR}: run web/scripts/build.sh`);
  }
  return bin;
}

/** A free loopback port (bound and released; the server binds it right after). */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.unref();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A `cstore serve` process: start, SIGKILL, start again on the same port and data. */
export class Server {
  /** `options.demoDir` (default: the built demo), `options.bin` (default: `cstoreBin()`) and
   * `options.args` (more `serve` arguments). */
  constructor(port, dataDir, options = {}) {
    this.port = port;
    this.dataDir = dataDir;
    this.demoDir = options.demoDir ?? DEMO_DIR;
    this.bin = options.bin ?? null;
    /** Further `serve` arguments (a cluster member's `--node-id` and `--cluster`). */
    this.args = options.args ?? [];
    this.url = `http://127.0.0.1:${port}`;
    this.child = null;
    this.log = "";
  }

  /** Starts a server on a free port with a fresh data directory and the demo (`options`: see
   * the constructor). */
  static async start(options = {}) {
    const dataDir = mkdtempSync(join(tmpdir(), "cstore-e2e-"));
    const server = new Server(await freePort(), dataDir, options);
    await server.spawn();
    return server;
  }

  /** Starts the process and waits for /v1/health. */
  async spawn() {
    const args = ["serve", "--listen", `127.0.0.1:${this.port}`, "--data-dir", this.dataDir, "--demo-dir", this.demoDir, ...this.args];
    const child = spawn(this.bin ?? cstoreBin(), args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" } });
    this.child = child;
    const keep = (chunk) => {
      this.log = (this.log + chunk).slice(-20_000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const until = Date.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`cstore serve exited with ${child.exitCode}:\n${this.log}`);
      try {
        const res = await fetch(`${this.url}/v1/health`);
        if (res.ok) return;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > until) throw new Error(`cstore serve did not answer in 15 s:\n${this.log}`);
      await sleep(50);
    }
  }

  /** Sends `signal` to the process (by its PID) and waits for it to exit. */
  async stop(signal = "SIGTERM") {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    process.kill(child.pid, signal);
    await exited;
    this.child = null;
  }

  /** SIGKILL: no shutdown, no flush beyond what was acknowledged. */
  kill9() {
    return this.stop("SIGKILL");
  }

  /** Stops the process and deletes its data. */
  async dispose() {
    await this.stop("SIGKILL");
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** `GET /v1/status`. */
  async status() {
    return (await fetch(`${this.url}/v1/status`)).json();
  }

  /** Inserts `doc` into `collection` through the server's HTTP API (expects 201). */
  async insert(collection, doc) {
    const res = await fetch(`${this.url}/v1/c/${collection}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(doc),
    });
    if (res.status !== 201) throw new Error(`insert into ${collection}: ${res.status} ${await res.text()}`);
  }

  /** Every document of `collection` on the server (sorted by `_id`). */
  async all(collection) {
    const res = await fetch(`${this.url}/v1/c/${collection}/find`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ filter: {}, limit: 10_000 }),
    });
    if (res.status === 404) return [];
    const body = await res.json();
    if (!res.ok) throw new Error(`find ${collection}: ${JSON.stringify(body)}`);
    return body.docs;
  }
}

/** Chromium flags that keep it off the (closed) network; see the machine notes. */
export const CHROMIUM_ARGS = [
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-gpu",
  "--disable-quic",
  "--disable-dev-shm-usage",
  "--no-sandbox",
];

/** Debian's chromium, headless. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/** Opens the demo in a new page of `context` and waits until its replica is open. */
export async function openDemo(context, server) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[page ${page.url()}] ${e.message}`));
  await page.goto(server.url + "/");
  await waitForDemo(page);
  return page;
}

/** Waits until the page's database is open (or its error banner shows). */
export async function waitForDemo(page) {
  await page.waitForFunction(
    () => window.cstoreDemo || !document.getElementById("banner").hidden,
    null,
    { timeout: 20_000 },
  );
  const failed = await page.evaluate(() => (window.cstoreDemo ? null : document.getElementById("banner").textContent));
  if (failed) throw new Error(`the demo did not open: ${failed}`);
}

/** The replica's status in the page. */
export function status(page) {
  return page.evaluate(() => window.cstoreDemo.db.status);
}

/** Waits for `predicate(status)` in the page (polling in node, so the predicate can close over values). */
export async function waitForStatus(page, predicate, timeoutMs = 20_000) {
  const until = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await status(page);
    if (predicate(last)) return last;
    if (Date.now() > until) throw new Error(`status never matched in ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    await sleep(50);
  }
}

/** Adds a note through the page's form. */
export async function addNote(page, text) {
  await page.fill('[data-testid="new-note"]', text);
  await page.press('[data-testid="new-note"]', "Enter");
}

/** Waits until the board shows a note with this text. */
export async function waitForNote(page, text, timeoutMs = 5_000) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('[data-testid="note"] .text')].some((e) => e.textContent === t),
    text,
    { timeout: timeoutMs, polling: 10 },
  );
}

/** The texts of the notes shown on the board. */
export function noteTexts(page) {
  return page.$$eval('[data-testid="note"] .text', (els) => els.map((e) => e.textContent));
}

/** The ids of every note in the page's replica, sorted. */
export function noteIds(page) {
  return page.evaluate(async () => (await window.cstoreDemo.notes.find({})).map((d) => d._id).sort());
}

/** Saves a screenshot to web/test-results/NAME.png. */
export async function screenshot(page, name) {
  mkdirSync(RESULTS_DIR, { recursive: true });
  await page.screenshot({ path: join(RESULTS_DIR, `${name}.png`), fullPage: false });
}

export { sleep };

/**
 * The fixture every e2e file uses: one `cstore serve` and one browser, started before the
 * file's tests and stopped (by PID) after them. Read `env.server` and `env.browser` inside
 * tests; `env.skip` is the reason to skip, if this machine cannot run them.
 */
export function serverAndBrowser() {
  const env = { server: undefined, browser: undefined, skip: cannotRun() };
  before(async () => {
    if (env.skip) return;
    env.server = await Server.start();
    env.browser = await launchBrowser();
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.dispose();
  });
  return env;
}
