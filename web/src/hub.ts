// One replica per origin, shared by every tab: the owner tab runs the wasm replica (the
// WebSocket and the IndexedDB writes); the other tabs forward their calls to it.
//
// Two tabs that each ran a replica on the same IndexedDB database would both write to it and
// both hold a WebSocket: twice the traffic, and two writers racing on one store. So the tabs
// elect an owner with an exclusive Web Lock, and talk to it over a BroadcastChannel:
//
//   tab A (owner)                               tab B (follower)
//   navigator.locks.request(name) granted       request(name) waits in the lock's queue
//   Replica.open ─► "owner" ──────────────────► knows A; sends queued calls to A
//   replica.get/find/insert... ◄─── "req" ───── db.collection("notes").find(...)
//                               ─── "res" ───►  resolves the call
//   replica.watch(q) ◄───────────── "watch" ─── collection.watch(q, cb)
//                    ─── "docs" (each change) ► cb(docs)
//   onStatus / onRejected ─── "status" / "rejected" to every tab
//   A closes: the lock is freed ──────────────► B is granted it: Replica.open (resumes from
//                                               IndexedDB, pending writes included), "owner";
//                                               the other followers re-send unanswered calls
//                                               and re-register their live queries with B.
//
// A call that A received but never answered is sent again to the next owner. For an insert
// this could write twice, so inserts get their `_id` here, before the first send: a repeated
// insert then fails with `already_exists` on a document this tab wrote, and counts as done.
//
// Without Web Locks or BroadcastChannel (or with `multiTab: false`) the tab runs its own
// replica ("single").

import { Codes, CstoreError } from "./errors.js";
import { isMessage, type Message, type Method } from "./messages.js";
import type { ErrorInfo, ReadOptions, RejectedWrite, Status, TabRole, Unsubscribe } from "./types.js";
import type { ReplicaOpener, WasmOpenOptions, WasmReplica, WasmStatus } from "./wasm.js";

/** The part of `navigator.locks` used here. */
export interface LockManagerLike {
  request(
    name: string,
    options: { mode: "exclusive"; signal?: AbortSignal },
    callback: (lock: unknown) => Promise<void>,
  ): Promise<unknown>;
}

/** The part of `BroadcastChannel` used here. */
export interface ChannelLike {
  postMessage(message: unknown): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  close(): void;
}

/** The browser facilities the hub uses; injected so tests can run it in node. */
export interface TabEnv {
  /** Web Locks; absent: single-tab mode. */
  locks?: LockManagerLike;
  /** Opens the channel of this name; absent: single-tab mode. */
  channel?: (name: string) => ChannelLike;
  /** Registers a callback for when the page goes away (or into the back/forward cache). */
  onPageHide?: (callback: () => void) => void;
  /** Registers a callback for when the page comes back from the back/forward cache. */
  onPageRestore?: (callback: () => void) => void;
}

/** The environment of the current page (browser globals, when they exist). */
export function browserEnv(): TabEnv {
  const g = globalThis as unknown as {
    navigator?: { locks?: LockManagerLike };
    BroadcastChannel?: new (name: string) => ChannelLike;
    addEventListener?: (type: string, cb: (event: { persisted?: boolean }) => void) => void;
  };
  const env: TabEnv = {};
  if (g.navigator?.locks) env.locks = g.navigator.locks;
  const Channel = g.BroadcastChannel;
  if (Channel) env.channel = (name) => new Channel(name);
  if (g.addEventListener) {
    env.onPageHide = (cb) => g.addEventListener?.("pagehide", cb);
    env.onPageRestore = (cb) =>
      g.addEventListener?.("pageshow", (event) => {
        if (event.persisted) cb();
      });
  }
  return env;
}

/** How many calls may wait for an owner tab at once. */
export const PENDING_CALLS_MAX = 10_000;
/** How long a follower whose takeover failed waits before it queues for the lock again. */
export const TAKEOVER_RETRY_MS = 2_000;
/** How many live queries an owner keeps for other tabs. */
export const SERVED_WATCHES_MAX = 4_096;

interface PendingCall {
  method: Method;
  args: unknown[];
  resolve: (value: unknown) => void;
  reject: (error: CstoreError) => void;
  /** Sent to an owner that went away before answering. */
  resent: boolean;
}

