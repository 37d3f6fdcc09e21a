// The state file (contract section 8): the runner's persistent identity and
// its single-instance lock, {pid, startedAt, runnerId, runnerSecret}, mode
// 0600, always replaced atomically (a temporary file renamed over it).
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

/** Replaces `file` with `text` atomically (mode 0600, its directory 0700). */
function writeAtomically(file, text) {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(temp, "w", 0o600);
  try {
    fs.fchmodSync(fd, 0o600);
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
}

/**
 * Whether `pid` is another live instance of this runner. A pid of a process
 * that is gone, belongs to another user, or runs another program is a stale
 * lock.
 */
function isOtherRunner(pid) {
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return argv.some((arg) => path.basename(arg) === path.basename(process.argv[1]));
  } catch {
    return false;
  }
}

/** Takes the lock and returns the identity; throws when another runner holds the file. */
function acquire(file) {
  let saved = {};
  try {
    saved = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (error) {
    if (error.code !== "ENOENT") throw new Error(`state file ${file}: ${error.message}`);
  }
  if (saved === null || typeof saved !== "object" || Array.isArray(saved)) {
    throw new Error(`state file ${file}: not a JSON object`);
  }
  if (Number.isSafeInteger(saved.pid) && saved.pid > 0 && isOtherRunner(saved.pid)) {
    throw new Error(`another runner (pid ${saved.pid}) holds the state file ${file}`);
  }
  const identity = {
    runnerId: typeof saved.runnerId === "string" && saved.runnerId ? saved.runnerId : crypto.randomUUID(),
    runnerSecret:
      typeof saved.runnerSecret === "string" && saved.runnerSecret ? saved.runnerSecret : crypto.randomBytes(32).toString("hex"),
  };
  writeAtomically(file, JSON.stringify({ pid: process.pid, startedAt: Date.now(), ...identity }) + "\n");
  return identity;
}

/** Clears pid and startedAt, keeping the identity. */
function release(file, identity) {
  writeAtomically(file, JSON.stringify(identity) + "\n");
}

module.exports = { acquire, release, writeAtomically };
