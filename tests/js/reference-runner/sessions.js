// Sessions (contract section 3 and its "This project" rules): one worker
// process per session, in its own process group, told its session through
// PIZZAPI_* variables; exit code 43 restarts it; kill_session is SIGTERM,
// then SIGKILL after KILL_GRACE_MS, and session_killed once it is gone.
"use strict";

const { spawn } = require("child_process");
const fs = require("fs");
const { Refusal, field } = require("./payload");
const { resolve } = require("./paths");
const { eachLine } = require("./lines");

const KILL_GRACE_MS = 5000;
const MAX_EVENT_LINE = 1024 * 1024;
/** A worker that asks for a restart more often than this within RESTART_WINDOW_MS is left stopped. */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 10_000;
/** How long the runner waits for a dead worker's stdout to close (a grandchild may hold it). */
const STDOUT_DRAIN_MS = 2000;

class Sessions {
  /** `send(event, payload)` reaches the relay; `cfg` is the runner's configuration. */
  constructor(cfg, send, log) {
    this.cfg = cfg;
    this.send = send;
    this.log = log;
    this.sessions = new Map();
  }

  /** The spawn directory of `cwd`: checked against the roots, a directory. */
  directory(cwd) {
    if (cwd === undefined) return this.cfg.realRoots[0] ?? this.cfg.home;
    const found = resolve(cwd, this.cfg.realRoots);
    if (found.problem === "relative") throw new Refusal(`Requested cwd is not an absolute path: ${cwd}`);
    if (found.problem === "outside") throw new Refusal(`Requested cwd is outside allowed workspace root(s): ${cwd}`);
    if (found.problem === "missing") throw new Refusal(`Requested cwd does not exist: ${cwd}`);
    return found.real;
  }

  newSession(p) {
    const sessionId = field(p, "sessionId", "string");
    const cwd = field(p, "cwd", "string");
    const prompt = field(p, "prompt", "string");
    const model = field(p, "model", "object");
    if (model) {
      for (const key of ["provider", "id"]) {
        if (typeof model[key] !== "string") throw new Refusal(`Invalid field \`model.${key}\`: expected a string`);
      }
    }
    const skills = field(p, "skills", "array");
    if (skills && !skills.every((s) => typeof s === "string")) throw new Refusal("Invalid field `skills`: expected an array of strings");
    if (!sessionId) throw new Refusal("Missing sessionId");
    if (this.sessions.has(sessionId)) throw new Refusal(`Session already running: ${sessionId}`);
    if (!this.cfg.workerCmd) throw new Refusal("No worker command configured (PIZZAPI_WORKER_CMD)");
    const dir = this.directory(cwd);
    if (cwd !== undefined && !fs.statSync(dir).isDirectory()) {
      throw new Refusal(`Requested cwd is not a directory: ${cwd}`);
    }
    const env = { ...process.env };
    for (const key of Object.keys(env)) {
      if (key === "PIZZAPI_SESSION_ID" || key.startsWith("PIZZAPI_WORKER_")) delete env[key];
    }
    Object.assign(env, {
      PIZZAPI_SESSION_ID: sessionId,
      PIZZAPI_API_KEY: this.cfg.apiKey,
      PIZZAPI_RELAY_URL: this.cfg.relayUrl,
      PIZZAPI_RUNNER_USAGE_CACHE_PATH: this.cfg.usagePath,
    });
    if (cwd !== undefined) env.PIZZAPI_WORKER_CWD = cwd;
    const first = { ...env };
    if (prompt !== undefined) first.PIZZAPI_WORKER_INITIAL_PROMPT = prompt;
    if (model) {
      first.PIZZAPI_WORKER_INITIAL_MODEL_PROVIDER = model.provider;
      first.PIZZAPI_WORKER_INITIAL_MODEL_ID = model.id;
    }
    const session = { sessionId, dir, env, killing: false, restarts: [] };
    let finished;
    session.gone = new Promise((r) => (finished = r));
    session.finished = finished;
    this.sessions.set(sessionId, session);
    this.spawn(session, first);
  }

