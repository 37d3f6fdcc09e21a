// A /runner relay on the reference Socket.IO server (socket.io 4.8, Node), as
// the JavaScript peer of the benchmark harness. Its core matches the Rust mock
// relay: API-key check in a connect middleware (`unauthorized`),
// runnerId/runnerSecret binding (`error` + disconnect on a mismatch),
// `runner_registered` after `register_runner`, one socket per runnerId (a newer
// one replaces the older). Every event in and out is recorded in a ring buffer
// of `--record-cap` records {seq, time, dir, runnerId, event, payload} (the
// payload by reference, never serialized), and incoming `runner_session_event`s
// are counted. Nothing is logged on the hot path; stderr is for errors only.
//
// It is driven over stdio, one JSON object per line.
// Out (stdout): {"type":"listening","port"} once, then one
//   {"type":"reply","id",...} per command, or {"type":"reply","id","error"}.
// In (stdin), each with a numeric "id":
//   {"cmd":"stats"}                           -> {registered, events, records, timeNs}
//   {"cmd":"runners"}                         -> {runners: [ids, in registration order]}
//   {"cmd":"window","delayMs","windowMs"}     -> {events, elapsedNs} (runner_session_events
//                                                counted over a window, on the relay's clock)
//   {"cmd":"ping","runnerId","count","timeoutMs"} -> {rttNs: [...]} (sequential)
//   {"cmd":"pingAll","timeoutMs"}             -> {rttNs: [...], missing}
//   {"cmd":"waitRunner","runnerId","timeoutMs"} -> {ok: true}
//   {"cmd":"quit"}                            -> {ok: true}, then exit 0
// The end of stdin also exits 0. A round trip is `ping` {} out, the runner's
// next `pong` in, timed with process.hrtime.bigint().
//
// Usage: node relay.js --port N --api-key K [--record-cap 100000]  (port 0: any free)
"use strict";

const http = require("http");
const readline = require("readline");
const { Server } = require("socket.io");

function parseArgs(argv) {
  const opts = { port: null, apiKey: null, recordCap: 100000 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) usage(`missing value for ${flag}`);
    if (flag === "--port") opts.port = Number(value);
    else if (flag === "--api-key") opts.apiKey = value;
    else if (flag === "--record-cap") opts.recordCap = Number(value);
    else usage(`unknown option ${flag}`);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) usage("bad or missing --port");
  if (!opts.apiKey) usage("missing --api-key");
  if (!Number.isInteger(opts.recordCap) || opts.recordCap < 1) usage("bad --record-cap");
  return opts;
}

function usage(message) {
  process.stderr.write(`relay.js: ${message}\nusage: node relay.js --port N --api-key K [--record-cap 100000]\n`);
  process.exit(2);
}

const { port, apiKey, recordCap } = parseArgs(process.argv.slice(2));

// The record ring: slot seq % recordCap holds record seq, so the oldest is
// overwritten once it is full.
const ring = new Array(recordCap);
let records = 0; // records ever made (the next seq)
let sessionEvents = 0; // runner_session_event received

function record(dir, runnerId, event, payload) {
  ring[records % recordCap] = { seq: records, time: Date.now(), dir, runnerId, event, payload };
  records++;
}

const secrets = new Map(); // runnerId -> runnerSecret
const sockets = new Map(); // runnerId -> socket
const runnerWaiters = new Map(); // runnerId -> [callback] (waitRunner)

function send(socket, event, payload) {
  record("out", socket.data.runnerId || null, event, payload);
  socket.emit(event, payload);
}

// Round trips: each socket keeps a FIFO of waiters, the next `pong` settles the first.
function expectPong(socket, onPong) {
  const waiter = { onPong };
  socket.data.pongWaiters.push(waiter);
  return waiter;
}

function dropWaiter(socket, waiter) {
  const i = socket.data.pongWaiters.indexOf(waiter);
  if (i >= 0) socket.data.pongWaiters.splice(i, 1);
}

const server = http.createServer();
const io = new Server(server, { transports: ["websocket"] });
const nsp = io.of("/runner");

nsp.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  if (auth.apiKey !== apiKey) return next(new Error("unauthorized"));
  next();
});

nsp.on("connection", (socket) => {
  socket.data.pongWaiters = [];
  socket.onAny((event, payload) => {
    record("in", socket.data.runnerId || null, event, payload);
    if (event === "runner_session_event") sessionEvents++;
  });
  socket.on("pong", () => {
    const waiter = socket.data.pongWaiters.shift();
    if (waiter) waiter.onPong(process.hrtime.bigint());
  });
  socket.on("register_runner", (payload) => {
    const auth = socket.handshake.auth || {};
    const runnerId = (payload && payload.runnerId) || auth.runnerId;
    const secret = (payload && payload.runnerSecret) || auth.runnerSecret;
    const known = secrets.get(runnerId);
    if (known !== undefined && known !== secret) {
      send(socket, "error", { message: `Runner authentication failed: secret mismatch for runner ${runnerId}` });
      socket.disconnect(true);
      return;
    }
    secrets.set(runnerId, secret);
    const old = sockets.get(runnerId);
    if (old && old !== socket) old.disconnect(true);
    socket.data.runnerId = runnerId;
    sockets.set(runnerId, socket);
    send(socket, "runner_registered", { runnerId });
    const waiting = runnerWaiters.get(runnerId);
    if (waiting) {
      runnerWaiters.delete(runnerId);
      for (const callback of waiting) callback();
    }
  });
  socket.on("disconnect", () => {
    const runnerId = socket.data.runnerId;
    if (runnerId !== undefined && sockets.get(runnerId) === socket) sockets.delete(runnerId);
  });
});

