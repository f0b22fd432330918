// Runs a real `cstore serve` for the browser suite (wasm/tests/replica_server.rs) and lets the
// tests stop, start and restart it, which a page cannot do by itself.
//
//   node wasm/tests/server-control.mjs --bin target/debug/cstore --data-dir DIR --info FILE
//
// Picks a free loopback port for the server (kept across restarts, so replicas reconnect to
// the same URL) and another for itself, writes {"control", "http", "ws"} to FILE once the
// server answers /v1/health, and then serves:
//   POST /control/stop | /control/start | /control/restart   (the data dir is kept)
//   POST /control/write-channel/refuse | /control/write-channel/pass: answer WebSocket
//     upgrades of /v1/write (and plain GETs of it) with 404, as a server without the route
//     would, or pass them on (the default)
//   POST /control/write-channel/cut-after?messages=K: the next channel is cut (both sockets
//     destroyed, no close frame) right after its K-th message went to the server
//   POST /control/write-channel/no-lists | /control/write-channel/lists: channels opened from
//     then on answer a message holding a list of transactions ({"txns": […]}) themselves with
//     400 invalid_txn, as a server from before lists did (it never reaches the server), or
//     pass everything on (the default)
//   GET /control/write-channel/stats: {upgrades, refused, messages, cuts, listsRefused} so far
//   anything else: proxied to the server with CORS headers added, because the test page
//   lives on the test runner's origin and the server sends no CORS headers.
// The replication WebSocket goes straight to the server (WebSockets are not subject to CORS);
// the write channel, opened at the HTTP base (this proxy), is piped through it.
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

// The write channel's proxying: refusals, a cut after K messages, counts.
const channel = { refuse: false, cutAfter: null, noLists: false, upgrades: 0, refused: 0, messages: 0, cuts: 0, listsRefused: 0 };

function json(res, status, body) {
  res.writeHead(status, { ...cors, "content-type": "application/json" }).end(JSON.stringify(body));
}

/** Complete WebSocket frames at the start of `buffer` (client frames are masked): their ends and opcodes, and where their payloads start. */
function frames(buffer) {
  const found = [];
  let at = 0;
  while (buffer.length - at >= 2) {
    const opcode = buffer[at] & 0x0f;
    let length = buffer[at + 1] & 0x7f;
    let header = 2;
    if (length === 126) {
      if (buffer.length - at < 4) break;
      length = buffer.readUInt16BE(at + 2);
      header = 4;
    } else if (length === 127) {
      if (buffer.length - at < 10) break;
      length = Number(buffer.readBigUInt64BE(at + 2));
      header = 10;
    }
    const masked = (buffer[at + 1] & 0x80) !== 0;
    if (masked) header += 4;
    if (buffer.length - at < header + length) break;
    found.push({ start: at, payload: at + header, masked, end: at + header + length, opcode });
    at += header + length;
  }
  return found;
}

/** The text of a client's (masked) text frame. */
function frameText(buffer, frame) {
  const payload = Buffer.from(buffer.subarray(frame.payload, frame.end));
  if (frame.masked) {
    const mask = buffer.subarray(frame.payload - 4, frame.payload);
    for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
  }
  return payload.toString("utf8");
}

/** A server's (unmasked) text frame holding `text`. */
function textFrame(text) {
  const payload = Buffer.from(text, "utf8");
  let header;
  if (payload.length < 126) header = Buffer.from([0x81, payload.length]);
  else if (payload.length < 65536) {
    header = Buffer.from([0x81, 126, 0, 0]);
    header.writeUInt16BE(payload.length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x81;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  return Buffer.concat([header, payload]);
}

/** The answer of a server from before lists to a message holding a list, or null for any other message. */
function refuseList(text) {
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    return null;
  }
  if (!body || typeof body !== "object" || !("txns" in body)) return null;
  const req = Number.isInteger(body.req) ? body.req : null;
  return JSON.stringify({ req, status: 400, error: { code: "invalid_txn", message: "a transaction needs `ops` (refused by server-control: a server without lists)" } });
}

/** Pipes an upgrade of /v1/write to the server, counting (and maybe cutting after) client messages. */
function proxyUpgrade(req, socket, head) {
  if (channel.refuse) {
    channel.refused += 1;
    const body = JSON.stringify({ error: { code: "not_found", message: "no route /v1/write (refused by server-control)" } });
    socket.end(`HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
    return;
  }
  channel.upgrades += 1;
  const cutAfter = channel.cutAfter;
  channel.cutAfter = null;
  const noLists = channel.noLists;
  const upstream = net.connect(serverPort, "127.0.0.1", () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    upstream.write(lines.join("\r\n") + "\r\n\r\n");
    let pending = Buffer.alloc(0);
    let sent = 0;
    const forward = (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      let done = 0;
      for (const frame of frames(pending)) {
        if (frame.opcode === 1) {
          sent += 1;
          channel.messages += 1;
          const refusal = noLists ? refuseList(frameText(pending, frame)) : null;
          if (refusal !== null) {
            // Not forwarded: answered here, in order (a channel sends only lists until one
            // is refused, so no answer of the server's is due before this one).
            channel.listsRefused += 1;
            upstream.write(pending.subarray(done, frame.start));
            socket.write(textFrame(refusal));
            done = frame.end;
            continue;
          }
        }
        if (cutAfter !== null && sent >= cutAfter) {
          upstream.end(pending.subarray(done, frame.end));
          socket.destroy();
          channel.cuts += 1;
          pending = Buffer.alloc(0);
          return;
        }
        upstream.write(pending.subarray(done, frame.end));
        done = frame.end;
      }
      pending = pending.subarray(done);
    };
    if (head.length) forward(head);
    socket.on("data", forward);
    upstream.pipe(socket);
  });
  upstream.on("error", () => socket.destroy());
  socket.on("error", () => upstream.destroy());
  socket.on("close", () => upstream.end());
}

const control = http.createServer(async (req, res) => {
  if (req.method === "OPTIONS") {
    res.writeHead(204, cors).end();
    return;
  }
  const path = req.url.split("?")[0];
  if (path.startsWith("/control/write-channel/")) {
    const what = path.slice("/control/write-channel/".length);
    if (what === "refuse" || what === "pass") channel.refuse = what === "refuse";
    else if (what === "no-lists" || what === "lists") channel.noLists = what === "no-lists";
    else if (what === "cut-after") channel.cutAfter = Number(new URL(req.url, "http://x").searchParams.get("messages"));
    else if (what !== "stats") return json(res, 404, { error: { code: "not_found", message: what } });
    const { refuse, cutAfter, noLists, ...counts } = channel;
    return json(res, 200, { ok: true, ...counts });
  }
  if (channel.refuse && path === "/v1/write") {
    return json(res, 404, { error: { code: "not_found", message: "no route /v1/write (refused by server-control)" } });
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

control.on("upgrade", proxyUpgrade);

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
