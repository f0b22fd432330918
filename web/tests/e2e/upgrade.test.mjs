// A browser whose module is newer than its server, as when an app ships a new `cstore` package
// before the server is upgraded. The server plays a build from before replication protocol
// version 3 (`--replication-protocol-max 2`: it refuses the module's hello exactly as such a
// build does). The replica falls back to version 2 and syncs both ways; once the server is
// upgraded (restarted without the flag) it speaks version 3 again, still in sync.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Server, addNote, cannotRun, launchBrowser, noteTexts, openDemo, waitForNote, waitForStatus } from "./harness.mjs";

const skip = cannotRun();
let server;
let browser;

before(async () => {
  if (skip) return;
  server = await Server.start({ args: ["--replication-protocol-max", "2"] });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

/** Inserts a note through the server's HTTP API. */
function insertOnServer(id, text) {
  const now = Date.now();
  return server.insert("notes", { _id: id, text, done: false, createdAt: now, updatedAt: now, author: "server" });
}

/** The protocol version of each replica connected to the server, from its status. */
async function replicaVersions() {
  return (await server.status()).replicas.map((r) => r.protocol_version);
}

test("a browser newer than its server falls back, syncs, and speaks the newest once the server is upgraded", { skip }, async () => {
  const page = await openDemo(await browser.newContext(), server);
  const fellBack = await waitForStatus(page, (s) => s.connected && s.lastError?.code === "protocol_fallback");
  assert.match(fellBack.lastError.message, /refused protocol version 3/);
  assert.deepEqual(await replicaVersions(), [2]);

  // Both ways at version 2: a note written in the page reaches the server, one written on the
  // server reaches the page.
  await addNote(page, "written in the browser");
  await insertOnServer("from-server", "written on the server");
  await waitForNote(page, "written on the server", 10_000);
  await waitForStatus(page, (s) => s.pendingWrites === 0);
  const texts = (await server.all("notes")).map((d) => d.text).sort();
  assert.deepEqual(texts, ["written in the browser", "written on the server"]);

  // The server is upgraded: the replica reconnects, and speaks the newest version again.
  await server.stop();
  server.args = [];
  await server.spawn();
  await waitForStatus(page, (s) => s.connected, 30_000);
  await insertOnServer("after-upgrade", "written on the upgraded server");
  await waitForNote(page, "written on the upgraded server", 10_000);
  assert.deepEqual(await replicaVersions(), [3]);
  await addNote(page, "written in the browser after the upgrade");
  await waitForStatus(page, (s) => s.connected && s.pendingWrites === 0);
  const onServer = (await server.all("notes")).map((d) => d.text).sort();
  assert.deepEqual(onServer, (await noteTexts(page)).sort());
  assert.equal(onServer.length, 4);
});
