// `cstore/react` in headless Chromium with React 18 and 19 from npm, against a real
// `cstore serve`: the page (react-app.mjs, bundled per version with esbuild) mounts a provider
// that opens the replica, in StrictMode. Per version:
//   - useQuery renders a loading state first, then the data the server had;
//   - StrictMode's double effects open one replica and hold one watch per hook, not two;
//   - a write through the server's HTTP API re-renders the list within the propagation time;
//   - useDoc follows a document through a remote PATCH and DELETE, and another id after a
//     re-render (one watch swapped for another);
//   - a query the replica refuses gives `error` (and `loading: false`);
//   - unmounting a hook releases its watch, unmounting the app releases all of them and the
//     provider closes the replica it opened.

import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

import { launchBrowser, screenshot, Server } from "./harness.mjs";

const WEB = fileURLToPath(new URL("../..", import.meta.url));
const APP = fileURLToPath(new URL("./react-app.mjs", import.meta.url));
/** The slowest a remote write may take to reach the page (the sync test holds 1 s too). */
const PROPAGATION_MS_MAX = 1_000;

function cannotRun() {
  const glue = join(WEB, "pkg-web/cstore_wasm.js");
  if (!existsSync(glue) || !existsSync(join(WEB, "dist/react.js"))) return "the package is not built: run web/scripts/build.sh";
  if (!/export class Replica\b/.test(readFileSync(glue, "utf8"))) return "this build of cstore-wasm has no Replica export";
  return false;
}
const skip = cannotRun();

const VERSIONS = [
  { major: "18", react: "react18", reactDom: "react-dom18" },
  { major: "19", react: "react19", reactDom: "react-dom19" },
];

/** Bundles the page for each React version into `dir`, next to the wasm module it fetches. */
async function buildPages(dir) {
  for (const v of VERSIONS) {
    await build({
      entryPoints: [APP],
      bundle: true,
      format: "esm",
      platform: "browser",
      outfile: join(dir, `react${v.major}.js`),
      alias: { react: v.react, "react-dom": v.reactDom },
      // Development builds: StrictMode's double effects only happen there.
      define: { "process.env.NODE_ENV": '"development"' },
      logLevel: "error",
    });
    writeFileSync(
      join(dir, `react${v.major}.html`),
      `<!doctype html><meta charset="utf-8"><title>cstore/react ${v.major}</title>` +
        `<div id="root"></div><script type="module" src="./react${v.major}.js"></script>\n`,
    );
  }
  // The wasm glue fetches its module next to itself (import.meta.url: here, the bundle).
  copyFileSync(join(WEB, "pkg-web/cstore_wasm_bg.wasm"), join(dir, "cstore_wasm_bg.wasm"));
  writeFileSync(join(dir, "index.html"), "<!doctype html><title>cstore/react tests</title>\n");
}

async function http(server, method, path, body) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const text = (page, id) => page.textContent(`[data-testid="${id}"]`);
const waitText = (page, id, expected, timeout = 10_000) =>
  page.waitForFunction(
    ([sel, want]) => document.querySelector(sel)?.textContent === want,
    [`[data-testid="${id}"]`, expected],
    { timeout, polling: 5 },
  );
const state = (page) =>
  page.evaluate(() => ({
    counts: { ...window.cstoreReact.counts },
    active: window.cstoreReact.activeWatches(),
    renders: window.cstoreReact.renders.length,
  }));

