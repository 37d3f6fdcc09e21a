'use strict';
// A scriptable /runner client on the reference socket.io-client, driven by
// the Rust integration tests.
//
// argv[2] is a JSON config:
//   url          relay origin, e.g. http://127.0.0.1:1234
//   auth         the handshake auth object (sent as is)
//   register     register_runner payload emitted on every connect (optional)
//   reconnection whether the client reconnects by itself (default true)
//   replies      { incomingEvent: [{event, payload, copy: [field…]}] }:
//                canned answers; `copy` takes fields from the incoming payload
//
// Every observation is one JSON line on stdout: {type: "connect" | "connect_error"
// | "disconnect" | "event" | "reconnect_attempt" | "reconnect" | "emitted", …}:
// "reconnect_attempt" and "reconnect" are the client reconnecting by itself.
// Commands arrive as JSON lines on stdin: {op: "emit", event, args}
// | {op: "connect"} | {op: "disconnect"} | {op: "exit"}.

const readline = require('readline');
const { io } = require('socket.io-client');

const cfg = JSON.parse(process.argv[2]);

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const socket = io(cfg.url + '/runner', {
  transports: ['websocket'],
  auth: cfg.auth,
  reconnection: cfg.reconnection !== false,
  reconnectionDelay: 50,
  reconnectionDelayMax: 200,
  randomizationFactor: 0,
  timeout: 5000,
});

socket.on('connect', () => {
  out({ type: 'connect', id: socket.id });
  if (cfg.register) socket.emit('register_runner', cfg.register);
});
socket.on('connect_error', (err) => {
  out({
    type: 'connect_error',
    message: err.message,
    data: err.data === undefined ? null : err.data,
  });
});
socket.on('disconnect', (reason) => out({ type: 'disconnect', reason }));
socket.io.on('reconnect_attempt', (attempt) => out({ type: 'reconnect_attempt', attempt }));
socket.io.on('reconnect', (attempt) => out({ type: 'reconnect', attempt }));

socket.onAny((event, ...args) => {
  out({ type: 'event', event, args });
  const replies = (cfg.replies || {})[event] || [];
  const incoming = args[0] && typeof args[0] === 'object' ? args[0] : {};
  for (const reply of replies) {
    const payload = Object.assign({}, reply.payload || {});
    for (const field of reply.copy || []) {
      if (incoming[field] !== undefined) payload[field] = incoming[field];
    }
    socket.emit(reply.event, payload);
    out({ type: 'emitted', event: reply.event, payload });
  }
});

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  const cmd = JSON.parse(line);
  switch (cmd.op) {
    case 'emit':
      socket.emit(cmd.event, ...(cmd.args || []));
      out({ type: 'emitted', event: cmd.event, args: cmd.args || [] });
      break;
    case 'connect':
      socket.connect();
      break;
    case 'disconnect':
      socket.disconnect();
      break;
    case 'exit':
      socket.close();
      process.exit(0);
      break;
    default:
      out({ type: 'bad_command', cmd });
  }
});
rl.on('close', () => {
  socket.close();
  process.exit(0);
});
