// Writing TOML: the scenario file's tables and inline values.

const BARE_KEY = /^[A-Za-z0-9_-]+$/;

export function tomlString(s) {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\r") out += "\\r";
    else if (c < 0x20 || c === 0x7f) out += `\\u${c.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

export function tomlKey(k) {
  return BARE_KEY.test(k) ? k : tomlString(k);
}

/// Whether TOML can write `value` (it has no null).
export function representable(value) {
  if (value === null || value === undefined) return false;
  if (Array.isArray(value)) return value.every(representable);
  if (typeof value === "object") return Object.values(value).every(representable);
  return true;
}

/// An inline TOML value (objects as inline tables).
export function tomlValue(value) {
  if (typeof value === "string") return tomlString(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`TOML cannot hold the number ${value}`);
    return Number.isInteger(value) ? String(value) : String(value).includes(".") || String(value).includes("e") ? String(value) : `${value}.0`;
  }
  if (typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return `[${value.map(tomlValue).join(", ")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value).map(([k, v]) => `${tomlKey(k)} = ${tomlValue(v)}`);
    return entries.length ? `{ ${entries.join(", ")} }` : "{}";
  }
  throw new Error(`TOML cannot hold ${JSON.stringify(value)}`);
}
