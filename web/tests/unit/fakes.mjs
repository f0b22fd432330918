// Test doubles for the TypeScript layer in node: a fake wasm replica over a shared in-memory
// "IndexedDB", an in-process Web Locks manager whose tabs can be killed, and tabs that bundle
// them with node's BroadcastChannel.

/** The storage every fake replica of one name shares (what IndexedDB is to real tabs). */
export class FakeDisk {
  constructor() {
    this.collections = new Map();
    this.lsn = 0;
  }

  collection(name) {
    let docs = this.collections.get(name);
    if (!docs) {
      docs = new Map();
      this.collections.set(name, docs);
    }
    return docs;
  }
}

function matches(doc, filter = {}) {
  return Object.entries(filter).every(([k, v]) => doc[k] === v);
}

function fail(code, message) {
  return Object.assign(new Error(message), { code });
}

/** A replica that implements the wasm contract over a FakeDisk, synchronously. */
export class FakeReplica {
  constructor(disk, options) {
    this.disk = disk;
    this.options = options;
    this.watches = new Map();
    this.nextWatch = 1;
    this.statusCallback = null;
    this.rejectedCallback = null;
    this.closed = false;
    /** When set, insert stores the document and then never answers (an owner that dies). */
    this.hangInserts = false;
    disk.replicas = (disk.replicas ?? new Set()).add(this);
  }

  get(collection, id) {
    this.check();
    const doc = this.disk.collection(collection).get(id);
    return doc === undefined ? undefined : structuredClone(doc);
  }

  find(collection, query) {
    this.check();
    const docs = [...this.disk.collection(collection).values()].filter((d) => matches(d, query.filter));
    docs.sort((a, b) => (a._id < b._id ? -1 : a._id > b._id ? 1 : 0));
    return structuredClone(docs.slice(query.skip ?? 0, (query.skip ?? 0) + (query.limit ?? 1e9)));
  }

  count(collection, filter) {
    return this.find(collection, { filter }).length;
  }

  async insert(collection, doc) {
    this.check();
    if (typeof doc._id !== "string") throw fail("invalid_id", "the fake needs an _id");
    const docs = this.disk.collection(collection);
    if (docs.has(doc._id)) throw fail("already_exists", `${doc._id} exists`);
    docs.set(doc._id, structuredClone(doc));
    this.changed();
    if (this.hangInserts) return new Promise(() => {});
    return { id: doc._id, pending: true };
  }

  async put(collection, doc) {
    this.check();
    this.disk.collection(collection).set(doc._id, structuredClone(doc));
    this.changed();
    return { id: doc._id, pending: true };
  }

  async update(collection, id, patch) {
    this.check();
    const docs = this.disk.collection(collection);
    const doc = docs.get(id);
    if (!doc) throw fail("not_found", `${id} not found`);
    for (const [k, v] of Object.entries(patch)) {
      if (v === null) delete doc[k];
      else doc[k] = v;
    }
    this.changed();
    return { id, pending: true };
  }

  async remove(collection, id) {
    this.check();
    if (!this.disk.collection(collection).delete(id)) throw fail("not_found", `${id} not found`);
    this.changed();
    return { id, pending: true };
  }

  watch(collection, query, callback) {
    this.check();
    if (typeof query !== "object" || query === null || "bad" in query) throw fail("invalid_query", "bad query");
    const id = this.nextWatch++;
    this.watches.set(id, { collection, query, callback });
    queueMicrotask(() => this.fire(id));
    return id;
  }

  unwatch(id) {
    return this.watches.delete(id);
  }

  status() {
    return {
      online: true,
      connected: !this.closed,
      role: "browser",
      appliedLsn: this.disk.lsn,
      leaderLsn: this.disk.lsn,
      lag: 0,
      pendingWrites: 0,
      lastError: null,
      rebootstraps: 0,
      clientId: "fake-client",
    };
  }

  onStatus(callback) {
    this.statusCallback = callback;
  }

  onRejected(callback) {
    this.rejectedCallback = callback;
  }

  async flush() {}

  async close() {
    this.closed = true;
    this.disk.replicas.delete(this);
  }

  /** Reports a rejected write, as the leader's refusal would. */
  reject(rejected) {
    this.rejectedCallback?.(rejected);
  }

  check() {
    if (this.closed) throw fail("closed", "the replica is closed");
  }

  fire(id) {
    const watch = this.watches.get(id);
    if (watch) watch.callback(this.find(watch.collection, watch.query));
  }

  changed() {
    this.disk.lsn += 1;
    // Every live replica on this disk sees the change, as replicated changes would reach it.
    for (const replica of this.disk.replicas) {
      for (const id of replica.watches.keys()) queueMicrotask(() => replica.fire(id));
      queueMicrotask(() => replica.statusCallback?.(replica.status()));
    }
  }
}

/** Web Locks for several fake tabs in one process. */
export class FakeLocks {
  constructor() {
    this.queues = new Map();
  }

  queue(name) {
    let q = this.queues.get(name);
    if (!q) {
      q = { held: null, waiting: [] };
      this.queues.set(name, q);
    }
    return q;
  }

  /** The `navigator.locks` of one tab. */
  forTab(tab) {
    return {
      request: (name, options, callback) =>
        new Promise((resolve, reject) => {
          const q = this.queue(name);
          const entry = { tab, callback, resolve, reject };
          if (options.signal?.aborted) return reject(new Error("AbortError"));
          options.signal?.addEventListener("abort", () => {
            const i = q.waiting.indexOf(entry);
            if (i >= 0) {
              q.waiting.splice(i, 1);
              reject(new Error("AbortError"));
            }
          });
          q.waiting.push(entry);
          this.grant(name);
        }),
    };
  }

  grant(name) {
    const q = this.queue(name);
    if (q.held || q.waiting.length === 0) return;
    const entry = q.waiting.shift();
    q.held = entry;
    Promise.resolve()
      .then(() => entry.callback({ name }))
      .then(
        (value) => this.release(name, entry, () => entry.resolve(value)),
        (error) => this.release(name, entry, () => entry.reject(error)),
      );
  }

  release(name, entry, settle) {
    const q = this.queue(name);
    if (q.held === entry) {
      q.held = null;
      settle();
      this.grant(name);
    }
  }

  /** The tab is gone: its held locks are freed, its waiting requests dropped. */
  kill(tab) {
    for (const [name, q] of this.queues) {
      q.waiting = q.waiting.filter((e) => e.tab !== tab);
      if (q.held?.tab === tab) {
        q.held = null;
        this.grant(name);
      }
    }
  }
}

/** One fake tab: its locks view and its channels, which `kill` closes as a closing page would. */
export class FakeTab {
  constructor(name, locks) {
    this.name = name;
    this.locks = locks;
    this.channels = [];
  }

  get env() {
    return {
      onPageHide: (cb) => (this.hideCallback = cb),
      onPageRestore: (cb) => (this.restoreCallback = cb),
      locks: this.locks.forTab(this.name),
      channel: (name) => {
        const channel = new BroadcastChannel(name);
        this.channels.push(channel);
        return channel;
      },
    };
  }

  /** The page goes into the back/forward cache and comes back. */
  hideAndRestore() {
    this.hideCallback?.();
    this.restoreCallback?.();
  }

  kill() {
    for (const channel of this.channels) {
      channel.onmessage = null;
      channel.close();
    }
    this.locks.kill(this.name);
  }
}

/** Polls `check` until it returns truthy (or throws after `timeoutMs`). */
export async function eventually(check, timeoutMs = 2000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) throw new Error(`condition not met in ${timeoutMs} ms: ${check}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
