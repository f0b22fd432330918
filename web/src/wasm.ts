// The wasm replica's JavaScript exports (crate cstore-wasm, wasm/src/api.rs), written down as
// TypeScript interfaces. The rest of the package talks to the replica only through these, so
// the multi-tab layer and the unit tests can put a fake in its place, and the TypeScript build
// does not depend on which exports a given wasm build has.

import type { ErrorInfo } from "./types.js";

/** Options of `Replica.open`. */
export interface WasmOpenOptions {
  /** One server's `ws(s)://…/v1/replicate`; or `urls`, the members of a cluster. */
  url?: string;
  urls?: string[];
  token?: string;
  name?: string;
  httpUrl?: string;
  collections?: string[];
  /** `"websocket"` (default) or `"http"`. */
  writeChannel?: "websocket" | "http";
}

/** The replica's status object (`status()`), before this package adds the tab role. */
export interface WasmStatus {
  online: boolean;
  connected: boolean;
  role: string;
  appliedLsn: number;
  leaderLsn: number;
  lag: number;
  pendingWrites: number;
  lastError: ErrorInfo | string | null;
  rebootstraps: number;
  member?: string | null;
  memberSwitches?: number;
  refusedMembers?: { url: string; code: string; message: string }[];
  clientId?: string;
  closed?: boolean;
}

/** A write the leader refused (`onRejected`). */
export interface WasmRejected {
  seq: number;
  code: string;
  message: string;
  ops: unknown;
}

/** A write's answer. */
export interface WasmWritten {
  id: string;
  pending: boolean;
}

/** An open replica: reads are synchronous and local; writes resolve once queued durably. */
export interface WasmReplica {
  get(collection: string, id: string): object | undefined;
  find(collection: string, query: object): object[];
  count(collection: string, filter: object): number;
  insert(collection: string, doc: object): Promise<WasmWritten>;
  put(collection: string, doc: object): Promise<WasmWritten>;
  update(collection: string, id: string, patch: object): Promise<WasmWritten>;
  remove(collection: string, id: string): Promise<WasmWritten>;
  watch(collection: string, query: object, callback: (docs: object[]) => void): number;
  unwatch(id: number): boolean | void;
  status(): WasmStatus;
  onStatus(callback: (status: WasmStatus) => void): void;
  onRejected(callback: (rejected: WasmRejected) => void): void;
  flush(): Promise<void>;
  close(): Promise<void>;
  /** Resolves once local reads see every write the cluster acknowledged before the call. */
  readBarrier?(): Promise<number>;
}

/** Opens a replica: `Replica.open` of the loaded module. */
export type ReplicaOpener = (options: WasmOpenOptions) => Promise<WasmReplica>;

/** What a wasm-pack build of cstore-wasm exports (the parts this package uses). */
export interface WasmModule {
  Replica?: { open(options: WasmOpenOptions): Promise<WasmReplica> };
  version?: () => string;
}
