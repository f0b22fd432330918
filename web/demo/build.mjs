// Bundles the demo (app.tsx) into dist/demo/app.js with esbuild; run by web/scripts/build.sh
// after tsc has built the package (dist/*.js) and type-checked the demo.
//
//   demo/app.tsx ─┬─ "cstore", "cstore/react" ─► dist/index.js, dist/react.js (demo/tsconfig.json's
//                 │                              paths: the app imports the package by its names)
//                 ├─ react, react-dom/client ──► react19, react-dom19 (the devDependencies' aliases),
//                 │                              production builds
//                 └─ the wasm glue (../pkg-web/cstore_wasm.js, imported by dist/index.js when the
//                    first replica opens) ──► left out: loaded at run time from
//                    dist/demo/pkg-web/, which fetches its .wasm next to itself
//
// Keeping the glue a file of its own keeps the demo's layout (pkg-web/ next to the page), so
// the wasm module is fetched only when the replica opens, as in any app on the package.

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const DEMO = dirname(fileURLToPath(import.meta.url));
const WEB = join(DEMO, "..");

/** The wasm glue stays external, at ./pkg-web/ relative to app.js. */
const wasmGlueExternal = {
  name: "cstore-wasm-glue-external",
  setup(b) {
    b.onResolve({ filter: /(^|\/)pkg-web\/cstore_wasm\.js$/ }, () => ({
      path: "./pkg-web/cstore_wasm.js",
      external: true,
    }));
  },
};

await build({
  entryPoints: [join(DEMO, "app.tsx")],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  tsconfig: join(DEMO, "tsconfig.json"),
  alias: { react: "react19", "react-dom": "react-dom19" },
  define: { "process.env.NODE_ENV": '"production"' },
  minify: true,
  sourcemap: true,
  plugins: [wasmGlueExternal],
  outfile: join(WEB, "dist/demo/app.js"),
  logLevel: "warning",
});
