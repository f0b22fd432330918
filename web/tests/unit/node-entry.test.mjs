// The package's node entry over the real wasm build (pkg-node), with IndexedDB from
// fake-indexeddb and no server: the replica opens offline, applies writes locally, keeps them
// pending, and finds them again after a reopen. Skipped when the wasm build has no replica.

import "fake-indexeddb/auto";

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

const glue = readFileSync(new URL("../../pkg-node/cstore_wasm.js", import.meta.url), "utf8");
const skip = /class Replica\b/.test(glue) ? false : "this build of cstore-wasm has no Replica export";

test("node entry: an offline replica keeps local writes pending across a reopen", { skip }, async () => {
  // Resolved through the package's own exports map: the "node" condition.
  const { openReplica, CstoreError } = await import("cstore");
  // Port 9 (discard) on loopback: nothing listens, so every connection is refused.
  const url = "http://127.0.0.1:9";
  const db = await openReplica(url, { name: "node-entry-test" });
  assert.equal(db.status.tab, "single");
  const notes = db.collection("notes");
  const { id, pending } = await notes.insert({ text: "written offline" });
  assert.equal(pending, true);
  assert.deepEqual(await notes.get(id), { _id: id, text: "written offline" });
  await notes.update(id, { done: true });
  assert.equal(await notes.count({ done: true }), 1);
  await assert.rejects(notes.insert({ _id: id }), (e) => e instanceof CstoreError && e.code === "already_exists");
  assert.ok(db.status.pendingWrites >= 2, JSON.stringify(db.status));
  assert.equal(db.status.connected, false);
  await db.close();

  const again = await openReplica(url, { name: "node-entry-test" });
  assert.deepEqual(await again.collection("notes").get(id), { _id: id, text: "written offline", done: true });
  assert.ok(again.status.pendingWrites >= 2, JSON.stringify(again.status));
  await again.close();
});
