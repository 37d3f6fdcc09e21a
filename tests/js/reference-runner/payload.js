// Decoding of relay payloads: every field is checked before it is used, and
// a field of the wrong type becomes a `Refusal` whose message names it.
"use strict";

/** A request the runner refuses; `message` goes back in the command's error reply. */
class Refusal extends Error {}

/** The payload as a plain object; anything else (string, number, array, null) is `{}`. */
function plain(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? value : {};
}

const CHECKS = {
  string: (v) => typeof v === "string",
  boolean: (v) => typeof v === "boolean",
  integer: (v) => Number.isSafeInteger(v),
  object: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
  array: (v) => Array.isArray(v),
};

/** `p[name]` when it has `type`, `undefined` when absent or null; a Refusal otherwise. */
function field(p, name, type, label = name) {
  const value = p[name];
  if (value === undefined || value === null) return undefined;
  if (!CHECKS[type](value)) {
    throw new Refusal(`Invalid field \`${label}\`: expected ${type === "integer" || type === "array" || type === "object" ? "an" : "a"} ${type}`);
  }
  return value;
}

/** An integer field within [min, max]. */
function bounded(p, name, min, max) {
  const value = field(p, name, "integer");
  if (value !== undefined && (value < min || value > max)) {
    throw new Refusal(`Invalid field \`${name}\`: must be between ${min} and ${max}`);
  }
  return value;
}

/** The request id to echo: a string or a number, as sent. */
function requestId(p) {
  const id = p.requestId;
  return typeof id === "string" || typeof id === "number" ? id : undefined;
}

/** A string field for the id an error reply carries ("" when unusable). */
function idOf(p, name) {
  return typeof p[name] === "string" ? p[name] : "";
}

module.exports = { Refusal, plain, field, bounded, requestId, idOf };
