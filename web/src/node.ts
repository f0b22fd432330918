// The package's node entry: the same API over wasm-pack's `--target nodejs` build (../pkg-node).
//
// The replica needs the browser's `WebSocket` and `indexedDB` globals: node 22 has WebSocket;
// for IndexedDB install one first (e.g. `import "fake-indexeddb/auto"`, in memory).

import type { Db } from "./db.js";
import { openerOf, openWith } from "./open.js";
import type { OpenOptions } from "./types.js";
import type { ReplicaOpener, WasmModule } from "./wasm.js";

export * from "./shared.js";

let loading: Promise<ReplicaOpener> | null = null;

function load(): Promise<ReplicaOpener> {
  loading ??= (async () => {
    const module = (await import("../pkg-node/cstore_wasm.js")) as unknown as WasmModule & {
      default?: WasmModule;
    };
    return openerOf(module.Replica ? module : (module.default ?? module));
  })();
  return loading;
}

/** Opens the replica of the server at `url` (see the browser entry); one per process. */
export function openReplica(url: string, options: OpenOptions = {}): Promise<Db> {
  return openWith(load, {}, url, options);
}