// --- control over stdio ---

const startedAt = process.hrtime.bigint(); // the clock of `stats.timeNs`

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function runnerSocket(runnerId) {
  const socket = sockets.get(runnerId);
  if (!socket) throw new Error(`runner ${runnerId} is not registered`);
  return socket;
}

function runnerIdOf(cmd) {
  if (typeof cmd.runnerId !== "string") throw new Error("a runnerId is needed");
  return cmd.runnerId;
}

function timeoutOf(cmd) {
  const t = cmd.timeoutMs === undefined ? 10000 : cmd.timeoutMs;
  if (typeof t !== "number" || !(t >= 0)) throw new Error("bad timeoutMs");
  return t;
}

function pingOnce(runnerId, index, timeoutMs) {
  const socket = runnerSocket(runnerId);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      dropWaiter(socket, waiter);
      reject(new Error(`ping ${index} to runner ${runnerId} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const waiter = expectPong(socket, (end) => {
      clearTimeout(timer);
      resolve(Number(end - start));
    });
    const start = process.hrtime.bigint();
    send(socket, "ping", {});
  });
}

const commands = {
  stats: async () => ({
    registered: sockets.size,
    events: sessionEvents,
    records,
    timeNs: Number(process.hrtime.bigint() - startedAt),
  }),

  runners: async () => ({ runners: [...sockets.keys()] }),

  // Counts runner_session_events over a window on the relay's own clock:
  // a snapshot `delayMs` after the command, another `windowMs` later.
  // Sent before a load starts, so that a saturated relay need not read
  // its stdin in time for the figure to be right.
  window: (cmd) => {
    const [delayMs, windowMs] = [cmd.delayMs || 0, cmd.windowMs || 1000];
    return new Promise((resolve) => {
      setTimeout(() => {
        const [e0, t0] = [sessionEvents, process.hrtime.bigint()];
        setTimeout(() => {
          const [e1, t1] = [sessionEvents, process.hrtime.bigint()];
          resolve({ events: e1 - e0, elapsedNs: Number(t1 - t0) });
        }, windowMs);
      }, delayMs);
    });
  },

  ping: async (cmd) => {
    const count = cmd.count === undefined ? 1 : cmd.count;
    if (!Number.isInteger(count) || count < 0) throw new Error("bad count");
    const [runnerId, timeoutMs] = [runnerIdOf(cmd), timeoutOf(cmd)];
    const rttNs = [];
    for (let i = 0; i < count; i++) rttNs.push(await pingOnce(runnerId, i, timeoutMs));
    return { rttNs };
  },

  pingAll: (cmd) => {
    const timeoutMs = timeoutOf(cmd);
    return new Promise((resolve) => {
      const rttNs = [];
      const pending = new Map(); // socket -> waiter
      const finish = () => {
        clearTimeout(timer);
        for (const [socket, waiter] of pending) dropWaiter(socket, waiter);
        resolve({ rttNs, missing: pending.size });
      };
      const timer = setTimeout(finish, timeoutMs);
      for (const socket of sockets.values()) {
        const waiter = expectPong(socket, (end) => {
          rttNs.push(Number(end - start));
          pending.delete(socket);
          if (pending.size === 0) finish();
        });
        pending.set(socket, waiter);
      }
      if (pending.size === 0) return finish();
      const start = process.hrtime.bigint();
      for (const socket of pending.keys()) send(socket, "ping", {});
    });
  },

  waitRunner: (cmd) => {
    const [runnerId, timeoutMs] = [runnerIdOf(cmd), timeoutOf(cmd)];
    if (sockets.has(runnerId)) return Promise.resolve({ ok: true });
    return new Promise((resolve, reject) => {
      const callback = () => {
        clearTimeout(timer);
        resolve({ ok: true });
      };
      const timer = setTimeout(() => {
        const list = runnerWaiters.get(runnerId) || [];
        list.splice(list.indexOf(callback), 1);
        if (list.length === 0) runnerWaiters.delete(runnerId);
        reject(new Error(`runner ${runnerId} did not register within ${timeoutMs} ms`));
      }, timeoutMs);
      if (!runnerWaiters.has(runnerId)) runnerWaiters.set(runnerId, []);
      runnerWaiters.get(runnerId).push(callback);
    });
  },

  // Replies to the commands before it that are already settled go out first;
  // those still waiting on a runner get none.
  quit: (cmd) =>
    new Promise(() =>
      setImmediate(() => {
        out({ type: "reply", id: cmd.id, ok: true });
        shutdown();
      }),
    ),
};

async function handle(line) {
  if (line.trim() === "") return;
  let id = null;
  try {
    const cmd = JSON.parse(line);
    if (cmd === null || typeof cmd !== "object") throw new Error("a command must be a JSON object");
    if (typeof cmd.id === "number") id = cmd.id;
    else throw new Error("a command needs a numeric id");
    const run = Object.prototype.hasOwnProperty.call(commands, cmd.cmd) ? commands[cmd.cmd] : null;
    if (!run) throw new Error(`unknown command ${JSON.stringify(cmd.cmd)}`);
    out({ type: "reply", id, ...(await run(cmd)) });
  } catch (err) {
    out({ type: "reply", id, error: String((err && err.message) || err) });
  }
}

let closing = false;
function shutdown() {
  if (closing) return;
  closing = true;
  io.close();
  process.stdout.write("", () => process.exit(0));
}

server.on("error", (err) => {
  process.stderr.write(`relay.js: ${err.message}\n`);
  process.exit(1);
});

server.listen(port, "127.0.0.1", () => {
  out({ type: "listening", port: server.address().port });
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", handle);
  rl.on("close", () => setImmediate(shutdown)); // after a quit read just before
});