interface OwnWatch {
  collection: string;
  query: object;
  callback: (docs: object[]) => void;
  onError: (error: CstoreError) => void;
  /** The replica's watch id, while this tab owns the replica. */
  wasmId?: number;
}

type Listener<T> = (value: T) => void;

/** The replica of this tab's origin, local or through the owner tab. */
export class Hub {
  private readonly tabId = randomId(16);
  private role: TabRole = "follower";
  private replica: WasmReplica | null = null;
  private ownerId: string | null = null;
  private channel: ChannelLike | null = null;
  private lastStatus: WasmStatus | null = null;
  private closed = false;
  private readonly calls = new Map<number, PendingCall>();
  private nextCall = 1;
  private readonly watches = new Map<number, OwnWatch>();
  private nextWatch = 1;
  /** Owner: live queries of other tabs, `${tab}/${key}` to the replica's watch id. */
  private readonly served = new Map<string, number>();
  private readonly statusListeners = new Set<Listener<Status>>();
  private readonly rejectedListeners = new Set<Listener<RejectedWrite>>();
  private readonly ownerListeners = new Set<Listener<TabRole>>();
  private releaseLock: (() => void) | null = null;
  private locks: LockManagerLike | null = null;
  private lockName = "";
  private readonly abortLock = new AbortController();
  private ready!: { resolve: () => void; reject: (e: CstoreError) => void; settled: boolean };

  private constructor(
    private readonly open: ReplicaOpener,
    private readonly options: WasmOpenOptions,
  ) {}

  /** Opens the replica of `options.name` in this tab, or joins the tab that owns it. */
  static async start(
    open: ReplicaOpener,
    options: WasmOpenOptions,
    env: TabEnv,
    multiTab: boolean,
  ): Promise<Hub> {
    const hub = new Hub(open, options);
    const ready = new Promise<void>((resolve, reject) => {
      hub.ready = { resolve, reject, settled: false };
    });
    if (!multiTab || !env.locks || !env.channel) {
      hub.role = "single";
      try {
        hub.adopt(await open(options));
      } catch (e) {
        throw CstoreError.from(e);
      }
      return hub;
    }
    const name = `cstore:${options.name ?? "cstore"}`;
    hub.channel = env.channel(name);
    hub.channel.onmessage = (event) => {
      if (isMessage(event.data)) hub.receive(event.data);
    };
    env.onPageHide?.(() => {
      if (hub.role === "follower") hub.post({ t: "bye", from: hub.tabId });
    });
    // Back from the back/forward cache: the owner dropped this tab's live queries at "bye"
    // (and may have changed); ask again, and re-register everything with whoever answers.
    env.onPageRestore?.(() => {
      if (hub.role !== "follower") return;
      hub.ownerId = null;
      hub.post({ t: "hello", from: hub.tabId });
    });
    hub.lockName = name;
    hub.locks = env.locks;
    hub.requestLock();
    hub.post({ t: "hello", from: hub.tabId });
    try {
      await ready;
    } catch (e) {
      hub.shutChannel();
      throw e;
    }
    return hub;
  }

  /** Which role this tab plays. */
  get tab(): TabRole {
    return this.role;
  }

  /** The replica's status as this tab knows it. */
  status(): Status {
    const status = this.replica ? this.replica.status() : this.lastStatus;
    return toStatus(status, this.role);
  }

  /** Calls the replica (here, or in the owner tab). */
  call(method: Method, args: unknown[]): Promise<unknown> {
    if (this.closed) return Promise.reject(new CstoreError(Codes.closed, "the database is closed"));
    if (this.calls.size >= PENDING_CALLS_MAX) {
      return Promise.reject(
        new CstoreError(Codes.tooManyRequests, `${PENDING_CALLS_MAX} calls already wait for the owner tab`),
      );
    }
    if (method === "insert") args = [args[0], withId(args[1])];
    return new Promise((resolve, reject) => {
      const id = this.nextCall++;
      this.calls.set(id, { method, args, resolve, reject, resent: false });
      this.dispatch(id);
    });
  }

