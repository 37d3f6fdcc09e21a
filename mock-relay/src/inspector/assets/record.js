// Record → scenario: mark a start, act on the page, and export what
// happened as a scenario TOML file for `runner-conformance --scenarios DIR`
// (or as the raw transcript, NDJSON).
//
// The events the relay sent become `emit` steps, each followed by an
// `expect` step for the reply the runner gave (when it gave one), whose
// `match` is the reply's payload without the fields that change from run
// to run. Faults become their steps (`kick`, `refuse`, `delay`, `drop`,
// `restart_relay`); a re-registration after one becomes an `expect` of
// `register_runner`, a disconnect after a kick an `expect` of `disconnect`.
// The runner's first root becomes `{root}` and its id `{runner_id}`.

import { Correlator } from "./correlate.js";
import { validate } from "./schema.js";
import { representable, tomlKey, tomlString, tomlValue } from "./toml.js";
import { $, download, maskSecrets } from "./util.js";

/// Fields left out of an `expect`'s match: the values conformance's
/// normalizer (conformance/src/normalize.rs, `volatile` and the ids the
/// relay does not choose) replaces by placeholders.
export const VOLATILE_FIELDS = new Set([
  "runnerSecret",
  "apiKey",
  "now",
  "ts",
  "startedAt",
  "connectedAt",
  "fetchedAt",
  "pid",
  "grandchildPid",
  "uptimeMs",
  "version",
  "runnerId",
  "socketId",
]);

/// Events the relay sends by itself (not what you did).
const RELAY_OWN = new Set(["runner_registered"]);

/// How long an exported expect waits for a reconnection.
const RECONNECT_WAIT_MS = 20_000;

/// Placeholders in scenario strings are `{name}`; written text that looks
/// like one is doubled so that it stays literal.
function escapePlaceholders(s) {
  return s.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, "{{$1}}");
}

function substitute(value, ctx) {
  if (typeof value === "string") {
    let s = escapePlaceholders(value);
    if (ctx.root && ctx.root !== "/") s = s.split(ctx.root).join("{root}");
    if (ctx.runnerId) s = s.split(ctx.runnerId).join("{runner_id}");
    return s;
  }
  if (Array.isArray(value)) return value.map((v) => substitute(v, ctx));
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = substitute(v, ctx);
    return out;
  }
  return value;
}

/// The reply's payload as an expect's match: volatile fields and nulls
/// (TOML has none; a subset without them still matches) left out.
function matchOf(payload, ctx) {
  const strip = (value) => {
    if (Array.isArray(value)) return value.map(strip);
    if (value && typeof value === "object") {
      const out = {};
      for (const [k, v] of Object.entries(value)) {
        if (VOLATILE_FIELDS.has(k) || v === null) continue;
        out[k] = strip(v);
      }
      return out;
    }
    return value;
  };
  return substitute(strip(payload ?? {}), ctx);
}

/// The steps for `records` of runner `runnerId` (relay-wide records
/// included); `protocol` decides which emits must be raw.
export function scenarioSteps(records, { runnerId, root, protocol }) {
  const ctx = { runnerId, root };
  const correlator = new Correlator();
  // One group per action; a reply's expect joins its request's group, so
  // that it follows its emit directly whatever was sent in between.
  const groups = [];
  const groupOf = new Map(); // request seq → its group
  const push = (...steps) => groups.push(steps);
  let reconnecting = false;
  let kickedWithError = false;
  const ours = records.filter((r) => !r.runnerId || r.runnerId === runnerId).map((r) => ({ ...r, link: undefined }));
  for (const r of ours) {
    if (r.direction === "out" || r.event === "fault_dropped") {
      const event = r.direction === "out" ? r.event : r.payload.event;
      const payload = r.direction === "out" ? r.payload : r.payload.payload;
      if (RELAY_OWN.has(event)) continue;
      if (event === "error" && kickedWithError) {
        kickedWithError = false; // the kick step sends it
        continue;
      }
      if (r.direction === "out") correlator.add(r);
      const info = protocol && protocol.events[event];
      const typed = info && info.direction === "toRunner" && validate(info.schema, payload).length === 0;
      const step = { do: "emit", event };
      if (!typed) step.raw = true;
      const filled = substitute(payload, ctx);
      if (representable(filled)) step.payload = filled;
      else step.payload_json = JSON.stringify(filled);
      const group = [step];
      groups.push(group);
      groupOf.set(r.seq, group);
      continue;
    }
    if (r.direction === "in") {
      const request = correlator.add(r);
      if (request && groupOf.has(request.seq)) {
        groupOf.get(request.seq).push({ do: "expect", event: r.event, match: matchOf(r.payload, ctx) });
      } else if (r.event === "register_runner" && reconnecting) {
        push({ do: "expect", event: "register_runner", timeout_ms: RECONNECT_WAIT_MS });
        reconnecting = false;
      }
      continue;
    }
    switch (r.event) {
      case "fault_kick": {
        const step = { do: "kick" };
        if (r.payload && r.payload.error) {
          step.error = substitute(r.payload.error, ctx);
          kickedWithError = true;
        }
        push(step, { do: "expect", event: "disconnect", timeout_ms: RECONNECT_WAIT_MS });
        reconnecting = true;
        break;
      }
      case "fault_refuse":
        push({ do: "refuse", count: r.payload.count });
        break;
      case "fault_delay":
        push({ do: "delay", ms: r.payload.ms });
        break;
      case "fault_drop":
        push({ do: "drop", count: r.payload.count });
        break;
      case "relay_down":
        push({ do: "restart_relay", down_ms: r.payload.downMs, keep_state: Boolean(r.payload.keepState) });
        reconnecting = true;
        break;
      default:
        break;
    }
  }
  return groups.flat();
}