  spawn(session, env) {
    const [program, ...args] = this.cfg.workerCmd;
    const { sessionId } = session;
    let child;
    try {
      child = spawn(program, args, { cwd: session.dir, env, detached: true, stdio: ["ignore", "pipe", "inherit"] });
    } catch (error) {
      this.fail(session, error);
      return;
    }
    session.child = child;
    session.pid = undefined;
    child.on("error", (error) => {
      if (session.pid === undefined) this.fail(session, error);
    });
    child.on("spawn", () => {
      session.pid = child.pid;
      session.startedAt = Date.now();
      this.send("session_ready", { sessionId });
    });
    eachLine(child.stdout, MAX_EVENT_LINE, (line) => {
      let event;
      try {
        event = JSON.parse(line);
      } catch {
        return; // not JSON: the worker's own business
      }
      if (event !== null && typeof event === "object" && !Array.isArray(event)) {
        this.send("runner_session_event", { sessionId, event });
      }
    });
    child.on("exit", (code, signal) => {
      this.signal(session, "SIGKILL"); // what is left of the group
      let done = false;
      const finish = () => {
        if (!done) {
          done = true;
          this.exited(session, code, signal);
        }
      };
      child.stdout.once("close", finish);
      setTimeout(finish, STDOUT_DRAIN_MS).unref();
    });
  }

  fail(session, error) {
    this.sessions.delete(session.sessionId);
    session.finished();
    this.send("session_error", { sessionId: session.sessionId, message: `Cannot start the worker: ${error.message}` });
  }

  exited(session, code, signal) {
    clearTimeout(session.killTimer);
    const { sessionId } = session;
    const now = Date.now();
    session.restarts = session.restarts.filter((t) => now - t < RESTART_WINDOW_MS);
    if (!session.killing && code === 43 && session.restarts.length < MAX_RESTARTS) {
      session.restarts.push(now);
      this.log(`session ${sessionId}: the worker asked for a restart`);
      this.spawn(session, session.env);
      return;
    }
    this.sessions.delete(sessionId);
    session.finished();
    if (session.killing) {
      this.send("session_killed", { sessionId });
    } else {
      this.send("session_exited", { sessionId, exitCode: code ?? undefined, signal: signal ?? undefined });
    }
  }

  signal(session, sig) {
    if (session.child?.pid === undefined) return;
    try {
      process.kill(-session.child.pid, sig);
    } catch {
      // the group is gone already
    }
  }

  /** SIGTERM to the worker's group, SIGKILL after the grace period. */
  stop(session) {
    if (session.killing) return;
    session.killing = true;
    this.signal(session, "SIGTERM");
    session.killTimer = setTimeout(() => this.signal(session, "SIGKILL"), KILL_GRACE_MS);
  }

  killSession(p) {
    const sessionId = field(p, "sessionId", "string");
    if (!sessionId) throw new Refusal("Missing sessionId");
    const session = this.sessions.get(sessionId);
    if (!session) throw new Refusal("Session not found");
    this.stop(session);
  }

  /** Stops every worker; resolves once all are gone. */
  stopAll() {
    const all = [...this.sessions.values()];
    all.forEach((s) => this.stop(s));
    return Promise.all(all.map((s) => s.gone));
  }

  /** For runner_heartbeat. */
  summary() {
    return [...this.sessions.values()].map((s) => ({ sessionId: s.sessionId, pid: s.pid, startedAt: s.startedAt }));
  }

  handlers() {
    return {
      new_session: (p) => this.newSession(p),
      kill_session: (p) => this.killSession(p),
      list_sessions: () => ({ event: "sessions_list", payload: { sessions: [...this.sessions.keys()] } }),
    };
  }
}

module.exports = { Sessions };
