// The TypeScript layer in node, over a fake replica: the typed face, error codes, and the
// multi-tab hub (owner election, forwarding, live queries across tabs, takeover).

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { CstoreError, Db, newId } from "../../dist/node.js";
import { Hub } from "../../dist/hub.js";
import { openerOf, wasmOptions } from "../../dist/open.js";
import { eventually, FakeDisk, FakeLocks, FakeReplica, FakeTab } from "./fakes.mjs";

const OPTIONS = { url: "ws://127.0.0.1:1/v1/replicate", name: "unit" };
const open = [];

afterEach(async () => {
  while (open.length) await open.pop().close();
});

/** An opener that makes fake replicas over `disk` and remembers them. */
function opener(disk) {
  const made = [];
  const fn = async (options) => {
    const replica = new FakeReplica(disk, options);
    made.push(replica);
    return replica;
  };
  fn.made = made;
  return fn;
}

async function start(openFn, env, multiTab = true) {
  const db = new Db(await Hub.start(openFn, OPTIONS, env, multiTab));
  open.push(db);
  return db;
}

test("single tab: typed calls, generated ids, error codes", async () => {
  const disk = new FakeDisk();
  const db = await start(opener(disk), {});
  assert.equal(db.status.tab, "single");
  const notes = db.collection("notes");

  const written = await notes.insert({ text: "one" });
  assert.equal(written.pending, true);
  assert.match(written.id, /^[0-9a-f]{26}$/);
  assert.deepEqual(await notes.get(written.id), { _id: written.id, text: "one" });
  await notes.put({ _id: "b", text: "two" });
  await notes.update("b", { text: "zwei", extra: 1 });
  assert.deepEqual(await notes.find({ filter: { text: "zwei" } }), [{ _id: "b", text: "zwei", extra: 1 }]);
  assert.equal(await notes.count(), 2);
  await notes.remove(written.id);
  assert.equal(await notes.get(written.id), undefined);

  await assert.rejects(notes.insert({ _id: "b" }), (e) => e instanceof CstoreError && e.code === "already_exists");
  await assert.rejects(notes.remove("nope"), (e) => e instanceof CstoreError && e.code === "not_found");
  assert.throws(() => db.collection(""), (e) => e.code === "invalid_argument");

  await db.close();
  await assert.rejects(notes.get("b"), (e) => e.code === "closed");
});

test("ids sort by creation time", async () => {
  const first = newId();
  await new Promise((r) => setTimeout(r, 3));
  const second = newId();
  assert.ok(first < second, `${first} < ${second}`);
  assert.equal(new Set(Array.from({ length: 1000 }, newId)).size, 1000);
});

test("a watch gets the result at once and after each change, until stopped", async () => {
  const db = await start(opener(new FakeDisk()), {});
  const notes = db.collection("notes");
  const seen = [];
  const stop = notes.watch({ filter: { done: false } }, (docs) => seen.push(docs.map((d) => d._id)));
  await eventually(() => seen.length === 1);
  assert.deepEqual(seen[0], []);
  await notes.insert({ _id: "a", done: false });
  await eventually(() => seen.at(-1)?.length === 1);
  stop();
  const count = seen.length;
  await notes.insert({ _id: "b", done: false });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(seen.length, count, "no callback after stop");

  const errors = [];
  notes.watch({ bad: true }, () => {}, { onError: (e) => errors.push(e.code) });
  assert.deepEqual(errors, ["invalid_query"]);
});

test("two tabs: one owner opens the replica, the follower's calls and watches go through it", async () => {
  const disk = new FakeDisk();
  const locks = new FakeLocks();
  const openFn = opener(disk);
  const a = await start(openFn, new FakeTab("a", locks).env);
  const b = await start(openFn, new FakeTab("b", locks).env);
  assert.equal(a.status.tab, "owner");
  assert.equal(b.status.tab, "follower");
  assert.equal(openFn.made.length, 1, "only the owner opens a replica");

  const seenInA = [];
  a.collection("notes").watch({}, (docs) => seenInA.push(docs.length));
  const seenInB = [];
  b.collection("notes").watch({}, (docs) => seenInB.push(docs.length));

  const { id } = await b.collection("notes").insert({ text: "from b" });
  assert.deepEqual(await a.collection("notes").get(id), { _id: id, text: "from b" });
  await a.collection("notes").insert({ text: "from a" });
  assert.equal((await b.collection("notes").find()).length, 2);
  await eventually(() => seenInA.at(-1) === 2 && seenInB.at(-1) === 2);

  // Errors keep their code across the channel.
  await assert.rejects(b.collection("notes").update("nope", {}), (e) => e instanceof CstoreError && e.code === "not_found");
  const errors = [];
  b.collection("notes").watch({ bad: 1 }, () => {}, { onError: (e) => errors.push(e.code) });
  await eventually(() => errors[0] === "invalid_query");

  // Status and rejections reach the follower.
  await eventually(() => b.status.appliedLsn === a.status.appliedLsn && b.status.appliedLsn === 2);
  const rejected = [];
  b.on("rejected", (r) => rejected.push(r.code));
  openFn.made[0].reject({ seq: 1, code: "unique_violation", message: "clash", ops: [] });
  await eventually(() => rejected[0] === "unique_violation");
});

