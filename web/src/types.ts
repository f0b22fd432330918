// The types of the package's public face: documents, queries, write results, status.
//
// They describe the JSON that crosses the wasm boundary (the server's HTTP contract in
// docs/HTTP_API.md), so a query typed here is a query the replica accepts.

/** A value that survives JSON. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/**
 * A stored document: a JSON object with a string `_id`. Describe a collection's documents by
 * extending it (`interface Note extends Document { text: string }`); it has no index
 * signature, so the fields of such an interface stay checked.
 */
export interface Document {
  _id: string;
}

/** A document of an untyped collection: any JSON fields. */
export type AnyDocument = Document & { [field: string]: unknown };

/** A document to insert: `_id` may be left out (one is generated). */
export type NewDocument<T extends Document> = Omit<T, "_id"> & { _id?: string };

/** A merge patch (RFC 7386): fields to set; `null` removes a field. */
export type Patch<T extends Document> = { [K in keyof Omit<T, "_id">]?: Omit<T, "_id">[K] | null };

/** Comparison operators on one field. */
export interface Operators<V> {
  $eq?: V;
  $ne?: V;
  $gt?: V;
  $gte?: V;
  $lt?: V;
  $lte?: V;
  $in?: V[];
  $nin?: V[];
  $exists?: boolean;
  $not?: Condition<V>;
}

/** A field's condition: a value (equality) or operators. */
export type Condition<V> = V | Operators<V>;

/**
 * A Mongo-style filter: conditions on top-level fields (typed after `T`), on dotted paths
 * (`"address.city"`), combined with `$and` / `$or`.
 */
export type Filter<T extends Document = AnyDocument> = {
  [K in keyof T]?: Condition<T[K]>;
} & {
  $and?: Filter<T>[];
  $or?: Filter<T>[];
  [path: string]: unknown;
};

/** Sort order: `{field: 1}` / `{field: -1}`, or several keys as `[["a", 1], ["b", -1]]`. */
export type Sort = Record<string, 1 | -1> | Array<[string, 1 | -1]>;

/** A query: the body of the server's `find`. An empty filter matches every document. */
export interface Query<T extends Document = AnyDocument> {
  filter?: Filter<T>;
  sort?: Sort;
  limit?: number;
  skip?: number;
}

/** What a write answers: the document's id; `pending` until the leader confirms it. */
export interface WriteResult {
  id: string;
  pending: boolean;
}

/** An error as carried in status and rejection reports. */
export interface ErrorInfo {
  code: string;
  message: string;
}

/** Which tab of this origin does the syncing: see the README of `web/`. */
export type TabRole = "owner" | "follower" | "single";

/** The replica's sync state (`db.status`, and `db.on("status", ...)`). */
export interface Status {
  /** The browser believes it is online. */
  online: boolean;
  /** The WebSocket to the leader is open and the session is established. */
  connected: boolean;
  /** This replica's role ("browser"). */
  role: string;
  /** The last log position applied locally. */
  appliedLsn: number;
  /** The leader's last known log position. */
  leaderLsn: number;
  /** `leaderLsn - appliedLsn`. */
  lag: number;
  /** Local writes not yet confirmed by the leader. */
  pendingWrites: number;
  /** The last sync error, if any. */
  lastError: ErrorInfo | null;
  /** How often the local copy was fetched again from scratch (divergence, corruption). */
  rebootstraps: number;
  /** The HTTP base of the server the replica streams from (null before the first connection). */
  member: string | null;
  /** How often the connection moved to another member of the cluster (a failover, a lost member). */
  memberSwitches: number;
  /** Servers refused because they hold another store (code `wrong_cluster`): never connected to. */
  refusedMembers: RefusedMember[];
  /** The replica's client id (the `origin.client` of its writes), when known. */
  clientId?: string;
  /** Whether this tab owns the connection, follows the owner tab, or runs alone. */
  tab: TabRole;
}

/** A server the replica refused to follow, and why. */
export interface RefusedMember {
  /** Its HTTP base URL. */
  url: string;
  /** Why: `wrong_cluster` (it holds another store than the one this replica follows). */
  code: string;
  message: string;
}

/** How fresh a read must be. */
export interface ReadOptions {
  /**
   * `"local"` (the default): the local copy as it is, also offline. `"linearizable"`: first
   * ask the cluster for its read index and wait until the local copy applied it, so the read
   * sees every write acknowledged anywhere before it began; fails with `offline` (no
   * connection) or `unavailable` (no quorum, no answer) rather than answer stale.
   */
  consistency?: "local" | "linearizable";
}

/** A write the leader refused; it has been rolled back locally. */
export interface RejectedWrite {
  seq: number;
  code: string;
  message: string;
  ops: unknown;
}

/** Options of `openReplica`. */
export interface OpenOptions {
  /** A token with scope `read` (and `write` for writes), from `cstore token create`. */
  token?: string;
  /** The local database's name (IndexedDB); tabs with the same name share one replica. */
  name?: string;
  /** The server's HTTP base URL for writes when it differs from the replication URL's (one URL only). */
  httpUrl?: string;
  /**
   * The collections to follow (default: all). The local copy then holds only these; reads,
   * watches and writes of any other collection fail with `not_subscribed`. Changing the list
   * for an existing `name` fetches the copy again.
   */
  collections?: string[];
  /** Share one connection between the tabs of this origin (default: true where supported). */
  multiTab?: boolean;
  /**
   * How queued writes reach the server: `"websocket"` (the default) pipelines them over one
   * write channel (`GET /v1/write`) to the leader, falling back to `POST /v1/txns` when a
   * server refuses the channel; `"http"` uses `POST /v1/txns` only.
   */
  writeChannel?: WriteChannel;
}

/** How queued writes reach the server (`OpenOptions.writeChannel`). */
export type WriteChannel = "websocket" | "http";

/** Stops a watch or an event subscription. */
export type Unsubscribe = () => void;
