// What a browser app downloads for `cstore`, with and without `cstore/react`: each case is
// bundled and minified with esbuild as an app's bundler would, then gzipped (level 9), next to
// the gzipped wasm module (fetched separately, the same in every case). React itself is the
// app's own dependency: it is left out of the cstore rows (external) and shown on its own line.
//
// Usage: npm --prefix web run size      (after web/scripts/build.sh; builds nothing itself)

import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

import { build } from "esbuild";

const WEB = join(dirname(fileURLToPath(import.meta.url)), "..");
const WASM = join(WEB, "pkg-web/cstore_wasm_bg.wasm");
for (const file of [WASM, join(WEB, "dist/index.js"), join(WEB, "dist/react.js")]) {
  if (!existsSync(file)) {
    console.error(`size: ${file} is missing: run web/scripts/build.sh first`);
    process.exit(1);
  }
}

/** Minified bundle of `source` (resolved from web/, so `cstore` is this package). */
async function bundle(source, { external = [], alias = {} } = {}) {
  const result = await build({
    stdin: { contents: source, resolveDir: WEB, loader: "js" },
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    external,
    alias,
    define: { "process.env.NODE_ENV": '"production"' },
    write: false,
    logLevel: "error",
  });
  return result.outputFiles[0].contents;
}

const gz = (bytes) => gzipSync(bytes, { level: 9 }).length;
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;

const wasm = readFileSync(WASM);
const core = await bundle(`export { openReplica } from "cstore";`);
const withReact = await bundle(
  `export { openReplica } from "cstore"; export * from "cstore/react";`,
  { external: ["react", "react-dom"] },
);
const react = await bundle(`export * from "react"; export { createRoot } from "react-dom/client";`, {
  alias: { react: "react19", "react-dom": "react-dom19" },
});

const rows = [
  ["cstore", core.length, gz(core)],
  ["cstore + cstore/react", withReact.length, gz(withReact)],
];
console.log("| what a browser app imports | JS min | JS min+gz | wasm gz | total gz |");
console.log("|---|---:|---:|---:|---:|");
for (const [name, raw, zipped] of rows) {
  console.log(`| ${name} | ${kb(raw)} | ${kb(zipped)} | ${kb(gz(wasm))} | ${kb(zipped + gz(wasm))} |`);
}
console.log(
  `\ncstore/react adds ${kb(withReact.length - core.length)} minified, ${kb(gz(withReact) - gz(core))} gzipped; ` +
    `React 19 itself (react + react-dom/client, the app's own) is ${kb(gz(react))} gzipped. ` +
    `wasm: ${kb(wasm.length)} raw.`,
);
