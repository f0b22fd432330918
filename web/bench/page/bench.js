// The in-page half of the bootstrap benchmark (web/bench/bootstrap.mjs drives it through
// `window.bench`). Every measurement runs on a fresh IndexedDB database, is timed here with
// `performance.now()` (so playwright's round trips are not in it), and deletes its database
// afterwards. What is timed:
//   cstore: `Replica.open` → `status().appliedLsn` reaches the leader's last LSN (WebSocket,
//           entries, IndexedDB writes, state build);
//   dexie:  `bulkPut` of the documents (already in memory) into an open table keyed by `_id`,
//           in one call or in sequential calls of `chunk` documents;
//   raw:    IndexedDB `put` of every document in one transaction (what Dexie sits on);
//   pouchdb: `bulkDocs` of copies of the documents (in chunks), then, optionally, replication
//           of that database into a fresh one.

import init, { Replica } from "./pkg-web/cstore_wasm.js";

const TIMEOUT_MS = 120_000;
let docs = null;

function log(line) {
  document.getElementById("log").textContent += `\n${line}`;
}

function deleteDatabase(name) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.deleteDatabase(name);
    req.onsuccess = () => resolve();
    req.onerror = () => reject(req.error);
    req.onblocked = () => log(`deleting ${name} is blocked by an open connection`);
  });
}

/** What database `name` holds: per object store, its records and their bytes (untimed). */
async function footprint(name) {
  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open(name);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  const size = (v) => {
    if (v instanceof ArrayBuffer) return v.byteLength;
    if (ArrayBuffer.isView(v)) return v.byteLength;
    if (v instanceof Blob) return v.size;
    return JSON.stringify(v ?? null).length;
  };
  const out = {};
  for (const store of db.objectStoreNames) {
    const values = await new Promise((resolve, reject) => {
      const req = db.transaction(store).objectStore(store).getAll();
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    out[store] = { records: values.length, bytes: values.reduce((sum, v) => sum + size(v), 0) };
  }
  db.close();
  return out;
}

/** Resolves when `replica.status().appliedLsn >= lsn`; rejects after TIMEOUT_MS. */
function appliedUpTo(replica, lsn) {
  return new Promise((resolve, reject) => {
    let timer = null;
    const deadline = setTimeout(() => {
      clearInterval(timer);
      reject(new Error(`cstore: not caught up in ${TIMEOUT_MS} ms: ${JSON.stringify(replica.status())}`));
    }, TIMEOUT_MS);
    const check = () => {
      if (replica.status().appliedLsn >= lsn) {
        clearTimeout(deadline);
        clearInterval(timer);
        resolve();
      }
    };
    replica.onStatus(check);
    // onStatus fires after each batch of status changes; the poll is only a safety net.
    timer = setInterval(check, 5);
    check();
  });
}

window.bench = {
  /** Loads the wasm module. */
  async ready() {
    await init();
    return true;
  },

  /** Fetches every document of `collection` through the server's find API (keyset pages). */
  async fetchDocs(collection) {
    const out = [];
    let after = null;
    for (;;) {
      const filter = after === null ? {} : { _id: { $gt: after } };
      const res = await fetch(`/v1/c/${collection}/find`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ filter, sort: { _id: 1 }, limit: 10_000 }),
      });
      const body = await res.json();
      if (!res.ok) throw new Error(`find ${collection}: ${JSON.stringify(body)}`);
      out.push(...body.docs);
      if (body.docs.length < 10_000) break;
      after = body.docs[body.docs.length - 1]._id;
    }
    docs = out;
    const bytes = JSON.stringify(out).length;
    return { count: out.length, bytes, sample: out[0] };
  },

  /** cstore: a fresh replica bootstraps until it has applied `lastLsn`. */
  async cstore({ name, lastLsn, collection }) {
    await deleteDatabase(name);
    const url = `ws://${location.host}/v1/replicate`;
    const started = performance.now();
    const replica = await Replica.open({ url, name });
    const openedMs = performance.now() - started;
    await appliedUpTo(replica, lastLsn);
    const ms = performance.now() - started;
    const status = replica.status();
    const count = replica.count(collection, {});
    await replica.close();
    const stored = await footprint(name);
    await deleteDatabase(name);
    return { ms, openedMs, count, status, stored };
  },

  /** Dexie: `bulkPut` of the fetched documents into a fresh table keyed by `_id`. */
  async dexie({ name, chunk, durability, collection }) {
    const { default: Dexie } = await import("dexie");
    await Dexie.delete(name);
    const db = new Dexie(name, durability ? { chromeTransactionDurability: durability } : {});
    db.version(1).stores({ [collection]: "_id" });
    await db.open();
    const table = db.table(collection);
    const started = performance.now();
    if (!chunk) {
      await table.bulkPut(docs);
    } else {
      for (let i = 0; i < docs.length; i += chunk) await table.bulkPut(docs.slice(i, i + chunk));
    }
    const ms = performance.now() - started;
    const count = await table.count();
    db.close();
    await Dexie.delete(name);
    return { ms, count };
  },

  /** Raw IndexedDB (the floor under Dexie): `put` of every document in one transaction. */
  async rawIdb({ name, collection }) {
    await deleteDatabase(name);
    const db = await new Promise((resolve, reject) => {
      const req = indexedDB.open(name, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(collection, { keyPath: "_id" });
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    const started = performance.now();
    await new Promise((resolve, reject) => {
      const tx = db.transaction(collection, "readwrite");
      const store = tx.objectStore(collection);
      for (const doc of docs) store.put(doc);
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
    const ms = performance.now() - started;
    const count = await new Promise((resolve, reject) => {
      const req = db.transaction(collection).objectStore(collection).count();
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    db.close();
    await deleteDatabase(name);
    return { ms, count };
  },

  /**
   * PouchDB (idb adapter): `bulkDocs` of the first `count` documents in chunks of `chunk` into
   * a fresh database; then, when
   * `replicate`, `PouchDB.replicate` of that database into another fresh one (pouchdb-browser
   * has no in-memory adapter, so the source is the IndexedDB database just written).
   */
  async pouchdb({ name, docs: count, chunk, replicate, batchSize }) {
    const { default: PouchDB } = await import("pouchdb-browser");
    const copies = docs.slice(0, count).map((d) => ({ ...d }));
    const source = new PouchDB(`${name}-src`);
    const started = performance.now();
    for (let i = 0; i < copies.length; i += chunk) {
      const results = await source.bulkDocs(copies.slice(i, i + chunk));
      const failed = results.find((r) => r.error);
      if (failed) throw new Error(`pouchdb bulkDocs: ${JSON.stringify(failed)}`);
    }
    const bulkMs = performance.now() - started;
    const bulkCount = (await source.info()).doc_count;
    const out = { bulkMs, bulkCount, replicateMs: null, replicateCount: null };
    if (replicate) {
      const target = new PouchDB(`${name}-dst`);
      const t0 = performance.now();
      const result = await PouchDB.replicate(source, target, { batch_size: batchSize });
      out.replicateMs = performance.now() - t0;
      out.replicateCount = (await target.info()).doc_count;
      out.replicateOk = result.ok;
      await target.destroy();
    }
    await source.destroy();
    return out;
  },

  /** The browser's user agent (for the report). */
  userAgent() {
    return navigator.userAgent;
  },
};

log("ready");
