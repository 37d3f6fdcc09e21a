#!/usr/bin/env node
// A small runner daemon for the /runner protocol, written only from the
// protocol reference (runner-namespace.md: sections 1-9, the "This project"
// rules and the Extensions). It exists so that the conformance suite can be
// checked against a second, independent runner; see
// tests/tests/js_reference_runner.rs. socket.io-client 4.8 and Node's
// standard library only (terminals: pty-helper.py, Python's standard library).
//
// Configuration: the PIZZAPI_* environment of the reference (section 8),
// plus PIZZAPI_WORKER_CMD (the worker's command line, split like a shell
// splits words, never run through one) and PIZZAPI_HEARTBEAT_INTERVAL_MS.
// Exit status: 0 after SIGTERM/SIGINT, 42 after `restart`, 1 for any failure
// (bad configuration, another runner on the state file, a refused
// connection or registration).
//
// Where the reference is silent, the simplest choice, each made here:
// * a connect error the client does not retry (the relay's middleware
//   refused, e.g. `unauthorized`) ends the runner; so does an `error` from
//   the relay followed by a disconnect of any kind;
// * the lock: a live pid whose command line names this script is another
//   runner (checked, then written: two runners started in the same instant
//   can both start); a state file that is not a JSON object refuses the start;
// * list_files/read_file refuse a relative path, as the original does; a
//   relative session or terminal `cwd` is refused; git_diff's path is
//   relative to `cwd`, as git takes it;
// * without `cwd`, workers and terminals start in the first root (else HOME);
//   a terminal runs $SHELL (else /bin/sh) without the API key in its env;
// * a worker's stdout lines that are JSON objects are forwarded (at most
//   1 MiB a line); what is left of its process group is killed when it
//   exits; more than 5 exits with code 43 within 10 s end the session;
// * create_skill and update_skill both write <name>/SKILL.md (removing a
//   <name>.md); skills_list is not sent unsolicited (no watch on the dir);
// * read_file: maxBytes 0..10 MiB, regular files only; list_files: at most
//   10,000 entries, a symlink described by its target only when the target
//   is inside the roots; git_status: `status` the two-letter porcelain code,
//   `diffStaged` the text of `git diff --cached`;
// * usage_data without a cache file: {fetchedAt: 0, providers: {}}; the file
//   is polled every 500 ms;
// * terminals: base64 decoded leniently (Node's decoder), cols/rows 1..1000,
//   exitCode 128 + signal when the shell dies of one;
// * the kill grace is 5 s, not configurable; events wait (at most 10,000,
//   oldest dropped) while the runner is not registered; heartbeats do not.
"use strict";

const os = require("os");
const util = require("util");
const { io } = require("socket.io-client");
const config = require("./reference-runner/config");
const state = require("./reference-runner/state");
const { Refusal, plain, requestId, idOf } = require("./reference-runner/payload");
const { Sessions } = require("./reference-runner/sessions");
const { Skills } = require("./reference-runner/skills");
const { Terminals } = require("./reference-runner/terminals");
const { Usage } = require("./reference-runner/usage");
const files = require("./reference-runner/files");

const VERSION = "0.1.0";
/** Events kept while the relay is away (the oldest go first beyond this). */
const MAX_OUTBOX = 10_000;

function log(...args) {
  process.stderr.write(`${new Date().toISOString()} reference-runner: ${util.format(...args)}\n`);
}

