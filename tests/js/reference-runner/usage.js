// Provider usage (Extensions: get_usage / usage_data): the runner's cache
// file ~/.pizzapi/usage-cache.json, sent on request and whenever it changes.
"use strict";

const fs = require("fs");
const { requestId } = require("./payload");

const MAX_BYTES = 1024 * 1024;
const POLL_MS = 500;

/** The cache file's text, or null when it is missing, too large or unreadable. */
function readText(file) {
  try {
    const stat = fs.statSync(file);
    return stat.isFile() && stat.size <= MAX_BYTES ? fs.readFileSync(file, "utf8") : null;
  } catch {
    return null;
  }
}

/** The cache as usage_data's `data`; without a usable file, no providers. */
function parse(text) {
  try {
    const data = JSON.parse(text);
    if (data !== null && typeof data === "object" && !Array.isArray(data)) return data;
  } catch {
    // fall through
  }
  return null;
}

class Usage {
  constructor(file, send) {
    this.file = file;
    this.send = send;
    this.lastText = readText(file);
  }

  data() {
    return parse(readText(this.file)) || { fetchedAt: 0, providers: {} };
  }

  /** Polls the file's metadata (fs.watchFile) and pushes usage_data when its content changed. */
  watch() {
    fs.watchFile(this.file, { interval: POLL_MS, persistent: false }, () => {
      const text = readText(this.file);
      if (text === null || text === this.lastText) return;
      const data = parse(text);
      this.lastText = text;
      if (data) this.send("usage_data", { data });
    });
  }

  unwatch() {
    fs.unwatchFile(this.file);
  }

  handlers() {
    return { get_usage: (p) => ({ event: "usage_data", payload: { requestId: requestId(p), data: this.data() } }) };
  }
}

module.exports = { Usage };