test("the owner tab goes away: a follower takes over, calls and watches carry on", async () => {
  const disk = new FakeDisk();
  const locks = new FakeLocks();
  const openFn = opener(disk);
  const tabA = new FakeTab("a", locks);
  const a = await start(openFn, tabA.env);
  const b = await start(openFn, new FakeTab("b", locks).env);
  const c = await start(openFn, new FakeTab("c", locks).env);
  await a.collection("notes").insert({ _id: "before" });

  const seenInC = [];
  c.collection("notes").watch({}, (docs) => seenInC.push(docs.map((d) => d._id).join(",")));
  await eventually(() => seenInC.at(-1) === "before");
  const tabs = [];
  b.on("tab", (t) => tabs.push(t));

  // The owner dies mid-insert: it stored the document but never answered.
  openFn.made[0].hangInserts = true;
  const pending = c.collection("notes").insert({ _id: "during" });
  await eventually(() => disk.collection("notes").has("during"));
  tabA.kill();
  await openFn.made[0].close();
  open.splice(open.indexOf(a), 1);

  // b (first in the lock's queue) takes over; c's unanswered insert is sent again, finds its
  // own document, and resolves; c's watch is registered again with b.
  assert.deepEqual(await pending, { id: "during", pending: true });
  await eventually(() => tabs[0] === "owner");
  assert.equal(b.status.tab, "owner");
  assert.equal(openFn.made.length, 2);
  await c.collection("notes").insert({ _id: "after" });
  await eventually(() => seenInC.at(-1) === "after,before,during");
  assert.equal(await c.collection("notes").count(), 3);

  // A real conflict on a resent call is still an error: only the tab's own insert counts.
  await assert.rejects(c.collection("notes").insert({ _id: "after" }), (e) => e.code === "already_exists");
});

test("closing the owner hands the replica to the next tab", async () => {
  const disk = new FakeDisk();
  const locks = new FakeLocks();
  const openFn = opener(disk);
  const a = await start(openFn, new FakeTab("a", locks).env);
  const b = await start(openFn, new FakeTab("b", locks).env);
  await a.close();
  open.splice(open.indexOf(a), 1);
  await eventually(() => b.status.tab === "owner");
  assert.equal(openFn.made[0].closed, true);
  await b.collection("x").insert({ _id: "1" });
  assert.equal(await b.collection("x").count(), 1);
});

test("a failing open is reported with its code and frees the lock", async () => {
  const locks = new FakeLocks();
  const failing = async () => {
    throw Object.assign(new Error("no such server"), { code: "invalid_options" });
  };
  await assert.rejects(Hub.start(failing, OPTIONS, new FakeTab("a", locks).env, true), (e) => e.code === "invalid_options");
  const b = await start(opener(new FakeDisk()), new FakeTab("b", locks).env);
  assert.equal(b.status.tab, "owner");
});

test("URLs: http base or WebSocket URL; a build without Replica says so", async () => {
  assert.deepEqual(wasmOptions("http://127.0.0.1:7070", { token: "t" }), {
    url: "ws://127.0.0.1:7070/v1/replicate",
    httpUrl: "http://127.0.0.1:7070",
    token: "t",
  });
  assert.deepEqual(wasmOptions("https://db.example/app"), {
    url: "wss://db.example/v1/replicate",
    httpUrl: "https://db.example",
  });
  assert.deepEqual(wasmOptions("ws://h:1/v1/replicate", { name: "n" }), { url: "ws://h:1/v1/replicate", name: "n" });
  assert.throws(() => wasmOptions("ftp://x"), (e) => e.code === "invalid_argument");
  await assert.rejects(openerOf({ version: () => "0" })(OPTIONS), (e) => e.code === "unsupported");
});

test("a follower whose takeover fails reports it and tries again", async () => {
  const disk = new FakeDisk();
  const locks = new FakeLocks();
  const good = opener(disk);
  let calls = 0;
  const flaky = async (options) => {
    calls += 1;
    if (calls === 2) throw Object.assign(new Error("IndexedDB is blocked"), { code: "idb_blocked" });
    return good(options);
  };
  const tabA = new FakeTab("a", locks);
  const a = await start(flaky, tabA.env);
  const b = await start(flaky, new FakeTab("b", locks).env);
  const errors = [];
  b.on("status", (s) => s.lastError && errors.push(s.lastError.code));
  tabA.kill();
  await good.made[0].close();
  open.splice(open.indexOf(a), 1);
  await eventually(() => errors.includes("idb_blocked"));
  assert.equal(b.status.tab, "follower");
  await eventually(() => b.status.tab === "owner", 5_000);
  assert.equal(calls, 3);
  await b.collection("x").insert({ _id: "1" });
});

test("a follower back from the back/forward cache gets its live queries again", async () => {
  const disk = new FakeDisk();
  const locks = new FakeLocks();
  const openFn = opener(disk);
  const a = await start(openFn, new FakeTab("a", locks).env);
  const tabB = new FakeTab("b", locks);
  const b = await start(openFn, tabB.env);
  const seen = [];
  b.collection("notes").watch({}, (docs) => seen.push(docs.length));
  await eventually(() => seen.length === 1);
  tabB.hideAndRestore();
  await new Promise((r) => setTimeout(r, 20));
  await a.collection("notes").insert({ _id: "x" });
  await eventually(() => seen.at(-1) === 1);
});