function main() {
  let cfg;
  let identity;
  try {
    cfg = config.load(process.env);
    identity = state.acquire(cfg.statePath);
  } catch (error) {
    log(error.message);
    process.exit(1);
  }
  const started = Date.now();

  const socket = io(`${cfg.origin}/runner`, {
    transports: ["websocket"],
    auth: { apiKey: cfg.apiKey, runnerId: identity.runnerId, runnerSecret: identity.runnerSecret },
    reconnection: true,
    reconnectionDelay: 1000,
    reconnectionDelayMax: 30_000,
    randomizationFactor: 0.5,
  });

  // What the runner sends waits here while it is not registered, so that
  // nothing reaches a relay before register_runner.
  const outbox = [];
  let registered = false;
  function send(event, payload) {
    if (registered && socket.connected) {
      socket.emit(event, payload);
      return;
    }
    if (outbox.length >= MAX_OUTBOX) outbox.shift();
    outbox.push([event, payload]);
  }

  const sessions = new Sessions(cfg, send, log);
  const terminals = new Terminals(cfg, send, log);
  const skills = new Skills(cfg.skillsDir);
  const usage = new Usage(cfg.usagePath, send);

  let stopping = false;
  let heartbeat = null;
  async function shutdown(code, why) {
    if (stopping) return;
    stopping = true;
    log(`stopping (${why}), exit status ${code}`);
    clearInterval(heartbeat);
    usage.unwatch();
    await Promise.all([sessions.stopAll(), terminals.stopAll()]);
    try {
      state.release(cfg.statePath, identity);
    } catch (error) {
      log(`cannot clear the pid from ${cfg.statePath}: ${error.message}`);
    }
    socket.disconnect();
    process.exit(code);
  }
  process.on("SIGTERM", () => shutdown(0, "SIGTERM"));
  process.on("SIGINT", () => shutdown(0, "SIGINT"));

  // The error reply of each command family, for a request it refuses.
  const sessionError = (p, message) => ["session_error", { sessionId: idOf(p, "sessionId"), message }];
  const skillError = (p, message) => ["skill_result", { requestId: requestId(p), ok: false, message }];
  const fileError = (p, message) => ["file_result", { requestId: requestId(p), ok: false, message }];
  const terminalError = (p, message) => ["terminal_error", { terminalId: idOf(p, "terminalId"), message }];
  const usageError = (p) => ["usage_data", { requestId: requestId(p), data: { fetchedAt: 0, providers: {} } }];
  const families = [
    [sessions.handlers(), sessionError],
    [skills.handlers(), skillError],
    [files.handlers(cfg.realRoots), fileError],
    [terminals.handlers(), terminalError],
    [usage.handlers(), usageError],
    [
      {
        ping: () => ({ event: "pong", payload: { now: Date.now() } }),
        restart: () => void shutdown(42, "restart asked by the relay"),
      },
      null,
    ],
  ];
  // Every handler answers once: with its reply, or with its family's error
  // reply when it throws. Any payload shape is turned into an object first.
  for (const [handlers, refuse] of families) {
    for (const [event, handler] of Object.entries(handlers)) {
      socket.on(event, (raw) => {
        const p = plain(raw);
        Promise.resolve()
          .then(() => handler(p))
          .then((reply) => reply && send(reply.event, reply.payload))
          .catch((error) => {
            if (!(error instanceof Refusal)) log(`${event}: ${error.stack ?? error}`);
            if (refuse) send(...refuse(p, error.message));
          });
      });
    }
  }

  // The relay's last `error`. The contract's refusal is `error` and then a
  // server-side disconnect; this runner takes `error` followed by the loss
  // of the connection for any reason as final (the DISCONNECT packet may not
  // make it before the transport closes).
  let refusal = null;
  socket.on("error", (raw) => {
    refusal = typeof plain(raw).message === "string" ? plain(raw).message : "error";
    log(`the relay reports an error: ${refusal}`);
  });
  socket.on("runner_registered", (raw) => {
    const { runnerId } = plain(raw);
    if (runnerId !== identity.runnerId) log(`warning: the relay registered ${runnerId}, not ${identity.runnerId}`);
    else log(`registered as ${runnerId}`);
  });
  socket.on("connect", () => {
    refusal = null;
    socket.emit("register_runner", {
      name: cfg.name,
      roots: cfg.roots,
      runnerId: identity.runnerId,
      runnerSecret: identity.runnerSecret,
      skills: skills.list(),
      version: VERSION,
      platform: process.platform,
    });
    registered = true;
    for (const [event, payload] of outbox.splice(0)) socket.emit(event, payload);
  });
  socket.on("disconnect", (reason) => {
    registered = false;
    log(`disconnected: ${reason}`);
    if (stopping || reason === "io client disconnect") return;
    if (refusal !== null) {
      shutdown(1, `the relay refused the runner: ${refusal}`);
    } else if (reason === "io server disconnect") {
      socket.connect(); // a plain kick: register again
    } // otherwise the client reconnects by itself
  });
  socket.on("connect_error", (error) => {
    // A refusal by the relay's middleware (e.g. `unauthorized`) is final;
    // anything else is retried by the client.
    if (!socket.active) shutdown(1, `the relay refused the connection: ${error.message}`);
    else log(`cannot connect: ${error.message}`);
  });

  heartbeat = setInterval(() => {
    if (!registered || !socket.connected) return;
    socket.emit("runner_heartbeat", {
      runnerId: identity.runnerId,
      ts: Date.now(),
      uptimeMs: Date.now() - started,
      sessions: sessions.summary(),
      terminals: terminals.ids(),
    });
  }, cfg.heartbeatMs);
  usage.watch();
  log(`runner ${identity.runnerId} on ${os.hostname()}, relay ${cfg.origin}/runner, roots ${cfg.roots.join(", ") || "(none)"}`);
}

main();
