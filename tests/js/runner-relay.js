// A /runner relay on the reference Socket.IO server (socket.io 4.8, Node),
// for the runner's interop tests and for the mock relay's differential test.
// It behaves like the PizzaPi relay where a runner can tell: API-key check in
// a connect middleware (`unauthorized`), runnerId/runnerSecret binding
// (`error`, then `disconnect(true)` on a mismatch), `runner_registered` after
// `register_runner`. What a client sees of each way of dropping it:
//   kick close:true   disconnect(true): the namespace DISCONNECT packet, then the
//                     transport closes; socket.io-client reports
//                     "io server disconnect" and does not reconnect by itself
//                     (what the PizzaPi relay does to a runner it drops on purpose).
//   kick close:false  disconnect(false): the DISCONNECT packet only; the
//                     transport stays open.
//   drop              the Engine.IO connection closes without a DISCONNECT packet
//                     (a network failure); the client reports "transport close"
//                     and reconnects.
//
// It talks to the test over stdio, one JSON object per line.
// Out (stdout): {"type":"listening","port"}, {"type":"refused","message"},
//   {"type":"connect","sid"}, {"type":"event","sid","runnerId","event","payload"},
//   {"type":"disconnect","sid","runnerId","reason"}, {"type":"restarted","port"}.
// In (stdin): {"cmd":"send","runnerId","event","payload"},
//   {"cmd":"sendBinary","runnerId","event","text"}  (the payload as a Buffer),
//   {"cmd":"raw","runnerId","text","binary"?:bool}  (one Engine.IO message
//   holding `text` as it is: a Socket.IO packet of any shape, well-formed or
//   not; with binary, its bytes as a binary frame, such as an attachment),
//   {"cmd":"kick","runnerId","close":bool,"error"?:string}  (close: disconnect(true)),
//   {"cmd":"drop","runnerId"}, {"cmd":"refuse","count","message"?}  (the next
//   `count` handshakes fail with `message`, before the key is checked),
//   {"cmd":"restart","downMs"}, {"cmd":"quit"}.
//
// Usage: node runner-relay.js <apiKey>
"use strict";

const http = require("http");
const readline = require("readline");
const { Server } = require("socket.io");

const apiKey = process.argv[2] || "dev-key";
const secrets = new Map(); // runnerId -> runnerSecret
const sockets = new Map(); // runnerId -> socket
let port = 0;
let io = null;
let server = null;
let refusals = { count: 0, message: "" };

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function start(onListening) {
  server = http.createServer();
  io = new Server(server, { transports: ["websocket"] });
  const nsp = io.of("/runner");
  nsp.use((socket, next) => {
    if (refusals.count > 0) {
      refusals.count -= 1;
      out({ type: "refused", message: refusals.message });
      return next(new Error(refusals.message));
    }
    const auth = socket.handshake.auth || {};
    if (auth.apiKey !== apiKey) {
      out({ type: "refused", message: "unauthorized" });
      return next(new Error("unauthorized"));
    }
    next();
  });
  nsp.on("connection", (socket) => {
    out({ type: "connect", sid: socket.id });
    socket.onAny((event, payload) => {
      out({ type: "event", sid: socket.id, runnerId: socket.data.runnerId || null, event, payload });
    });
    socket.on("register_runner", (payload) => {
      const auth = socket.handshake.auth || {};
      const runnerId = (payload && payload.runnerId) || auth.runnerId;
      const secret = (payload && payload.runnerSecret) || auth.runnerSecret;
      const known = secrets.get(runnerId);
      if (known !== undefined && known !== secret) {
        socket.emit("error", {
          message: `Runner authentication failed: secret mismatch for runner ${runnerId}`,
        });
        socket.disconnect(true);
        return;
      }
      secrets.set(runnerId, secret);
      const old = sockets.get(runnerId);
      if (old && old.id !== socket.id) old.disconnect(true);
      socket.data.runnerId = runnerId;
      sockets.set(runnerId, socket);
      socket.emit("runner_registered", { runnerId });
    });
    socket.on("disconnect", (reason) => {
      out({ type: "disconnect", sid: socket.id, runnerId: socket.data.runnerId || null, reason });
      if (sockets.get(socket.data.runnerId) === socket) sockets.delete(socket.data.runnerId);
    });
  });
  server.listen(port, "127.0.0.1", () => {
    port = server.address().port;
    onListening(port);
  });
}

function command(cmd) {
  switch (cmd.cmd) {
    case "send": {
      const socket = sockets.get(cmd.runnerId);
      if (socket) socket.emit(cmd.event, cmd.payload);
      break;
    }
    case "sendBinary": {
      const socket = sockets.get(cmd.runnerId);
      if (socket) socket.emit(cmd.event, Buffer.from(cmd.text || ""));
      break;
    }
    case "raw": {
      const socket = sockets.get(cmd.runnerId);
      if (socket) socket.conn.write(cmd.binary ? Buffer.from(cmd.text) : cmd.text);
      break;
    }
    case "kick": {
      const socket = sockets.get(cmd.runnerId);
      if (!socket) break;
      if (cmd.error) socket.emit("error", { message: cmd.error });
      socket.disconnect(Boolean(cmd.close));
      break;
    }
    case "drop": {
      const socket = sockets.get(cmd.runnerId);
      // The Engine.IO socket under the namespace: closing it sends no
      // DISCONNECT packet, only the end of the WebSocket.
      if (socket) socket.conn.close();
      break;
    }
    case "refuse":
      refusals = { count: cmd.count || 0, message: cmd.message || "handshake refused" };
      break;
    case "restart": {
      // io.close() stops listening at once; its callback would wait for
      // every HTTP connection to end, so do not wait for it.
      const old = server;
      io.close();
      old.closeAllConnections();
      setTimeout(() => start((p) => out({ type: "restarted", port: p })), cmd.downMs || 0);
      break;
    }
    case "quit":
      io.close(() => process.exit(0));
      setTimeout(() => process.exit(0), 2000).unref();
      break;
    default:
      out({ type: "unknown_command", cmd });
  }
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim()) command(JSON.parse(line));
});
process.stdin.on("end", () => process.exit(0));

start((p) => out({ type: "listening", port: p }));
