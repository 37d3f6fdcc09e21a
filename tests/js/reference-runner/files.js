// Files and git (contract section 6). Every path must resolve inside the
// workspace roots; list_files and read_file take absolute paths (a relative
// one is refused, as in the original), git runs in `cwd`.
"use strict";

const fs = require("fs");
const path = require("path");
const { execFile } = require("child_process");
const { Refusal, field, bounded, requestId } = require("./payload");
const paths = require("./paths");

const OUTSIDE = "Path outside allowed roots";
const LIMITS = { utf8: 256 * 1024, base64: 10 * 1024 * 1024 };
const MAX_READ = 10 * 1024 * 1024;
const MAX_ENTRIES = 10_000;
const SHOWN_DOT_FILES = new Set([".gitignore", ".env"]);
const GIT_TIMEOUT_MS = 10_000;
const GIT_MAX_OUTPUT = 16 * 1024 * 1024;

function reply(p, fields) {
  return { event: "file_result", payload: { requestId: requestId(p), ...fields } };
}

/** The `path` of list_files/read_file; `cwd` is only type-checked (it is not used). */
function filePath(p) {
  field(p, "cwd", "string");
  const given = field(p, "path", "string");
  if (!given) throw new Refusal("Missing path");
  return given;
}

function readFile(p, roots) {
  const given = filePath(p);
  const encoding = field(p, "encoding", "string") ?? "utf8";
  if (!(encoding in LIMITS)) throw new Refusal('Invalid field `encoding`: expected "utf8" or "base64"');
  const limit = bounded(p, "maxBytes", 0, MAX_READ) ?? LIMITS[encoding];
  const fd = paths.openInside(given, roots, fs.constants.O_RDONLY, new Refusal(OUTSIDE));
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new Refusal(`Not a regular file: ${given}`);
    const buf = Buffer.alloc(Math.min(limit, stat.size));
    let n = 0;
    for (let r; n < buf.length && (r = fs.readSync(fd, buf, n, buf.length - n, n)) > 0; ) n += r;
    const content = buf.subarray(0, n).toString(encoding);
    return reply(p, { ok: true, content, encoding, size: stat.size, truncated: stat.size > n });
  } finally {
    fs.closeSync(fd);
  }
}

function listFiles(p, roots) {
  const given = filePath(p);
  const fd = paths.openInside(given, roots, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY, new Refusal(OUTSIDE));
  try {
    const dir = `/proc/self/fd/${fd}`;
    const names = fs
      .readdirSync(dir)
      .filter((name) => !name.startsWith(".") || SHOWN_DOT_FILES.has(name))
      .slice(0, MAX_ENTRIES);
    const files = [];
    for (const name of names) {
      let stat;
      try {
        stat = fs.lstatSync(path.join(dir, name));
      } catch {
        continue; // gone since the listing
      }
      const isSymlink = stat.isSymbolicLink();
      if (isSymlink) {
        // A link is described by its target only when the target is inside the roots.
        const target = paths.resolve(path.join(given, name), roots);
        if (target.real) stat = fs.statSync(target.real);
      }
      const entry = { name, path: path.join(given, name), isDirectory: stat.isDirectory(), isSymlink };
      if (stat.isFile()) entry.size = stat.size;
      files.push(entry);
    }
    const key = (e) => e.name.toLowerCase();
    files.sort((a, b) => b.isDirectory - a.isDirectory || (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : a.name < b.name ? -1 : 1));
    return reply(p, { ok: true, files });
  } finally {
    fs.closeSync(fd);
  }
}

/** The real directory of a git command's `cwd`, inside the roots. */
function gitDir(cwd, roots) {
  const found = paths.resolve(cwd, roots);
  if (found.problem === "missing") throw found.error;
  if (found.problem) throw new Refusal(OUTSIDE);
  return found.real;
}

/**
 * Runs git without a shell, with the repository's ways of running programs
 * turned off: fsmonitor, hooks, pagers, external diff and textconv, and
 * every filter driver the repository's config names.
 */
