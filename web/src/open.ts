// `openReplica` for any environment: the browser and node entries differ only in how they load
// the wasm module, so each hands its loader to `openWith`.

import { Db } from "./db.js";
import { Codes, CstoreError } from "./errors.js";
import { Hub, type TabEnv } from "./hub.js";
import type { OpenOptions } from "./types.js";
import type { ReplicaOpener, WasmModule, WasmOpenOptions } from "./wasm.js";

/** The replica's WebSocket path on a Collection Store server. */
export const REPLICATE_PATH = "/v1/replicate";

/**
 * The wasm options for `url`: a WebSocket URL (`ws://host:7070/v1/replicate`) is used as
 * is; an HTTP one (`http://host:7070`) is the server's base URL, for writes too.
 */
export function wasmOptions(url: string, options: OpenOptions = {}): WasmOpenOptions {
  if (typeof url !== "string" || url === "") {
    throw new CstoreError(Codes.invalidArgument, "openReplica needs the server's URL");
  }
  const out: WasmOpenOptions = { url };
  const http = /^(https?):\/\/([^/?#]+)/.exec(url);
  if (http) {
    out.url = `${http[1] === "https" ? "wss" : "ws"}://${http[2]}${REPLICATE_PATH}`;
    out.httpUrl = `${http[1]}://${http[2]}`;
  } else if (!/^wss?:\/\//.test(url)) {
    throw new CstoreError(Codes.invalidArgument, `${url} is neither a ws(s):// nor an http(s):// URL`);
  }
  if (options.httpUrl !== undefined) out.httpUrl = options.httpUrl;
  if (options.token !== undefined) out.token = options.token;
  if (options.name !== undefined) out.name = options.name;
  return out;
}

/** `Replica.open` of a loaded module, or a clear error when the build has no replica. */
export function openerOf(module: WasmModule): ReplicaOpener {
  const Replica = module.Replica;
  if (!Replica || typeof Replica.open !== "function") {
    return () =>
      Promise.reject(
        new CstoreError(Codes.unsupported, "this build of the cstore wasm module has no Replica export"),
      );
  }
  return (options) => Replica.open(options);
}

/** Opens a replica with this loader and environment (the entries pass theirs). */
export async function openWith(
  load: () => Promise<ReplicaOpener>,
  env: TabEnv,
  url: string,
  options: OpenOptions = {},
): Promise<Db> {
  const wasm = wasmOptions(url, options);
  const open = await load();
  const hub = await Hub.start(open, wasm, env, options.multiTab ?? true);
  return new Db(hub);
}
