// The inspector page: wires the live feed to the panels.

import { request, setToken, streamEvents } from "./api.js";
import { Correlator } from "./correlate.js";
import { $ } from "./util.js";
import { initRunners } from "./runners.js";
import { initTraffic } from "./traffic.js";
import { initSend } from "./send.js";
import { initTerminal } from "./terminal.js";
import { initFaults } from "./faults.js";
import { initRecord } from "./record.js";

/// How many records the page keeps (older ones leave the traffic view).
const KEEP_RECORDS = 20_000;

/// What every panel shares: the records, the runners, the selected runner.
const store = {
  records: [],
  bySeq: new Map(),
  runners: [],
  selected: null,
  protocol: null,
  /// runnerId → the last disconnect record's reason.
  disconnects: new Map(),
  correlator: new Correlator(),
  listeners: new Map(),
  on(kind, fn) {
    if (!this.listeners.has(kind)) this.listeners.set(kind, []);
    this.listeners.get(kind).push(fn);
  },
  emit(kind, value) {
    for (const fn of this.listeners.get(kind) || []) {
      try {
        fn(value);
      } catch (err) {
        console.error(`${kind} listener failed`, err);
      }
    }
  },
  runner() {
    return this.runners.find((r) => r.runnerId === this.selected) || null;
  },
  select(runnerId) {
    if (this.selected === runnerId) return;
    this.selected = runnerId;
    this.emit("select", runnerId);
  },
  lastSeq() {
    const last = this.records[this.records.length - 1];
    return last ? last.seq : 0;
  },
};

function addRecord(record) {
  if (store.bySeq.has(record.seq) && record.seq > 0) return;
  store.correlator.add(record);
  store.records.push(record);
  store.bySeq.set(record.seq, record);
  if (record.event === "disconnect" && record.runnerId) {
    store.disconnects.set(record.runnerId, record.payload && record.payload.reason);
  }
  if (store.records.length > KEEP_RECORDS) {
    const gone = store.records.splice(0, store.records.length - KEEP_RECORDS);
    for (const r of gone) store.bySeq.delete(r.seq);
  }
  store.emit("record", record);
}

function setRunners(list) {
  store.runners = Array.isArray(list) ? list : [];
  if (!store.runner() || !store.runner().connected) {
    const next = store.runners.find((r) => r.connected);
    if (next) store.select(next.runnerId);
  }
  store.emit("runners", store.runners);
}

function linkStatus(state, detail) {
  const status = $("#link-status");
  status.dataset.state = state;
  status.textContent =
    state === "live" ? "live" : state === "unauthorized" ? "needs the control token" : `reconnecting… (${detail})`;
  $("#token-form").hidden = state !== "unauthorized";
  store.emit("link", state);
}

async function loadProtocol() {
  try {
    store.protocol = await request("GET", "/api/protocol");
    store.emit("protocol", store.protocol);
  } catch (err) {
    console.error("protocol description unavailable", err);
  }
}

function start() {
  $("#origin").textContent = location.origin;
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setToken($("#token-input").value.trim());
    location.reload();
  });
  initRunners(store);
  initTraffic(store);
  initSend(store);
  initTerminal(store);
  initFaults(store);
  initRecord(store);
  loadProtocol();
  streamEvents({ onRecord: addRecord, onRunners: setRunners, onStatus: linkStatus });
  store.on("link", (state) => {
    if (state === "live" && !store.protocol) loadProtocol();
  });
  // Alt+1…6 jump to the panels.
  document.addEventListener("keydown", (e) => {
    if (!e.altKey || e.ctrlKey || e.metaKey) return;
    const panels = ["runners", "send", "terminal", "faults", "record", "traffic"];
    const i = Number(e.key) - 1;
    if (i >= 0 && i < panels.length) {
      e.preventDefault();
      const heading = document.querySelector(`#${panels[i]}-panel h2`);
      heading.focus();
      heading.scrollIntoView({ block: "nearest" });
    }
  });
}

start();