  /** A live query: `callback` gets the full result now and after each change to it. */
  watch(
    collection: string,
    query: object,
    callback: (docs: object[]) => void,
    onError: (error: CstoreError) => void,
  ): Unsubscribe {
    if (this.closed) throw new CstoreError(Codes.closed, "the database is closed");
    const key = this.nextWatch++;
    const watch: OwnWatch = { collection, query, callback, onError };
    this.watches.set(key, watch);
    this.attach(key, watch);
    return () => {
      if (!this.watches.delete(key)) return;
      if (watch.wasmId !== undefined) {
        this.replica?.unwatch(watch.wasmId);
      } else if (this.ownerId !== null && this.ownerId !== this.tabId) {
        this.post({ t: "unwatch", from: this.tabId, to: this.ownerId, key });
      }
    };
  }

  /** Calls `listener` with each new status. */
  onStatus(listener: Listener<Status>): Unsubscribe {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Calls `listener` with each write the leader refused. */
  onRejected(listener: Listener<RejectedWrite>): Unsubscribe {
    this.rejectedListeners.add(listener);
    return () => this.rejectedListeners.delete(listener);
  }

  /** Calls `listener` when this tab's role changes (a follower taking over). */
  onTab(listener: Listener<TabRole>): Unsubscribe {
    this.ownerListeners.add(listener);
    return () => this.ownerListeners.delete(listener);
  }

  /** Stops: closes the replica if this tab owns it (another tab takes over), fails waiting calls. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const replica = this.replica;
    this.replica = null;
    for (const [, call] of this.calls) call.reject(new CstoreError(Codes.closed, "the database is closed"));
    this.calls.clear();
    this.watches.clear();
    if (this.role === "follower") this.post({ t: "bye", from: this.tabId });
    this.abortLock.abort();
    try {
      if (replica) await replica.close();
    } finally {
      this.releaseLock?.();
      this.shutChannel();
    }
  }

  // --- owner side -------------------------------------------------------------------------------

  /** Queues for the owner lock; `own` runs once it is granted. */
  private requestLock(): void {
    if (this.closed || !this.locks) return;
    this.locks
      .request(this.lockName, { mode: "exclusive", signal: this.abortLock.signal }, () => this.own())
      .catch(() => {
        // Aborted by close() while waiting: nothing to do.
      });
  }

  /** Runs while this tab holds the lock: opens the replica and serves the other tabs. */
  private async own(): Promise<void> {
    if (this.closed) return;
    let replica: WasmReplica;
    try {
      replica = await this.open(this.options);
    } catch (e) {
      // Give the lock up: another tab may succeed. This tab fails its open, or, if it had
      // already joined an owner, reports the error in its status.
      const error = CstoreError.from(e);
      if (!this.ready.settled) {
        this.settle(error);
      } else {
        // A follower that failed to take over: report it, and queue again later, so that a
        // lasting failure (or the last tab failing) does not leave the origin without an owner.
        this.emitStatus({ ...this.status(), lastError: error.toInfo() });
        setTimeout(() => this.requestLock(), TAKEOVER_RETRY_MS);
      }
      return;
    }
    if (this.closed) {
      await replica.close();
      return;
    }
    this.role = "owner";
    this.ownerId = this.tabId;
    this.adopt(replica);
    this.post({ t: "owner", from: this.tabId, status: replica.status() });
    for (const [key, watch] of this.watches) this.attach(key, watch);
    for (const id of [...this.calls.keys()]) this.dispatch(id);
    for (const listener of this.ownerListeners) listener(this.role);
    this.settle(null);
    this.emitStatus(this.status());
    await new Promise<void>((resolve) => {
      this.releaseLock = resolve;
    });
  }

  /** Uses `replica` from now on: status and rejections flow to this tab's listeners and out. */
  private adopt(replica: WasmReplica): void {
    this.replica = replica;
    replica.onStatus((status) => {
      if (this.replica !== replica) return;
      this.emitStatus(toStatus(status, this.role));
      this.post({ t: "status", from: this.tabId, status });
    });
    replica.onRejected((rejected) => {
      if (this.replica !== replica) return;
      this.emitRejected(rejected);
      this.post({ t: "rejected", from: this.tabId, rejected });
    });
  }

  /** Owner: runs another tab's message. */
  private async serve(message: Message): Promise<void> {
    const replica = this.replica;
    if (!replica) return;
    switch (message.t) {
      case "hello":
        this.post({ t: "owner", from: this.tabId, status: replica.status() });
        return;
      case "req": {
        try {
          const value = await runOn(replica, message.method, message.args);
          this.post({ t: "res", from: this.tabId, to: message.from, id: message.id, ok: true, value });
        } catch (e) {
          const error = CstoreError.from(e).toInfo();
          this.post({ t: "res", from: this.tabId, to: message.from, id: message.id, ok: false, error });
        }
        return;
      }
      case "watch": {
        const slot = `${message.from}/${message.key}`;
        const old = this.served.get(slot);
        if (old !== undefined) replica.unwatch(old);
        this.served.delete(slot);
        const fail = (error: ErrorInfo) =>
          this.post({ t: "watch-error", from: this.tabId, to: message.from, key: message.key, error });
        if (this.served.size >= SERVED_WATCHES_MAX) {
          fail({ code: "too_many_watches", message: `the owner tab keeps ${SERVED_WATCHES_MAX} live queries at most` });
          return;
        }
        try {
          const to = message.from;
          const key = message.key;
          const id = replica.watch(message.collection, message.query, (docs) => {
            this.post({ t: "docs", from: this.tabId, to, key, docs });
          });
          this.served.set(slot, id);
        } catch (e) {
          fail(CstoreError.from(e).toInfo());
        }
        return;
      }
      case "unwatch": {
        const slot = `${message.from}/${message.key}`;
        const id = this.served.get(slot);
        if (id !== undefined) replica.unwatch(id);
        this.served.delete(slot);
        return;
      }
      case "bye":
        for (const [slot, id] of this.served) {
          if (slot.startsWith(`${message.from}/`)) {
            replica.unwatch(id);
            this.served.delete(slot);
          }
        }
        return;
      default:
        return;
    }
  }

  // --- follower side ----------------------------------------------------------------------------

  private receive(message: Message): void {
    if (message.from === this.tabId) return;
    if ("to" in message && message.to !== this.tabId) return;
    if (this.role === "owner") {
      void this.serve(message);
      return;
    }
    switch (message.t) {
      case "owner":
        this.lastStatus = message.status;
        if (this.ownerId !== message.from) {
          this.ownerId = message.from;
          for (const [id, call] of this.calls) {
            call.resent = true;
            this.dispatch(id);
          }
          for (const [key, watch] of this.watches) this.attach(key, watch);
        }
        this.settle(null);
        this.emitStatus(this.status());
        return;
      case "res": {
        const call = this.calls.get(message.id);
        if (!call) return;
        this.calls.delete(message.id);
        if (message.ok) {
          call.resolve(message.value);
        } else if (call.resent && call.method === "insert" && message.error.code === "already_exists") {
          // The previous owner wrote it and went away before answering (see the module docs).
          call.resolve({ id: (call.args[1] as { _id: string })._id, pending: true });
        } else {
          call.reject(new CstoreError(message.error.code, message.error.message));
        }
        return;
      }
      case "docs":
        this.watches.get(message.key)?.callback(message.docs);
        return;
      case "watch-error": {
        const watch = this.watches.get(message.key);
        if (watch) {
          this.watches.delete(message.key);
          watch.onError(new CstoreError(message.error.code, message.error.message));
        }
        return;
      }
      case "status":
        this.lastStatus = message.status;
        this.emitStatus(this.status());
        return;
      case "rejected":
        this.emitRejected(message.rejected);
        return;
      default:
        return;
    }
  }

  /** Runs or forwards a waiting call; it waits on if no owner is known yet. */
  private dispatch(id: number): void {
    const call = this.calls.get(id);
    if (!call) return;
    const replica = this.replica;
    if (replica) {
      runOn(replica, call.method, call.args).then(
        (value) => {
          this.calls.delete(id);
          call.resolve(value);
        },
        (e) => {
          this.calls.delete(id);
          call.reject(CstoreError.from(e));
        },
      );
    } else if (this.ownerId !== null) {
      this.post({ t: "req", from: this.tabId, to: this.ownerId, id, method: call.method, args: call.args });
    }
  }

  /** Registers a live query with the replica here, or with the owner tab. */
  private attach(key: number, watch: OwnWatch): void {
    const replica = this.replica;
    if (replica) {
      try {
        watch.wasmId = replica.watch(watch.collection, watch.query, watch.callback);
      } catch (e) {
        this.watches.delete(key);
        watch.onError(CstoreError.from(e));
      }
    } else if (this.ownerId !== null) {
      const { collection, query } = watch;
      this.post({ t: "watch", from: this.tabId, to: this.ownerId, key, collection, query });
    }
  }

  // --- shared -----------------------------------------------------------------------------------

  private settle(error: CstoreError | null): void {
    if (this.ready.settled) return;
    this.ready.settled = true;
    if (error) this.ready.reject(error);
    else this.ready.resolve();
  }

  private post(message: Message): void {
    try {
      this.channel?.postMessage(message);
    } catch {
      // A closed channel (the page is going away): nothing listens any more.
    }
  }

  private shutChannel(): void {
    if (!this.channel) return;
    this.channel.onmessage = null;
    this.channel.close();
    this.channel = null;
  }

  private emitStatus(status: Status): void {
    for (const listener of this.statusListeners) listener(status);
  }

  private emitRejected(rejected: RejectedWrite): void {
    for (const listener of this.rejectedListeners) listener(rejected);
  }
}

/** Runs one call on the replica (reads are synchronous there; writes return promises). */
async function runOn(replica: WasmReplica, method: Method, args: unknown[]): Promise<unknown> {
  const [collection, a, b] = args as [string, unknown, unknown];
  switch (method) {
    case "get":
      await barrier(replica, b);
      return replica.get(collection, a as string);
    case "find":
      await barrier(replica, b);
      return replica.find(collection, a as object);
    case "count":
      await barrier(replica, b);
      return replica.count(collection, a as object);
    case "insert":
      return replica.insert(collection, a as object);
    case "put":
      return replica.put(collection, a as object);
    case "update":
      return replica.update(collection, a as string, b as object);
    case "remove":
      return replica.remove(collection, a as string);
    case "flush":
      return replica.flush();
  }
}

/**
 * Before a linearizable read: waits until the replica applied the cluster's read index (it
 * rejects with `offline` or `unavailable` rather than let the read answer stale). Runs in
 * the tab that owns the replica, so a follower tab's read is as fresh as the owner's.
 */
async function barrier(replica: WasmReplica, options: unknown): Promise<void> {
  if ((options as ReadOptions | undefined)?.consistency !== "linearizable") return;
  if (typeof replica.readBarrier !== "function") {
    throw new CstoreError(Codes.unsupported, "this build of the cstore wasm module has no linearizable reads");
  }
  await replica.readBarrier();
}

/** The document with an `_id`: a generated one (time-ordered, 26 hex digits) when absent. */
function withId(doc: unknown): unknown {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) return doc;
  if ("_id" in doc) return doc;
  return { _id: newId(), ...doc };
}

