// The send panel: any event the relay sends, with a payload editor checked
// against the event's JSON Schema, one-click common actions, and the reply
// beside the request.

import { request } from "./api.js";
import { NO_REPLY, keyOf } from "./correlate.js";
import { validate } from "./schema.js";
import { $, el, uuid } from "./util.js";

/// How long the panel waits for a reply before saying so.
const REPLY_WAIT_MS = 20_000;
/// Where the payload fixtures put their paths; replaced by the runner's root.
const FIXTURE_ROOTS = ["/home/dev/projects/pizzapi", "/home/dev/projects"];

/// Sends `event` with `payload` to a runner, unchecked (the relay's emit route).
export async function emit(runnerId, event, payload) {
  return request("POST", `/api/runners/${encodeURIComponent(runnerId)}/emit`, { event, payload });
}

/// Waits for the reply to a request sent after record `mark`; resolves to
/// the reply record, or null after `timeoutMs`.
export function waitReply(store, key, mark, timeoutMs = REPLY_WAIT_MS) {
  const answers = (record) => {
    if (record.seq <= mark || !record.link || record.link.role !== "reply") return false;
    const req = store.bySeq.get(record.link.peer);
    return req && req.seq > mark && keyOf(req.runnerId, req.event, req.payload) === key;
  };
  const found = store.records.find(answers);
  if (found) return Promise.resolve(found);
  return new Promise((resolve) => {
    const waiter = (record) => {
      if (!answers(record)) return;
      store.waiters.delete(waiter);
      clearTimeout(timer);
      resolve(record);
    };
    const timer = setTimeout(() => {
      store.waiters.delete(waiter);
      resolve(null);
    }, timeoutMs);
    store.waiters.add(waiter);
  });
}

function firstRoot(store) {
  const runner = store.runner();
  return (runner && runner.roots[0]) || "/";
}

/// The fixture of `event`, with fresh ids and the runner's root for paths.
function prefill(store, event) {
  const info = store.protocol && store.protocol.events[event];
  const payload = structuredClone((info && info.fixture) || {});
  const root = firstRoot(store);
  if ("requestId" in payload) payload.requestId = `req-${uuid().slice(0, 8)}`;
  if ("sessionId" in payload) {
    payload.sessionId = event === "new_session" ? uuid() : chosenSession(store) || payload.sessionId;
  }
  if ("terminalId" in payload) {
    payload.terminalId = event === "new_terminal" ? uuid() : store.terminalId || payload.terminalId;
  }
  if ("runnerId" in payload && store.selected) payload.runnerId = store.selected;
  for (const key of ["cwd", "path"]) {
    if (typeof payload[key] !== "string") continue;
    for (const prefix of FIXTURE_ROOTS) {
      if (payload[key].startsWith(prefix)) {
        payload[key] = root + payload[key].slice(prefix.length);
        break;
      }
    }
  }
  if (event === "new_session") {
    delete payload.skills;
    delete payload.model;
  }
  return payload;
}

function chosenSession(store) {
  const value = $("#quick-session").value;
  if (value) return value;
  const runner = store.runner();
  return runner && runner.sessions.length ? runner.sessions[runner.sessions.length - 1] : null;
}

