// The roots rule of the contract (section 6): a path is inside a root when,
// after `..` and symlinks are resolved, it equals the root or starts with
// root + "/". A runner without roots is unscoped.
"use strict";

const fs = require("fs");
const path = require("path");

function inside(real, roots) {
  if (roots.length === 0) return true;
  return roots.some((root) => real === root || real.startsWith(root.endsWith("/") ? root : root + "/"));
}

/**
 * Resolves an absolute path and checks it against the roots.
 * Returns { real } or { problem: "relative" | "outside" | "missing", error? }.
 * A path that does not exist is "outside" when its lexical form is outside.
 */
function resolve(given, roots) {
  if (!path.isAbsolute(given)) return { problem: "relative" };
  let real;
  try {
    real = fs.realpathSync(given);
  } catch (error) {
    return inside(path.resolve(given), roots) ? { problem: "missing", error } : { problem: "outside" };
  }
  return inside(real, roots) ? { real } : { problem: "outside" };
}

/**
 * Opens an absolute path inside the roots and returns its descriptor. After
 * the open, the descriptor's own path (/proc/self/fd) is checked again, so a
 * symlink swapped in between the check and the open cannot lead outside.
 * Throws `outside` (an Error) or the OS error.
 */
function openInside(given, roots, flags, outside) {
  const found = resolve(given, roots);
  if (found.problem === "missing") throw found.error;
  if (found.problem) throw outside;
  const fd = fs.openSync(found.real, flags | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  let actual;
  try {
    actual = fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
  if (!inside(actual, roots)) {
    fs.closeSync(fd);
    throw outside;
  }
  return fd;
}

module.exports = { inside, resolve, openInside };
