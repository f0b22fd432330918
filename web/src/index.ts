// The package's browser (and bundler) entry: `import { openReplica } from "cstore"`.
//
// The wasm module is wasm-pack's `--target web` build in ../pkg-web; it is loaded on the first
// `openReplica` (its `.wasm` is fetched next to its JavaScript, through `import.meta.url`).

import type { Db } from "./db.js";
import { browserEnv } from "./hub.js";
import { openerOf, openWith, type ServerUrls } from "./open.js";
import type { OpenOptions } from "./types.js";
import type { ReplicaOpener, WasmModule } from "./wasm.js";

export * from "./shared.js";

let loading: Promise<ReplicaOpener> | null = null;

function load(): Promise<ReplicaOpener> {
  loading ??= (async () => {
    const module = (await import("../pkg-web/cstore_wasm.js")) as unknown as WasmModule & {
      default: () => Promise<unknown>;
    };
    await module.default();
    return openerOf(module);
  })();
  return loading;
}

/**
 * Opens the replica of the server at `url` (`http(s)://host:port`, or its WebSocket URL
 * `ws(s)://host:port/v1/replicate`), or of the cluster whose members are `urls` (an array of
 * such URLs: the replica follows the leader, moves to another member when one goes away, and
 * refuses a server of another store). Tabs of one origin with the same `name` share one
 * connection: the first opens it, the others use it through that tab.
 */
export function openReplica(urls: ServerUrls, options: OpenOptions = {}): Promise<Db> {
  return openWith(load, browserEnv(), urls, options);
}
