// The release `cstore` binary the benchmarks run: CSTORE_BIN, else
// $CARGO_TARGET_DIR/release/cstore, else target/release/cstore; exits with a clear message
// when there is none.

import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export function releaseBin() {
  const candidates = process.env.CSTORE_BIN
    ? [process.env.CSTORE_BIN]
    : [process.env.CARGO_TARGET_DIR && join(process.env.CARGO_TARGET_DIR, "release/cstore"), join(ROOT, "target/release/cstore")];
  const bin = candidates.filter(Boolean).find((b) => existsSync(b));
  if (!bin) {
    console.error(
      `[bench] ERROR: no release cstore binary (tried ${candidates.filter(Boolean).join(", ")}): ` +
        "run `cargo build --release -p cstore-server --bin cstore` or set CSTORE_BIN",
    );
    process.exit(2);
  }
  return bin;
}
