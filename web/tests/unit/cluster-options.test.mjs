// The TypeScript layer's part of following a cluster, in node over a fake replica: the URL
// list and options reach the wasm replica as its contract wants them (one URL, several, bad
// lists refused with a code), and a linearizable read runs the replica's read barrier first,
// in the owner tab, also when a follower tab asks; a failing barrier fails the read.

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { Db } from "../../dist/node.js";
import { Hub } from "../../dist/hub.js";
import { wasmOptions } from "../../dist/open.js";
import { FakeDisk, FakeLocks, FakeReplica, FakeTab } from "./fakes.mjs";

const OPTIONS = { url: "ws://127.0.0.1:1/v1/replicate", name: "cluster-unit" };
const open = [];

afterEach(async () => {
  while (open.length) await open.pop().close();
});

/** A fake replica with a read barrier that counts its calls and can fail like the wasm one. */
class BarrierReplica extends FakeReplica {
  constructor(disk, options) {
    super(disk, options);
    this.barriers = 0;
    this.barrierError = null;
  }

  async readBarrier() {
    this.barriers += 1;
    if (this.barrierError) throw Object.assign(new Error(this.barrierError), { code: this.barrierError });
    return this.disk.lsn;
  }
}

function opener(disk) {
  const made = [];
  const fn = async (options) => {
    const replica = new BarrierReplica(disk, options);
    made.push(replica);
    return replica;
  };
  fn.made = made;
  return fn;
}

test("one URL or a cluster's members become the replica's options", () => {
  assert.deepEqual(wasmOptions(["http://a:1", "ws://b:2/v1/replicate", "https://c:3"], { token: "t" }), {
    urls: ["ws://a:1/v1/replicate", "ws://b:2/v1/replicate", "wss://c:3/v1/replicate"],
    token: "t",
  });
  assert.deepEqual(wasmOptions("http://a:1", { collections: ["notes"] }), {
    url: "ws://a:1/v1/replicate",
    httpUrl: "http://a:1",
    collections: ["notes"],
  });
  assert.deepEqual(wasmOptions("http://a:1", { writeChannel: "http" }).writeChannel, "http");
  assert.deepEqual(wasmOptions(["http://a:1"], { writeChannel: "websocket" }).writeChannel, "websocket");
  assert.equal("writeChannel" in wasmOptions("http://a:1"), false, "the replica's default");
  assert.throws(() => wasmOptions("http://a:1", { writeChannel: "tcp" }), (e) => e.code === "invalid_options");
  assert.throws(() => wasmOptions([]), (e) => e.code === "invalid_options");
  assert.throws(() => wasmOptions(["http://a:1"], { httpUrl: "http://a:1" }), (e) => e.code === "invalid_options");
  assert.throws(() => wasmOptions(["http://a:1", "ftp://b"]), (e) => e.code === "invalid_argument");
  assert.throws(() => wasmOptions("http://a:1", { collections: [] }), (e) => e.code === "invalid_options");
  assert.throws(() => wasmOptions(""), (e) => e.code === "invalid_argument");
});

test("a linearizable read waits for the barrier; a local one does not; a failed barrier fails the read", async () => {
  const disk = new FakeDisk();
  const openFn = opener(disk);
  const db = new Db(await Hub.start(openFn, OPTIONS, {}, false));
  open.push(db);
  const notes = db.collection("notes");
  await notes.put({ _id: "a", n: 1 });
  const replica = openFn.made[0];

  assert.deepEqual(await notes.get("a"), { _id: "a", n: 1 });
  assert.equal(await notes.count({}, { consistency: "local" }), 1);
  assert.equal(replica.barriers, 0);
  assert.deepEqual(await notes.get("a", { consistency: "linearizable" }), { _id: "a", n: 1 });
  assert.equal((await notes.find({}, { consistency: "linearizable" })).length, 1);
  assert.equal(await notes.count({}, { consistency: "linearizable" }), 1);
  assert.equal(replica.barriers, 3);

  replica.barrierError = "offline";
  await assert.rejects(notes.get("a", { consistency: "linearizable" }), (e) => e.code === "offline");
  await assert.rejects(notes.find({}, { consistency: "strong" }), (e) => e.code === "invalid_argument");
});

test("a follower tab's linearizable read runs the barrier in the owner tab", async () => {
  const disk = new FakeDisk();
  const locks = new FakeLocks();
  const openFn = opener(disk);
  const owner = new Db(await Hub.start(openFn, OPTIONS, new FakeTab("a", locks).env, true));
  open.push(owner);
  const follower = new Db(await Hub.start(openFn, OPTIONS, new FakeTab("b", locks).env, true));
  open.push(follower);
  assert.equal(follower.status.tab, "follower");
  await owner.collection("notes").put({ _id: "x" });

  assert.deepEqual(await follower.collection("notes").get("x", { consistency: "linearizable" }), { _id: "x" });
  assert.equal(openFn.made.length, 1);
  assert.equal(openFn.made[0].barriers, 1);
  openFn.made[0].barrierError = "unavailable";
  await assert.rejects(
    follower.collection("notes").find({}, { consistency: "linearizable" }),
    (e) => e.code === "unavailable",
  );
  // Status fields of the cluster have defaults before the replica reports them.
  assert.equal(follower.status.memberSwitches, 0);
  assert.deepEqual(follower.status.refusedMembers, []);
});