async function git(dir, args) {
  const env = { ...process.env, GIT_TERMINAL_PROMPT: "0", GIT_OPTIONAL_LOCKS: "0", GIT_LITERAL_PATHSPECS: "1", LC_ALL: "C" };
  const safe = ["--no-pager", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null"];
  const run = (argv) =>
    new Promise((resolve, reject) => {
      execFile("git", argv, { cwd: dir, env, timeout: GIT_TIMEOUT_MS, maxBuffer: GIT_MAX_OUTPUT }, (error, stdout, stderr) =>
        error ? reject(new Refusal(stderr.trim() || error.message)) : resolve(stdout),
      );
    });
  const filters = await run([...safe, "config", "--name-only", "--get-regexp", "^filter\\."]).catch(() => "");
  const names = new Set(filters.split("\n").map((key) => /^filter\.(.+)\.[^.]+$/.exec(key)?.[1]).filter(Boolean));
  const off = [...names].flatMap((name) => ["-c", `filter.${name}.clean=cat`, "-c", `filter.${name}.smudge=cat`, "-c", `filter.${name}.process=`, "-c", `filter.${name}.required=false`]);
  return run([...safe, ...off, ...args]);
}

const NO_PROGRAMS = ["--no-color", "--no-ext-diff", "--no-textconv"];

/** Parses `git status --porcelain=v1 --branch -z`. */
function parseStatus(out) {
  const parts = out.split("\0");
  const report = { branch: "HEAD", changes: [], ahead: 0, behind: 0 };
  for (let i = 0; i < parts.length; i += 1) {
    const entry = parts[i];
    if (!entry) continue;
    if (entry.startsWith("## ")) {
      let head = entry.slice(3);
      const counts = /\s\[(.*)\]$/.exec(head);
      if (counts) {
        head = head.slice(0, counts.index);
        report.ahead = Number(/ahead (\d+)/.exec(counts[1])?.[1] ?? 0);
        report.behind = Number(/behind (\d+)/.exec(counts[1])?.[1] ?? 0);
      }
      head = head.replace(/^(No commits yet on|Initial commit on) /, "");
      report.branch = head.startsWith("HEAD (no branch)") ? "HEAD" : head.split("...")[0];
      continue;
    }
    const change = { status: entry.slice(0, 2), path: entry.slice(3) };
    if (entry[0] === "R" || entry[0] === "C") change.originalPath = parts[++i];
    report.changes.push(change);
  }
  return report;
}

async function gitStatus(p, roots) {
  const cwd = field(p, "cwd", "string");
  if (!cwd) throw new Refusal("Missing cwd");
  const dir = gitDir(cwd, roots);
  const status = parseStatus(await git(dir, ["status", "--porcelain=v1", "--branch", "-z", "--untracked-files=all"]));
  const diffStaged = await git(dir, ["diff", "--cached", ...NO_PROGRAMS]);
  return reply(p, { ok: true, ...status, diffStaged });
}

async function gitDiff(p, roots) {
  const cwd = field(p, "cwd", "string");
  const given = field(p, "path", "string");
  const staged = field(p, "staged", "boolean") ?? false;
  if (!cwd || !given) throw new Refusal("Missing cwd or path");
  const dir = gitDir(cwd, roots);
  // The path may name a deleted file: checked like any path, lexically when it is gone.
  const target = path.resolve(dir, given);
  if (paths.resolve(target, roots).problem === "outside") throw new Refusal(OUTSIDE);
  const diff = await git(dir, ["diff", ...(staged ? ["--cached"] : []), ...NO_PROGRAMS, "--", target]);
  return reply(p, { ok: true, diff });
}

function handlers(roots) {
  return {
    list_files: (p) => listFiles(p, roots),
    read_file: (p) => readFile(p, roots),
    git_status: (p) => gitStatus(p, roots),
    git_diff: (p) => gitDiff(p, roots),
  };
}

module.exports = { handlers, parseStatus };