/// The scenario file's text.
export function scenarioToml({ name, description, runner, steps }) {
  const lines = [
    `# Recorded by the mock-relay inspector from runner ${runner.name || "?"} (${runner.version || "?"}, ${runner.platform || "?"}).`,
    "# It fixes what that runner did, so its level is pizzapi-runner.",
    `name = ${tomlString(name)}`,
    `level = "pizzapi-runner"`,
    `description = ${tomlString(description)}`,
  ];
  for (const step of steps) {
    lines.push("", "[[steps]]");
    for (const [key, value] of Object.entries(step)) lines.push(`${tomlKey(key)} = ${tomlValue(value)}`);
  }
  return `${lines.join("\n")}\n`;
}

function kebab(text) {
  return (
    text
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 60) || "recorded"
  );
}

export function initRecord(store) {
  const startButton = $("#record-start");
  const stopButton = $("#record-stop");
  const status = $("#record-status");
  let recording = null; // { from, to, runnerId, runner }

  const range = () => {
    if (!recording) return [];
    return store.records.filter((r) => r.seq >= recording.from && (recording.to === null || r.seq <= recording.to));
  };
  const update = () => {
    const exportable = recording !== null;
    $("#record-export").disabled = !exportable;
    $("#record-ndjson").disabled = !exportable;
    if (!recording) {
      status.textContent = "not recording";
      status.dataset.state = "idle";
      return;
    }
    const n = range().filter((r) => !r.runnerId || r.runnerId === recording.runnerId).length;
    status.dataset.state = recording.to === null ? "recording" : "stopped";
    status.textContent = `${recording.to === null ? "recording" : "recorded"} ${n} events of ${recording.runnerId.slice(0, 8)}`;
  };

  startButton.addEventListener("click", () => {
    const runner = store.runner();
    if (!runner) {
      status.textContent = "select a runner first";
      return;
    }
    recording = { from: store.lastSeq() + 1, to: null, runnerId: runner.runnerId, runner: { ...runner } };
    startButton.disabled = true;
    stopButton.disabled = false;
    update();
  });
  stopButton.addEventListener("click", () => {
    if (!recording) return;
    recording.to = store.lastSeq();
    startButton.disabled = false;
    stopButton.disabled = true;
    update();
  });
  store.on("record", () => {
    if (recording && recording.to === null) update();
  });

  $("#record-export").addEventListener("click", () => {
    if (!recording) return;
    const name = kebab($("#record-name").value || "recorded");
    const steps = scenarioSteps(range(), {
      runnerId: recording.runnerId,
      root: recording.runner.roots[0],
      protocol: store.protocol,
    });
    const description =
      $("#record-description").value.trim() ||
      `Recorded in the inspector: ${steps.filter((s) => s.do === "emit").map((s) => s.event).join(", ") || "no events"}.`;
    const text = scenarioToml({ name, description, runner: recording.runner, steps });
    $("#record-preview").textContent = text;
    $("#record-preview").hidden = false;
    download(`${name}.toml`, text, "application/toml");
  });
  $("#record-ndjson").addEventListener("click", () => {
    if (!recording) return;
    const text = range()
      .map((r) => JSON.stringify(maskSecrets({ ...r, link: undefined })))
      .join("\n");
    download(`${kebab($("#record-name").value || "recorded")}.ndjson`, text ? `${text}\n` : "", "application/x-ndjson");
  });
  update();
}
