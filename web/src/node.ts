// The package's node entry: the same API over wasm-pack's `--target nodejs` build (../pkg-node).
//
// The replica uses the browser's `WebSocket` and `indexedDB` globals (and `fetch`, which node
// has). WebSocket: node 22 has a global one; on node 20 (no global) this entry installs the
// `ws` package's as `globalThis.WebSocket` before the first open. IndexedDB: node has none; the
// app installs one first, e.g. `import "fake-indexeddb/auto"` (in memory: the replica then
// bootstraps again in each process), else `openReplica` fails with code `unsupported`.

import type { Db } from "./db.js";
import { Codes, CstoreError } from "./errors.js";
import { openerOf, openWith, type ServerUrls } from "./open.js";
import type { OpenOptions } from "./types.js";
import type { ReplicaOpener, WasmModule } from "./wasm.js";

export * from "./shared.js";

// A variable, not a literal: TypeScript then needs no types for `ws`, and bundlers for the
// browser never look for it (only this entry, under the "node" condition, loads it).
const WS_PACKAGE = "ws";

let loading: Promise<ReplicaOpener> | null = null;

/** Installs `ws` as the global WebSocket when node has none (node < 22). */
async function ensureWebSocket(): Promise<void> {
  const g = globalThis as { WebSocket?: unknown };
  if (typeof g.WebSocket === "function") return;
  let WsWebSocket: WsConstructor;
  try {
    const ws = (await import(WS_PACKAGE)) as { WebSocket?: WsConstructor; default?: WsConstructor };
    WsWebSocket = (ws.WebSocket ?? ws.default) as WsConstructor;
  } catch (e) {
    throw new CstoreError(
      Codes.unsupported,
      `this node has no global WebSocket and the 'ws' package did not load (${String(e)}): use node 22, or install ws`,
    );
  }
  // A browser's WebSocket reports a failure to its `onerror` handler or to nobody; ws's is an
  // EventEmitter, whose "error" without a listener throws. The replica drops its handlers
  // before it closes a socket that may still be connecting (which ws reports as an error), so
  // each socket keeps a listener of its own that ignores errors: the handlers see them.
  class NodeWebSocket extends WsWebSocket {
    constructor(...args: unknown[]) {
      super(...args);
      this.on("error", () => undefined);
    }
  }
  g.WebSocket ??= NodeWebSocket;
}

/** The part of the `ws` package's WebSocket class used here. */
type WsConstructor = new (...args: unknown[]) => { on(event: "error", listener: (e: unknown) => void): unknown };

function load(): Promise<ReplicaOpener> {
  loading ??= (async () => {
    const module = (await import("../pkg-node/cstore_wasm.js")) as unknown as WasmModule & {
      default?: WasmModule;
    };
    return openerOf(module.Replica ? module : (module.default ?? module));
  })();
  return loading;
}

/**
 * Opens the replica of the server at `urls` (one URL, or the members of a cluster: see the
 * browser entry); one per process.
 */
export async function openReplica(urls: ServerUrls, options: OpenOptions = {}): Promise<Db> {
  if ((globalThis as { indexedDB?: unknown }).indexedDB === undefined) {
    throw new CstoreError(
      Codes.unsupported,
      "node has no IndexedDB: install one before opening a replica, e.g. import \"fake-indexeddb/auto\"",
    );
  }
  await ensureWebSocket();
  return openWith(load, {}, urls, options);
}
