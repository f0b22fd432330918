// Run by node-entry.test.mjs in a child process (one per WebSocket flavour, so each starts
// without a global the other installed): opens the node entry's replica against the real
// server at argv[2], writes, reads back, waits for a write made through the server's HTTP API,
// and prints one JSON line with what it saw. Not a test file itself (no `.test.` in its name).

import "fake-indexeddb/auto";

const url = process.argv[2];
const hadGlobalWebSocket = typeof globalThis.WebSocket === "function";
const globalBefore = globalThis.WebSocket;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, predicate, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const { openReplica } = await import("cstore");
const { WebSocket: WsPackage } = await import("ws");
const db = await openReplica(url, { name: `node-child-${process.pid}` });
await until("the replica to connect", () => db.status.connected);
const notes = db.collection("notes");

// A local write: applied at once, then confirmed by the server.
const local = await notes.insert({ text: "from node", n: 1 });
const readBack = await notes.get(local.id);
await db.flush();
const onServer = await (await fetch(`${url}/v1/c/notes/${local.id}`)).json();

// A remote write: through the server's HTTP API, seen by a live query and by `get`.
const remoteText = `from http ${process.pid}`;
const seen = [];
const stop = notes.watch({ filter: { text: remoteText } }, (docs) => seen.push(docs.map((d) => d._id)));
const started = Date.now();
const res = await fetch(`${url}/v1/c/notes`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ text: remoteText }),
});
const remote = await res.json();
if (res.status !== 201) throw new Error(`POST answered ${res.status}: ${JSON.stringify(remote)}`);
await until("the remote write", () => seen.some((ids) => ids.includes(remote.id)));
const remoteMs = Date.now() - started;
const remoteDoc = await notes.get(remote.id);
stop();
const status = db.status;
await db.close();

console.log(
  JSON.stringify({
    node: process.version,
    hadGlobalWebSocket,
    usesWsPackage: globalThis.WebSocket === WsPackage || globalThis.WebSocket.prototype instanceof WsPackage,
    keptGlobal: hadGlobalWebSocket && globalThis.WebSocket === globalBefore,
    local,
    readBack,
    onServer,
    remote,
    remoteText,
    remoteDoc,
    remoteMs,
    watchCalls: seen,
    status,
  }),
);
