// The runner's settings, from the PIZZAPI_* environment (contract section 8).
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");

/** Splits a command line the way a shell splits words (quotes, backslashes); nothing is expanded or run. */
function splitWords(text) {
  const words = [];
  let word = null;
  for (let i = 0; i < text.length; ) {
    const c = text[i];
    if (/\s/.test(c)) {
      if (word !== null) words.push(word);
      word = null;
      i += 1;
      continue;
    }
    word ??= "";
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new Error("unclosed single quote");
      word += text.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      for (i += 1; i < text.length && text[i] !== '"'; i += 1) {
        if (text[i] === "\\" && '"\\$`'.includes(text[i + 1] ?? "")) i += 1;
        word += text[i];
      }
      if (i >= text.length) throw new Error("unclosed double quote");
      i += 1;
    } else if (c === "\\") {
      if (i + 1 >= text.length) throw new Error("a backslash ends the line");
      word += text[i + 1];
      i += 2;
    } else {
      word += c;
      i += 1;
    }
  }
  if (word !== null) words.push(word);
  return words;
}

/** The relay's http(s) origin for a ws://, wss://, http:// or https:// URL. */
function relayOrigin(text) {
  const url = new URL(text);
  const scheme = { "ws:": "http:", "wss:": "https:", "http:": "http:", "https:": "https:" }[url.protocol];
  if (!scheme) throw new Error(`PIZZAPI_RELAY_URL ${text}: use ws://, wss://, http:// or https://`);
  return `${scheme}//${url.host}`;
}

/** Reads the configuration; throws an Error naming the variable that is wrong. */
function load(env) {
  const apiKey = env.PIZZAPI_API_KEY || env.PIZZAPI_RUNNER_API_KEY;
  if (!apiKey) throw new Error("PIZZAPI_API_KEY (or PIZZAPI_RUNNER_API_KEY) is required");
  const relayUrl = env.PIZZAPI_RELAY_URL || "ws://localhost:7492";
  const rootList = env.PIZZAPI_WORKSPACE_ROOTS || env.PIZZAPI_WORKSPACE_ROOT || "";
  const roots = rootList.split(",").map((r) => r.trim()).filter(Boolean);
  for (const root of roots) {
    if (!path.isAbsolute(root)) throw new Error(`workspace root ${root}: not an absolute path`);
  }
  const home = env.HOME || os.homedir();
  let workerCmd = null;
  if (env.PIZZAPI_WORKER_CMD) {
    workerCmd = splitWords(env.PIZZAPI_WORKER_CMD);
    if (workerCmd.length === 0) workerCmd = null;
  }
  const heartbeat = Number(env.PIZZAPI_HEARTBEAT_INTERVAL_MS);
  return {
    apiKey,
    relayUrl,
    origin: relayOrigin(relayUrl),
    name: env.PIZZAPI_RUNNER_NAME || os.hostname(),
    roots,
    // The roots as the checks compare them: symlinks resolved.
    realRoots: roots.map((root) => {
      try {
        return fs.realpathSync(root);
      } catch {
        return path.resolve(root);
      }
    }),
    home,
    statePath: env.PIZZAPI_RUNNER_STATE_PATH || path.join(home, ".pizzapi", "runner.json"),
    skillsDir: path.join(home, ".pizzapi", "skills"),
    usagePath: path.join(home, ".pizzapi", "usage-cache.json"),
    workerCmd,
    heartbeatMs: Number.isSafeInteger(heartbeat) && heartbeat > 0 ? heartbeat : 10_000,
  };
}

module.exports = { load, splitWords, relayOrigin };
