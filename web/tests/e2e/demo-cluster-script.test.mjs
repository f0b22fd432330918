// scripts/cluster.sh, the demo's way to run and break a local cluster, against real members:
// `start 3` elects a leader and writes a pid file per member; `kill-leader` kills exactly the
// member that leads (its PID from the pid file) and the other two elect a new one in a higher
// term; `restart N` brings the killed member back as a follower; `stop` ends every member.
// No browser: this checks the commands the demo's panel and the README tell people to run.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";

import { cstoreBin, sleep } from "./harness.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const SCRIPT = join(ROOT, "scripts/cluster.sh");

/** Whether 127.0.0.1:`port` can be bound right now. */
function portFree(port) {
  return new Promise((done) => {
    const probe = createServer();
    probe.once("error", () => done(false));
    probe.listen(port, "127.0.0.1", () => probe.close(() => done(true)));
  });
}

/** A base port B with B+1..B+3 free (cluster.sh puts member i on B+i). */
async function freeBase() {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    if ((await portFree(base + 1)) && (await portFree(base + 2)) && (await portFree(base + 3))) return base;
  }
  throw new Error("no three consecutive free ports");
}

let runDir;
let env;

function cluster(...args) {
  return new Promise((done, fail) => {
    execFile(SCRIPT, args, { env, timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) fail(new Error(`cluster.sh ${args.join(" ")} failed (${error.code}):\n${stdout}${stderr}`));
      else done(stdout + stderr);
    });
  });
}

const pidOf = (n) => Number(readFileSync(join(runDir, `node-${n}.pid`), "utf8"));
const running = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function statusOf(base, n) {
  return (await fetch(`http://127.0.0.1:${base + n}/v1/status`, { signal: AbortSignal.timeout(1_000) })).json();
}

/** The member that leads (as every member that answers says), waiting up to `ms`. */
async function leader(base, ids, ms = 10_000) {
  const until = Date.now() + ms;
  for (;;) {
    const states = await Promise.all(ids.map((n) => statusOf(base, n).catch(() => null)));
    const leaders = states.filter((s) => s?.role === "leader");
    if (leaders.length === 1 && states.every((s) => s === null || s.leader_id === leaders[0].node_id)) return leaders[0];
    if (Date.now() > until) throw new Error(`no single leader among ${ids}: ${JSON.stringify(states.map((s) => s?.role))}`);
    await sleep(50);
  }
}

after(async () => {
  if (runDir && existsSync(join(runDir, "cluster.env"))) await cluster("stop").catch(() => undefined);
  if (runDir) rmSync(runDir, { recursive: true, force: true });
});

test("cluster.sh: start, kill-leader, restart, stop", { timeout: 60_000 }, async () => {
  const base = await freeBase();
  runDir = mkdtempSync(join(tmpdir(), "cstore-cluster-sh-"));
  env = { ...process.env, CSTORE_BIN: cstoreBin(), CSTORE_CLUSTER_DIR: runDir, CSTORE_CLUSTER_BASE_PORT: String(base) };

  const started = await cluster("start", "3");
  assert.match(started, /member \d leads/);
  const pids = [1, 2, 3].map(pidOf);
  for (const pid of pids) assert.ok(running(pid), `PID ${pid} runs`);
  const first = await leader(base, [1, 2, 3]);
  const firstId = Number(first.node_id);

  const killed = await cluster("kill-leader");
  assert.match(killed, new RegExp(`kill -9 ${pidOf(firstId)} \\(member ${firstId}\\)`));
  const others = [1, 2, 3].filter((n) => n !== firstId);
  for (const until = Date.now() + 5_000; running(pids[firstId - 1]) && Date.now() < until; ) await sleep(20);
  assert.ok(!running(pids[firstId - 1]), "the leader's process is gone");
  for (const n of others) assert.ok(running(pids[n - 1]), `member ${n} still runs`);
  const second = await leader(base, others);
  assert.notEqual(Number(second.node_id), firstId);
  assert.ok(second.term > first.term, `term ${second.term} after ${first.term}`);
  assert.match(await cluster("status"), new RegExp(`^${firstId}\\s+\\S+\\s+-\\s+down`, "m"));

  await cluster("restart", String(firstId));
  const back = await leader(base, [1, 2, 3]);
  assert.equal(back.node_id, second.node_id, "the restarted member follows the new leader");
  for (const until = Date.now() + 5_000; (await statusOf(base, firstId).catch(() => null))?.leader_id !== second.node_id; ) {
    assert.ok(Date.now() < until, `member ${firstId} did not rejoin`);
    await sleep(50);
  }

  const stopPids = [1, 2, 3].map(pidOf);
  await cluster("stop");
  for (const until = Date.now() + 6_000; stopPids.some(running) && Date.now() < until; ) await sleep(50);
  assert.deepEqual(stopPids.filter(running), [], "stop ends every member");
});