/** A new document id: 12 hex digits of milliseconds, then 14 random ones (sorts by time). */
export function newId(): string {
  return Date.now().toString(16).padStart(12, "0").slice(-12) + randomId(14);
}

function randomId(hexDigits: number): string {
  const bytes = new Uint8Array(Math.ceil(hexDigits / 2));
  globalThis.crypto.getRandomValues(bytes);
  let text = "";
  for (const byte of bytes) text += byte.toString(16).padStart(2, "0");
  return text.slice(0, hexDigits);
}

/** The replica's status with the tab role; defaults before any status is known. */
function toStatus(status: WasmStatus | null, tab: TabRole): Status {
  const online = (globalThis as { navigator?: { onLine?: boolean } }).navigator?.onLine ?? true;
  if (!status) {
    return {
      online,
      connected: false,
      role: "browser",
      appliedLsn: 0,
      leaderLsn: 0,
      lag: 0,
      pendingWrites: 0,
      lastError: null,
      rebootstraps: 0,
      member: null,
      memberSwitches: 0,
      refusedMembers: [],
      tab,
    };
  }
  const lastError =
    typeof status.lastError === "string" ? { code: "error", message: status.lastError } : (status.lastError ?? null);
  const out: Status = {
    online: status.online,
    connected: status.connected,
    role: status.role,
    appliedLsn: status.appliedLsn,
    leaderLsn: status.leaderLsn,
    lag: status.lag,
    pendingWrites: status.pendingWrites,
    lastError,
    rebootstraps: status.rebootstraps,
    member: status.member ?? null,
    memberSwitches: status.memberSwitches ?? 0,
    refusedMembers: status.refusedMembers ?? [],
    tab,
  };
  if (status.clientId !== undefined) out.clientId = status.clientId;
  return out;
}