export function initSend(store) {
  store.waiters = new Set();
  store.on("record", (record) => {
    for (const waiter of [...store.waiters]) waiter(record);
  });
  const select = $("#send-event");
  const editor = $("#send-payload");
  const raw = $("#send-raw");
  const errors = $("#send-errors");
  const button = $("#send-button");
  const reply = $("#send-reply");
  const replyHead = $("#send-reply-head");
  const spawned = [];

  function schemaOf(event) {
    const info = store.protocol && store.protocol.events[event];
    return info ? info.schema : null;
  }

  /// The payload if it parses (and, unless raw, fits the schema).
  function check() {
    let payload;
    try {
      payload = JSON.parse(editor.value);
    } catch (err) {
      errors.replaceChildren(el("li", {}, `not JSON: ${err.message}`));
      button.disabled = !raw.checked || !store.selected;
      return { ok: false };
    }
    const schema = schemaOf(select.value);
    const problems = schema && !raw.checked ? validate(schema, payload) : [];
    errors.replaceChildren(...problems.map((p) => el("li", {}, p)));
    editor.setAttribute("aria-invalid", String(problems.length > 0));
    button.disabled = !store.selected || problems.length > 0;
    return { ok: problems.length === 0, payload };
  }

  function load(event, payload) {
    select.value = event;
    editor.value = JSON.stringify(payload ?? prefill(store, event), null, 2);
    check();
  }

  async function send(event, payload) {
    const runnerId = store.selected;
    if (!runnerId) return null;
    const key = keyOf(runnerId, event, payload);
    const mark = store.lastSeq();
    replyHead.textContent = `${event} → ${runnerId}`;
    reply.dataset.state = "waiting";
    reply.textContent = key ? "waiting for the reply…" : "sent (this event has no reply)";
    try {
      await emit(runnerId, event, payload);
    } catch (err) {
      reply.dataset.state = "error";
      reply.textContent = `not sent: ${err.message}`;
      return null;
    }
    if (event === "new_session" && payload.sessionId) {
      spawned.push(payload.sessionId);
      refreshSessions();
    }
    if (!key) {
      reply.dataset.state = NO_REPLY.has(event) ? "sent" : "unknown";
      return null;
    }
    const answer = await waitReply(store, key, mark);
    if (!answer) {
      reply.dataset.state = "timeout";
      reply.textContent = `no reply within ${REPLY_WAIT_MS / 1000} s`;
      return null;
    }
    reply.dataset.state = "reply";
    reply.dataset.event = answer.event;
    replyHead.textContent = `${event} → ${answer.event} in ${answer.link.latencyMs.toFixed(1)} ms`;
    reply.textContent = JSON.stringify(answer.payload, null, 2);
    return answer;
  }

  function refreshSessions() {
    const runner = store.runner();
    const live = runner ? runner.sessions : [];
    const all = [...new Set([...live, ...spawned.filter((s) => live.includes(s))])];
    const current = $("#quick-session").value;
    $("#quick-session").replaceChildren(
      el("option", { value: "" }, all.length ? "latest session" : "no session"),
      ...all.map((s) => el("option", { value: s }, s)),
    );
    $("#quick-session").value = all.includes(current) ? current : "";
  }

  const quick = {
    spawn: () => ["new_session", { sessionId: uuid(), cwd: firstRoot(store) }],
    kill: () => ["kill_session", { sessionId: chosenSession(store) || "" }],
    "list-skills": () => ["list_skills", { requestId: `req-${uuid().slice(0, 8)}` }],
    "get-skill": () => {
      const runner = store.runner();
      const name = $("#quick-skill").value.trim() || (runner && runner.skills[0] && runner.skills[0].name) || "";
      return ["get_skill", { requestId: `req-${uuid().slice(0, 8)}`, name }];
    },
    "list-dir": () => {
      const root = firstRoot(store);
      return ["list_files", { requestId: `req-${uuid().slice(0, 8)}`, cwd: root, path: $("#quick-path").value.trim() || root }];
    },
    "read-file": () => [
      "read_file",
      { requestId: `req-${uuid().slice(0, 8)}`, cwd: firstRoot(store), path: $("#quick-path").value.trim() || "README.md" },
    ],
    "git-status": () => ["git_status", { requestId: `req-${uuid().slice(0, 8)}`, cwd: firstRoot(store) }],
    ping: () => ["ping", {}],
  };

  for (const button of document.querySelectorAll("[data-quick]")) {
    button.addEventListener("click", () => {
      const [event, payload] = quick[button.dataset.quick]();
      load(event, payload);
      send(event, payload);
    });
  }

  store.on("protocol", (protocol) => {
    const names = Object.entries(protocol.events)
      .filter(([, info]) => info.direction === "toRunner")
      .map(([name]) => name)
      .sort();
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    load(names.includes("list_skills") ? "list_skills" : names[0]);
  });
  store.on("runners", () => {
    refreshSessions();
    check();
  });
  store.on("select", () => {
    refreshSessions();
    check();
  });
  select.addEventListener("change", () => load(select.value));
  editor.addEventListener("input", check);
  raw.addEventListener("change", check);
  $("#send-reset").addEventListener("click", () => load(select.value));
  const submit = () => {
    const { ok, payload } = check();
    if (!store.selected) return;
    if (!ok && !raw.checked) return;
    let value = payload;
    if (value === undefined) value = editor.value; // raw: not JSON, sent as a string
    send(select.value, value);
  };
  button.addEventListener("click", submit);
  editor.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      submit();
    }
  });
}
