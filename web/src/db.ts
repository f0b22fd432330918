// `Db` and `Collection<T>`: the idiomatic face over the replica. Every read and write is a
// promise (in a follower tab it crosses to the owner tab), documents are typed per
// collection, and every failure is a `CstoreError` with a code.

import { Codes, CstoreError } from "./errors.js";
import type { Hub } from "./hub.js";
import type {
  AnyDocument,
  Document,
  Filter,
  NewDocument,
  Patch,
  Query,
  ReadOptions,
  RejectedWrite,
  Status,
  TabRole,
  Unsubscribe,
  WriteResult,
} from "./types.js";

/** Events of `db.on`. */
export interface DbEvents {
  /** The sync status changed (online, lsn, lag, pending writes, errors). */
  status: Status;
  /** The leader refused a write; it has been rolled back locally. */
  rejected: RejectedWrite;
  /** This tab's role changed (a follower tab took over the connection). */
  tab: TabRole;
}

/** An open replica database. */
export class Db {
  /** @internal */
  constructor(private readonly hub: Hub) {}

  /** The collection `name`, with documents typed `T`. */
  collection<T extends Document = AnyDocument>(name: string): Collection<T> {
    if (typeof name !== "string" || name === "") {
      throw new CstoreError(Codes.invalidArgument, "a collection name is a non-empty string");
    }
    return new Collection<T>(this.hub, name);
  }

  /** The current sync status. */
  get status(): Status {
    return this.hub.status();
  }

  /** Subscribes to an event; returns the function that unsubscribes. */
  on<E extends keyof DbEvents>(event: E, listener: (value: DbEvents[E]) => void): Unsubscribe {
    switch (event) {
      case "status":
        return this.hub.onStatus(listener as (value: Status) => void);
      case "rejected":
        return this.hub.onRejected(listener as (value: RejectedWrite) => void);
      case "tab":
        return this.hub.onTab(listener as (value: TabRole) => void);
      default:
        throw new CstoreError(Codes.invalidArgument, `unknown event ${String(event)}`);
    }
  }

  /** Resolves when every pending write is confirmed or rejected by the leader. */
  async flush(): Promise<void> {
    await this.hub.call("flush", []);
  }

  /** Closes the database (in the owner tab: another tab takes over syncing). */
  close(): Promise<void> {
    return this.hub.close();
  }
}

/** Read options as plain data (they cross to the owner tab), checked here. */
function readOptions(options: ReadOptions): ReadOptions {
  const consistency = options?.consistency;
  if (consistency !== undefined && consistency !== "local" && consistency !== "linearizable") {
    throw new CstoreError(Codes.invalidArgument, `consistency is "local" or "linearizable", not ${String(consistency)}`);
  }
  return consistency === undefined ? {} : { consistency };
}

/** Options of `collection.watch`. */
export interface WatchOptions {
  /** Called if the live query fails (a bad query); default: `console.error`. */
  onError?: (error: CstoreError) => void;
}

/** A collection of documents of type `T`. */
export class Collection<T extends Document = AnyDocument> {
  /** @internal */
  constructor(
    private readonly hub: Hub,
    /** The collection's name. */
    readonly name: string,
  ) {}

  /** Inserts a document (an `_id` is generated when absent); applied locally at once. */
  async insert(doc: NewDocument<T>): Promise<WriteResult> {
    return (await this.hub.call("insert", [this.name, doc])) as WriteResult;
  }

  /** Creates or replaces the document `doc._id`. */
  async put(doc: T): Promise<WriteResult> {
    return (await this.hub.call("put", [this.name, doc])) as WriteResult;
  }

  /**
   * The document `id`, or `undefined`. `{consistency: "linearizable"}` waits until the local
   * copy holds every write the cluster acknowledged before the call (see `ReadOptions`).
   */
  async get(id: string, options: ReadOptions = {}): Promise<T | undefined> {
    return ((await this.hub.call("get", [this.name, id, readOptions(options)])) ?? undefined) as T | undefined;
  }

  /** The documents matching `query` (all of them without one); `options` as for `get`. */
  async find(query: Query<T> = {}, options: ReadOptions = {}): Promise<T[]> {
    return (await this.hub.call("find", [this.name, query, readOptions(options)])) as T[];
  }

  /** How many documents match `filter`; `options` as for `get`. */
  async count(filter: Filter<T> = {} as Filter<T>, options: ReadOptions = {}): Promise<number> {
    return (await this.hub.call("count", [this.name, filter, readOptions(options)])) as number;
  }

  /** Merges `patch` into the document `id` (RFC 7386: `null` removes a field). */
  async update(id: string, patch: Patch<T>): Promise<WriteResult> {
    return (await this.hub.call("update", [this.name, id, patch])) as WriteResult;
  }

  /** Deletes the document `id`. */
  async remove(id: string): Promise<WriteResult> {
    return (await this.hub.call("remove", [this.name, id])) as WriteResult;
  }

  /**
   * A live query: `callback` receives the full result at once, then again after every batch
   * of changes (local or replicated) that alters it. Returns the function that stops it.
   */
  watch(query: Query<T>, callback: (docs: T[]) => void, options: WatchOptions = {}): Unsubscribe {
    const onError = options.onError ?? ((e: CstoreError) => console.error(`cstore: watch on ${this.name}:`, e));
    return this.hub.watch(this.name, query, callback as (docs: object[]) => void, onError);
  }
}
