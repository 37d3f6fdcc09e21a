// Terminals (contract section 7): a program on a pseudo-terminal, bytes in
// and out as base64. Node has no PTY of its own, so each terminal runs
// through pty-helper.py (Python's standard `pty` support: no native build).
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const { spawn } = require("child_process");
const { Refusal, field, bounded } = require("./payload");
const { resolve } = require("./paths");

const HELPER = path.join(__dirname, "pty-helper.py");
const MAX_SIZE = 1000;
const KILL_GRACE_MS = 5000;

class Terminals {
  constructor(cfg, send, log) {
    this.cfg = cfg;
    this.send = send;
    this.log = log;
    this.terminals = new Map();
  }

  /** The terminal of a payload's `terminalId`, which must be open. */
  get(p) {
    const terminalId = field(p, "terminalId", "string");
    if (!terminalId) throw new Refusal("Missing terminalId");
    const terminal = this.terminals.get(terminalId);
    if (!terminal) throw new Refusal("Terminal not found");
    return terminal;
  }

  open(p) {
    const terminalId = field(p, "terminalId", "string");
    const cwd = field(p, "cwd", "string");
    const shell = field(p, "shell", "string") || process.env.SHELL || "/bin/sh";
    const cols = bounded(p, "cols", 1, MAX_SIZE) ?? 80;
    const rows = bounded(p, "rows", 1, MAX_SIZE) ?? 24;
    if (!terminalId) throw new Refusal("Missing terminalId");
    if (this.terminals.has(terminalId)) throw new Refusal("Terminal already exists");
    let dir = this.cfg.realRoots[0] ?? this.cfg.home;
    if (cwd !== undefined) {
      const found = resolve(cwd, this.cfg.realRoots);
      if (found.problem === "outside" || found.problem === "relative") throw new Refusal(`cwd outside allowed roots: ${cwd}`);
      if (found.problem === "missing" || !fs.statSync(found.real).isDirectory()) throw new Refusal(`cwd is not a directory: ${cwd}`);
      dir = found.real;
    }
    const env = { ...process.env, TERM: "xterm-256color" };
    delete env.PIZZAPI_API_KEY;
    delete env.PIZZAPI_RUNNER_API_KEY;
    const child = spawn("python3", [HELPER, String(rows), String(cols), shell], {
      cwd: dir,
      env,
      detached: true,
      stdio: ["pipe", "pipe", "inherit", "pipe"],
    });
    const terminal = { terminalId, child, killed: false };
    this.terminals.set(terminalId, terminal);
    child.stdin.on("error", () => {}); // input after the shell is gone
    child.stdio[3].on("error", () => {});
    child.on("error", (error) => {
      terminal.failed = true;
      this.terminals.delete(terminalId);
      this.send("terminal_error", { terminalId, message: `Cannot start the terminal: ${error.message}` });
    });
    child.on("spawn", () => this.send("terminal_ready", { terminalId }));
    child.stdout.on("data", (chunk) => this.send("terminal_data", { terminalId, data: chunk.toString("base64") }));
    terminal.gone = new Promise((done) =>
      child.on("close", (code, signal) => {
        clearTimeout(terminal.killTimer);
        if (terminal.failed) return done();
        this.terminals.delete(terminalId);
        const exitCode = terminal.killed ? -1 : (code ?? 128 + (os.constants.signals[signal] ?? 0));
        this.send("terminal_exit", { terminalId, exitCode });
        done();
      }),
    );
  }

  input(p) {
    const data = field(p, "data", "string");
    const terminal = this.get(p);
    if (data === undefined) throw new Refusal("Missing field `data`");
    terminal.child.stdin.write(Buffer.from(data, "base64"));
  }

  resize(p) {
    const cols = bounded(p, "cols", 1, MAX_SIZE);
    const rows = bounded(p, "rows", 1, MAX_SIZE);
    const terminal = this.get(p);
    if (cols === undefined || rows === undefined) throw new Refusal("Missing field `cols` or `rows`");
    terminal.child.stdio[3].write(`${rows} ${cols}\n`);
  }

  /** SIGTERM to the helper (it ends the terminal's session), SIGKILL after the grace period. */
  stop(terminal) {
    if (terminal.killed) return;
    terminal.killed = true;
    const kill = (sig) => {
      try {
        process.kill(-terminal.child.pid, sig);
      } catch {
        // gone already
      }
    };
    kill("SIGTERM");
    terminal.killTimer = setTimeout(() => kill("SIGKILL"), KILL_GRACE_MS);
  }

  stopAll() {
    const all = [...this.terminals.values()];
    all.forEach((t) => this.stop(t));
    return Promise.all(all.map((t) => t.gone));
  }

  ids() {
    return [...this.terminals.keys()];
  }

  handlers() {
    return {
      new_terminal: (p) => this.open(p),
      terminal_input: (p) => this.input(p),
      terminal_resize: (p) => this.resize(p),
      kill_terminal: (p) => this.stop(this.get(p)),
      list_terminals: () => ({ event: "terminals_list", payload: { terminals: this.ids() } }),
    };
  }
}

module.exports = { Terminals };