describe("cstore/react in Chromium", { skip }, () => {
  let dir;
  let server;
  let browser;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "cstore-react-e2e-"));
    await buildPages(dir);
    server = await Server.start({ demoDir: dir });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await server?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const v of VERSIONS) {
    test(`React ${v.major}: loading, data, remote writes, StrictMode, errors, unmount`, async () => {
      const collection = `notes${v.major}`;
      await http(server, "PUT", `/v1/c/${collection}/n1`, { text: "b first" });
      await http(server, "PUT", `/v1/c/${collection}/n2`, { text: "c second" });

      const page = await browser.newPage();
      const errors = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(`${server.url}/react${v.major}.html`);
      await page.waitForFunction(() => window.cstoreReact, null, { timeout: 10_000 });
      assert.equal((await page.evaluate(() => window.cstoreReact.version)).split(".")[0], v.major);
      await page.evaluate(
        (options) => window.cstoreReact.mount(options),
        { collection, docId: "n1", strict: true, name: `react-${v.major}` },
      );

      // Loading first, then the server's documents (once the replica has caught up).
      await waitText(page, "notes-state", "ready 2", 20_000);
      const notes = await page.evaluate(() => window.cstoreReact.renders.filter((r) => r.c === "notes"));
      assert.deepEqual(notes[0], { c: "notes", loading: true, error: null, texts: undefined });
      assert.deepEqual(notes.at(-1), { c: "notes", loading: false, error: null, texts: ["b first", "c second"] });
      assert.ok(notes.every((r) => r.loading === (r.texts === undefined) && r.error === null), JSON.stringify(notes));
      await waitText(page, "status", "connected");

      // StrictMode mounted the provider twice: one replica opened, one watch for the one hook.
      let s = await state(page);
      assert.equal(s.counts.open, 1, "StrictMode opened the replica twice");
      assert.equal(s.active, 1, `watches held: ${s.active}`);

      // A hook mounted under StrictMode runs its effect twice (watch, unwatch, watch): one held.
      await page.evaluate(() => window.cstoreReact.show("doc", true));
      await waitText(page, "doc", "b first");
      const before = s;
      s = await state(page);
      assert.equal(s.counts.watch - before.counts.watch, 2, "StrictMode's double effect did not happen");
      assert.equal(s.active, 2, `watches held: ${s.active}`);

      // A write through the server's HTTP API re-renders the list.
      const started = Date.now();
      const { id } = await http(server, "POST", `/v1/c/${collection}`, { text: "a remote" });
      await waitText(page, "notes-state", "ready 3", PROPAGATION_MS_MAX);
      const remoteMs = Date.now() - started;
      assert.deepEqual(await page.$$eval('[data-testid="note"]', (els) => els.map((e) => e.textContent)), [
        "a remote",
        "b first",
        "c second",
      ]);

      // useDoc follows its document through a remote PATCH and a remote DELETE.
      await http(server, "PATCH", `/v1/c/${collection}/n1`, { text: "b patched" });
      await waitText(page, "doc", "b patched", PROPAGATION_MS_MAX);
      await http(server, "DELETE", `/v1/c/${collection}/n1`);
      await waitText(page, "doc", "missing", PROPAGATION_MS_MAX);
      await waitText(page, "notes-state", "ready 2", PROPAGATION_MS_MAX);

      // Another id: useDoc drops the old watch for a new one, and shows loading, not the old
      // document, until the new result arrives.
      const rendersBefore = (await state(page)).renders;
      await page.evaluate(() => window.cstoreReact.showDoc("n2"));
      await waitText(page, "doc", "c second");
      const docRenders = await page.evaluate(
        (from) => window.cstoreReact.renders.slice(from).filter((r) => r.c === "doc"),
        rendersBefore,
      );
      assert.ok(docRenders.every((r) => r.loading || r.doc?._id === "n2"), JSON.stringify(docRenders));
      assert.equal((await state(page)).active, 2);

      // A local write through the provider's db re-renders too.
      await page.evaluate((c) => window.cstoreReact.db().collection(c).insert({ text: "d local" }), collection);
      await waitText(page, "notes-state", "ready 3");

      // A query the replica refuses: an error, not a spinner forever; it holds no watch.
      await page.evaluate(() => window.cstoreReact.show("bad", true));
      await page.waitForFunction(() => document.querySelector('[data-testid="bad"]')?.textContent.startsWith("error "), null, { timeout: 5_000 });
      const bad = await page.evaluate(() => window.cstoreReact.renders.filter((r) => r.c === "bad").at(-1));
      assert.equal(bad.loading, false);
      assert.equal(bad.error, "invalid_query");
      assert.equal((await state(page)).active, 2);
      await screenshot(page, `react${v.major}`);

      // Unmounting one hook releases its watch; unmounting the app releases every watch, and
      // the provider closes the replica it opened (once).
      await page.evaluate(() => window.cstoreReact.show("doc", false));
      await page.waitForFunction(() => window.cstoreReact.activeWatches() === 1, null, { timeout: 2_000 });
      await page.evaluate(() => window.cstoreReact.unmount());
      await page.waitForFunction(() => window.cstoreReact.counts.close === 1, null, { timeout: 5_000 });
      s = await state(page);
      assert.equal(s.active, 0, `watches left after unmount: ${s.active}`);
      assert.equal(s.counts.watch, s.counts.unwatch, JSON.stringify(s.counts));
      assert.equal(s.counts.open, 1);
      assert.equal(s.counts.close, 1);
      assert.deepEqual(errors, []);
      console.log(
        `React ${v.major}: remote write rendered after ${remoteMs} ms; ` +
          `${s.counts.watch} watches made, ${s.counts.unwatch} released; ${s.renders} renders`,
      );
      await page.close();
    });
  }
});
