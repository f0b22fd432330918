// `cstore/react` under server rendering, with React 18 and 19 from npm: `renderToString` in
// node (no window, no IndexedDB, no replica) renders the loading state, never calls the
// provider's `open`, and never touches a `db` handed to the provider; the hooks need a
// provider. Each React version is bundled with esbuild (react → react18 or react19, the
// package's own `cstore/react` through its exports map) into a temporary module.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

import { build } from "esbuild";

const UNIT = fileURLToPath(new URL(".", import.meta.url));
const out = mkdtempSync(join(tmpdir(), "cstore-react-ssr-"));
after(() => rmSync(out, { recursive: true, force: true }));

// The components under test, in the page's own terms (no JSX: plain createElement).
const ENTRY = `
import { createElement as h } from "react";
import { renderToString } from "react-dom/server";
import { version } from "react";
import { CstoreProvider, useDoc, useQuery, useStatus } from "cstore/react";

function Notes() {
  const { data, loading, error } = useQuery("notes", { filter: { done: false }, sort: { text: 1 } });
  const one = useDoc("notes", "n1");
  const status = useStatus();
  if (error) return h("p", { id: "error" }, error.code);
  return h("main", null,
    h("p", { id: "state" }, loading ? "loading" : "ready:" + data.length),
    h("p", { id: "doc" }, one.loading ? "doc loading" : String(one.data)),
    h("p", { id: "status" }, status === null ? "no status" : "status"));
}

export { version };
export const render = (props) => renderToString(h(CstoreProvider, props, h(Notes)));
export const renderBare = () => renderToString(h(Notes));
`;

async function bundle(react, reactDom) {
  const outfile = join(out, `${react}.mjs`);
  await build({
    stdin: { contents: ENTRY, resolveDir: UNIT, loader: "js" },
    bundle: true,
    platform: "node",
    format: "esm",
    outfile,
    alias: { react, "react-dom": reactDom },
    define: { "process.env.NODE_ENV": '"production"' },
    logLevel: "error",
    // React's CommonJS builds call require() for node's modules: give the ES module one.
    banner: { js: 'import { createRequire } from "node:module"; const require = createRequire(import.meta.url);' },
  });
  return import(pathToFileURL(outfile).href);
}

/** A `Db` stand-in that records every property read (a rendering that touched it would show). */
function untouchableDb() {
  const touched = [];
  const db = new Proxy({}, { get: (_, key) => (touched.push(String(key)), () => {}) });
  return { db, touched };
}

for (const [react, reactDom, major] of [["react18", "react-dom18", "18"], ["react19", "react-dom19", "19"]]) {
  test(`React ${major}: renderToString without a window renders loading and opens nothing`, async () => {
    assert.equal(typeof globalThis.window, "undefined");
    assert.equal(typeof globalThis.indexedDB, "undefined");
    const app = await bundle(react, reactDom);
    assert.equal(app.version.split(".")[0], major);

    let opens = 0;
    const html = app.render({ open: () => (opens++, Promise.reject(new Error("opened during SSR"))) });
    assert.match(html, /<p id="state">loading<\/p>/);
    assert.match(html, /<p id="doc">doc loading<\/p>/);
    assert.match(html, /<p id="status">no status<\/p>/);
    assert.equal(opens, 0, "open() ran during server rendering");

    const { db, touched } = untouchableDb();
    const withDb = app.render({ db });
    assert.match(withDb, /<p id="state">loading<\/p>/);
    assert.deepEqual(touched, [], "the db was used during server rendering");

    assert.throws(() => app.renderBare(), /no <CstoreProvider>|needs a <CstoreProvider>/);
  });
}
