// A minimal runner on the reference Socket.IO client (socket.io-client 4.8,
// Node), as the JavaScript peer of the benchmark harness. It connects to the
// relay's /runner namespace over WebSocket with {apiKey, runnerId, runnerSecret}
// as auth, with the library's default reconnection, and:
//   - on every connect emits `register_runner`;
//   - answers each `ping` with `pong` {now};
//   - emits `runner_heartbeat` every --heartbeat-ms while connected;
//   - with --stream-seconds S > 0, after the first registration emits
//     `runner_session_event`s as fast as the connection takes them for S
//     seconds (in batches, pausing while the socket's buffers are full).
//
// Out (stdout), one JSON object per line: {"type":"registered","runnerId"} on
//   each `runner_registered`, {"type":"streamed","count"} when streaming ends.
// Errors go to stderr. Exit codes: 0 on SIGTERM/SIGINT, 77 when the relay
// refuses the API key (`connect_error` "unauthorized"), 2 on bad arguments.
//
// Usage: node runner.js --url http://127.0.0.1:P --api-key K --runner-id ID
//          --runner-secret S [--heartbeat-ms 10000] [--stream-seconds 0]
"use strict";

const { io } = require("socket.io-client");

const BATCH = 64; // events emitted per setImmediate tick
const MAX_WRITE_BUFFER = 1024; // engine.io packets queued, above which we pause
const MAX_WS_BUFFERED = 1 << 20; // bytes queued in the WebSocket, above which we pause

function parseArgs(argv) {
  const opts = { url: null, apiKey: null, runnerId: null, runnerSecret: null, heartbeatMs: 10000, streamSeconds: 0 };
  const names = {
    "--url": "url",
    "--api-key": "apiKey",
    "--runner-id": "runnerId",
    "--runner-secret": "runnerSecret",
    "--heartbeat-ms": "heartbeatMs",
    "--stream-seconds": "streamSeconds",
  };
  for (let i = 0; i < argv.length; i += 2) {
    const name = names[argv[i]];
    if (!name) usage(`unknown option ${argv[i]}`);
    if (argv[i + 1] === undefined) usage(`missing value for ${argv[i]}`);
    opts[name] = typeof opts[name] === "number" ? Number(argv[i + 1]) : argv[i + 1];
  }
  for (const flag of ["--url", "--api-key", "--runner-id", "--runner-secret"]) {
    if (!opts[names[flag]]) usage(`missing ${flag}`);
  }
  if (!(opts.heartbeatMs > 0)) usage("bad --heartbeat-ms");
  if (!(opts.streamSeconds >= 0)) usage("bad --stream-seconds");
  return opts;
}

function usage(message) {
  process.stderr.write(
    `runner.js: ${message}\nusage: node runner.js --url URL --api-key K --runner-id ID --runner-secret S` +
      ` [--heartbeat-ms 10000] [--stream-seconds 0]\n`,
  );
  process.exit(2);
}

const { url, apiKey, runnerId, runnerSecret, heartbeatMs, streamSeconds } = parseArgs(process.argv.slice(2));
const startedAt = Date.now();

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const socket = io(url + "/runner", { transports: ["websocket"], auth: { apiKey, runnerId, runnerSecret } });

socket.on("connect", () => {
  socket.emit("register_runner", {
    name: "node-bench-runner",
    roots: [],
    runnerId,
    runnerSecret,
    skills: [],
    version: "bench",
    platform: process.platform,
  });
});

socket.on("connect_error", (err) => {
  process.stderr.write(`runner.js: connect_error: ${err.message}\n`);
  if (err.message === "unauthorized") process.exit(77);
});

socket.on("error", (payload) => {
  process.stderr.write(`runner.js: relay error: ${JSON.stringify(payload)}\n`);
});

socket.on("disconnect", (reason) => {
  // The client reconnects by itself except after the relay's own disconnect.
  if (reason === "io server disconnect") process.stderr.write(`runner.js: disconnected by the relay\n`);
});

let streamStarted = false;
socket.on("runner_registered", (payload) => {
  out({ type: "registered", runnerId: payload && payload.runnerId });
  if (streamSeconds > 0 && !streamStarted) {
    streamStarted = true;
    stream(streamSeconds * 1000);
  }
});

socket.on("ping", () => {
  socket.emit("pong", { now: Date.now() });
});

const heartbeat = setInterval(() => {
  if (!socket.connected) return;
  socket.emit("runner_heartbeat", { runnerId, ts: Date.now(), uptimeMs: Date.now() - startedAt, sessions: [], terminals: [] });
}, heartbeatMs);

// Emits only while connected (socket.io-client would otherwise buffer every
// emit until it reconnects) and while neither engine.io's write buffer nor the
// WebSocket's send buffer is over its limit.
let stopping = false;
function stream(durationMs) {
  const end = Date.now() + durationMs;
  let count = 0;
  const full = () => {
    const engine = socket.io.engine;
    if (!socket.connected || !engine) return true;
    const ws = engine.transport && engine.transport.ws;
    return engine.writeBuffer.length > MAX_WRITE_BUFFER || (ws && ws.bufferedAmount > MAX_WS_BUFFERED);
  };
  const pump = () => {
    if (stopping) return;
    if (Date.now() >= end) return out({ type: "streamed", count });
    if (full()) return setTimeout(pump, 1);
    for (let i = 0; i < BATCH; i++) {
      socket.emit("runner_session_event", { sessionId: "bench-session", event: { type: "message_update", seq: count++ } });
    }
    setImmediate(pump);
  };
  pump();
}

function stop() {
  stopping = true;
  clearInterval(heartbeat);
  socket.close();
  setTimeout(() => process.exit(0), 100); // let the close frame go out
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
