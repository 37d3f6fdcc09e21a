// The traffic panel: the transcript, live, filtered, with each request
// linked to its reply and the whole payload on demand.

import { $, base64ToBytes, el, maskSecrets, oneLine, relayTime, shortId } from "./util.js";

/// Rows kept in the table; older ones leave it (the store keeps more).
const MAX_ROWS = 2_000;

const ARROWS = { in: "←", out: "→", connection: "·" };
const ALARMS = new Set(["handshake_refused", "disconnect", "send_failed", "fault_kick", "relay_down", "records_dropped"]);

function matches(filter, record) {
  if (filter.runner && record.runnerId !== filter.runner && record.runnerId) return false;
  if (filter.direction && record.direction !== filter.direction) return false;
  if (filter.event && !record.event.includes(filter.event)) return false;
  if (filter.text) {
    const haystack = `${record.event} ${JSON.stringify(record.payload)}`.toLowerCase();
    if (!haystack.includes(filter.text)) return false;
  }
  return true;
}

const TERMINAL_BYTES = new Set(["terminal_data", "terminal_input"]);
const decoder = new TextDecoder();

/// The one-line payload; terminal bytes are shown decoded as well.
function summary(record) {
  const p = record.payload;
  if (TERMINAL_BYTES.has(record.event) && p && typeof p.data === "string") {
    const bytes = base64ToBytes(p.data);
    if (bytes) return `${shortId(p.terminalId)} ${oneLine(decoder.decode(bytes), 120)}`;
  }
  return oneLine(maskSecrets(p));
}

function linkText(record) {
  if (!record.link) return "";
  const arrow = record.link.role === "request" ? "reply" : "reply to";
  return `${arrow} #${record.link.peer} · ${record.link.latencyMs.toFixed(1)} ms`;
}

export function initTraffic(store) {
  const body = $("#traffic tbody");
  const detail = $("#traffic-detail");
  const form = $("#traffic-filters");
  const runnerSelect = $("#filter-runner");
  const pause = $("#filter-pause");
  const filter = { runner: "", direction: "", event: "", text: "" };
  let held = 0;
  let chosen = null;

  function rowFor(record) {
    const classes = ["rec", record.direction];
    if (record.direction === "connection") classes.push("conn");
    if (ALARMS.has(record.event)) classes.push("alarm");
    if (record.seq === chosen) classes.push("chosen");
    const tr = el(
      "tr",
      {
        class: classes.join(" "),
        tabindex: "0",
        dataset: { seq: String(record.seq), event: record.event, direction: record.direction },
        onclick: () => choose(record.seq),
        onkeydown: (e) => {
          if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            choose(record.seq);
          } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
            e.preventDefault();
            const next = e.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
            if (next) next.focus();
          }
        },
      },
      el("td", { class: "num" }, record.seq),
      el("td", { class: "num" }, relayTime(record.atUs)),
      el("td", { class: "dir", title: record.direction }, ARROWS[record.direction] || "?"),
      el("td", { class: "mono", title: record.runnerId || "" }, shortId(record.runnerId)),
      el("td", { class: "event" }, record.event),
      el("td", { class: "payload mono" }, summary(record)),
      el("td", { class: "link", dataset: { linkFor: String(record.seq) } }, linkText(record)),
    );
    return tr;
  }

  function choose(seq) {
    chosen = seq;
    const record = store.bySeq.get(seq);
    for (const tr of body.querySelectorAll("tr.chosen, tr.peer")) tr.classList.remove("chosen", "peer");
    const tr = body.querySelector(`tr[data-seq="${seq}"]`);
    if (tr) tr.classList.add("chosen");
    if (!record) return;
    const peer = record.link && store.bySeq.get(record.link.peer);
    if (peer) {
      const ptr = body.querySelector(`tr[data-seq="${peer.seq}"]`);
      if (ptr) ptr.classList.add("peer");
    }
    const show = (r) =>
      `#${r.seq} ${ARROWS[r.direction]} ${r.event}  (runner ${r.runnerId || "-"}, socket ${r.socketId || "-"}, t=${relayTime(r.atUs)} s)\n` +
      JSON.stringify(maskSecrets(r.payload), null, 2);
    detail.textContent = show(record) + (peer ? `\n\n${linkText(record)}\n\n${show(peer)}` : "");
    detail.hidden = false;
  }

  function trim() {
    while (body.rows.length > MAX_ROWS) body.deleteRow(0);
  }

  function atBottom() {
    const wrap = body.closest(".traffic-wrap");
    return wrap.scrollHeight - wrap.scrollTop - wrap.clientHeight < 40;
  }

  function scrollDown(stick) {
    if (stick) {
      const wrap = body.closest(".traffic-wrap");
      wrap.scrollTop = wrap.scrollHeight;
    }
  }

  function rerender() {
    const stick = atBottom();
    const rows = [];
    for (let i = store.records.length - 1; i >= 0 && rows.length < MAX_ROWS; i--) {
      if (matches(filter, store.records[i])) rows.push(rowFor(store.records[i]));
    }
    body.replaceChildren(...rows.reverse());
    held = 0;
    $("#traffic-held").textContent = "";
    scrollDown(stick);
  }

  store.on("record", (record) => {
    if (record.link && record.link.role === "reply") {
      const cell = body.querySelector(`td[data-link-for="${record.link.peer}"]`);
      const request = store.bySeq.get(record.link.peer);
      if (cell && request) cell.textContent = linkText(request);
    }
    if (pause.checked) {
      held += 1;
      $("#traffic-held").textContent = `${held} new while paused`;
      return;
    }
    if (!matches(filter, record)) return;
    const stick = atBottom();
    body.append(rowFor(record));
    trim();
    scrollDown(stick);
  });

  store.on("runners", (runners) => {
    const current = runnerSelect.value;
    runnerSelect.replaceChildren(
      el("option", { value: "" }, "all runners"),
      ...runners.map((r) => el("option", { value: r.runnerId }, `${r.name || "?"} (${shortId(r.runnerId)})`)),
    );
    runnerSelect.value = runners.some((r) => r.runnerId === current) ? current : "";
  });

  form.addEventListener("input", () => {
    filter.runner = runnerSelect.value;
    filter.direction = $("#filter-direction").value;
    filter.event = $("#filter-event").value.trim();
    filter.text = $("#filter-text").value.trim().toLowerCase();
    if (!pause.checked) rerender();
  });
  form.addEventListener("submit", (e) => e.preventDefault());
  pause.addEventListener("change", () => {
    if (!pause.checked) rerender();
  });
  $("#traffic-clear").addEventListener("click", () => {
    body.replaceChildren();
    detail.hidden = true;
  });
}
