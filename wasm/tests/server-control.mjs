// Runs a real `cstore serve` for the browser suite (wasm/tests/replica_server.rs) and lets the
// tests stop, start and restart it, which a page cannot do by itself.
//
//   node wasm/tests/server-control.mjs --bin target/debug/cstore --data-dir DIR --info FILE
//
// Picks a free loopback port for the server (kept across restarts, so replicas reconnect to
// the same URL) and another for itself, writes {"control", "http", "ws"} to FILE once the
// server answers /v1/health, and then serves:
//   POST /control/stop | /control/start | /control/restart   (the data dir is kept)
//   anything else: proxied to the server with CORS headers added, because the test page
//   lives on the test runner's origin and the server sends no CORS headers.
// The WebSocket goes straight to the server (WebSockets are not subject to CORS).
// SIGTERM/SIGINT stop the server (by its PID) and then this process.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
for (const key of ["bin", "data-dir", "info"]) {
  if (!args[key]) {
    console.error(`server-control: --${key} is required`);
    process.exit(2);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

const serverPort = await freePort();
const serverUrl = `http://127.0.0.1:${serverPort}`;
let child = null;

async function healthy() {
  try {
    const response = await fetch(`${serverUrl}/v1/health`);
    return response.ok;
  } catch {
    return false;
  }
}

async function start() {
  if (child) return;
  child = spawn(args.bin, ["serve", "--data-dir", args["data-dir"], "--listen", `127.0.0.1:${serverPort}`], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  const started = child;
  started.once("exit", () => {
    if (child === started) child = null;
  });
  for (let i = 0; i < 300; i++) {
    if (await healthy()) return;
    if (!child) throw new Error("cstore serve exited while starting");
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("cstore serve did not become healthy in 15 s");
}

async function stop() {
  const running = child;
  if (!running) return;
  const exited = new Promise((r) => running.once("exit", r));
  running.kill("SIGTERM");
  const timer = setTimeout(() => running.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
  child = null;
}

const cors = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
  "access-control-allow-headers": "content-type, authorization, if-match, if-none-match",
  "access-control-expose-headers": "etag",
};

const control = http.createServer(async (req, res) => {
  if (req.method === "OPTIONS") {
    res.writeHead(204, cors).end();
    return;
  }
  const action = req.url.match(/^\/control\/(stop|start|restart)$/)?.[1];
  if (action) {
    try {
      if (action !== "start") await stop();
      if (action !== "stop") await start();
      res.writeHead(200, { ...cors, "content-type": "application/json" }).end('{"ok":true}');
    } catch (error) {
      res.writeHead(500, cors).end(String(error));
    }
    return;
  }
  const upstream = http.request(
    `${serverUrl}${req.url}`,
    { method: req.method, headers: { ...req.headers, host: `127.0.0.1:${serverPort}` } },
    (answer) => {
      res.writeHead(answer.statusCode, { ...answer.headers, ...cors });
      answer.pipe(res);
    },
  );
  upstream.on("error", (error) => {
    if (!res.headersSent) res.writeHead(502, cors);
    res.end(JSON.stringify({ error: { code: "server_down", message: String(error) } }));
  });
  req.pipe(upstream);
});

async function shutdown() {
  await stop();
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

await start();
control.listen(0, "127.0.0.1", () => {
  const controlUrl = `http://127.0.0.1:${control.address().port}`;
  const info = { control: controlUrl, http: controlUrl, ws: `ws://127.0.0.1:${serverPort}/v1/replicate` };
  writeFileSync(args.info, JSON.stringify(info));
  console.error(`server-control: cstore serve at ${serverUrl} (pid ${child.pid}), control at ${controlUrl}`);
});
