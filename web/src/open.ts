// `openReplica` for any environment: the browser and node entries differ only in how they load
// the wasm module, so each hands its loader to `openWith`.

import { Db } from "./db.js";
import { Codes, CstoreError } from "./errors.js";
import { Hub, type TabEnv } from "./hub.js";
import type { OpenOptions } from "./types.js";
import type { ReplicaOpener, WasmModule, WasmOpenOptions } from "./wasm.js";

/** The replica's WebSocket path on a Collection Store server. */
export const REPLICATE_PATH = "/v1/replicate";

/** Where a replica syncs from: one server's URL, or the URLs of a cluster's members. */
export type ServerUrls = string | readonly string[];

/**
 * One server URL as the replica's pair: a WebSocket URL (`ws://host:7070/v1/replicate`) is
 * used as is; an HTTP one (`http://host:7070`) is the server's base URL, for writes too.
 */
function replicationUrl(url: unknown): { ws: string; http?: string } {
  if (typeof url !== "string" || url === "") {
    throw new CstoreError(Codes.invalidArgument, "a server URL is a non-empty string");
  }
  const http = /^(https?):\/\/([^/?#]+)/.exec(url);
  if (http) {
    return { ws: `${http[1] === "https" ? "wss" : "ws"}://${http[2]}${REPLICATE_PATH}`, http: `${http[1]}://${http[2]}` };
  }
  if (!/^wss?:\/\//.test(url)) {
    throw new CstoreError(Codes.invalidArgument, `${url} is neither a ws(s):// nor an http(s):// URL`);
  }
  return { ws: url };
}

/**
 * The wasm options for `urls`: one server (a string), or the members of a cluster (an array,
 * tried in turn; the replica prefers the leader and moves on when a member goes away).
 */
export function wasmOptions(urls: ServerUrls, options: OpenOptions = {}): WasmOpenOptions {
  let out: WasmOpenOptions;
  if (Array.isArray(urls)) {
    if (urls.length === 0) {
      throw new CstoreError(Codes.invalidOptions, "openReplica needs at least one server URL");
    }
    if (options.httpUrl !== undefined) {
      throw new CstoreError(
        Codes.invalidOptions,
        "httpUrl goes with one URL; with several, each member's HTTP base comes from its URL",
      );
    }
    out = { urls: urls.map((url) => replicationUrl(url).ws) };
  } else if (typeof urls === "string" && urls !== "") {
    const { ws, http } = replicationUrl(urls);
    out = { url: ws };
    if (http !== undefined) out.httpUrl = http;
    if (options.httpUrl !== undefined) out.httpUrl = options.httpUrl;
  } else {
    throw new CstoreError(Codes.invalidArgument, "openReplica needs the server's URL (or the cluster members' URLs)");
  }
  if (options.token !== undefined) out.token = options.token;
  if (options.name !== undefined) out.name = options.name;
  if (options.writeChannel !== undefined) {
    if (options.writeChannel !== "websocket" && options.writeChannel !== "http") {
      throw new CstoreError(Codes.invalidOptions, 'writeChannel is "websocket" or "http"');
    }
    out.writeChannel = options.writeChannel;
  }
  if (options.collections !== undefined) {
    if (!Array.isArray(options.collections) || options.collections.length === 0) {
      throw new CstoreError(Codes.invalidOptions, "collections is a non-empty array of collection names");
    }
    out.collections = [...options.collections];
  }
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
  urls: ServerUrls,
  options: OpenOptions = {},
): Promise<Db> {
  const wasm = wasmOptions(urls, options);
  const open = await load();
  const hub = await Hub.start(open, wasm, env, options.multiTab ?? true);
  return new Db(hub);
}
