// The terminal panel: opens a terminal on the selected runner, shows its
// output live and sends what you type.

import { keyOf } from "./correlate.js";
import { Screen } from "./screen.js";
import { emit, waitReply } from "./send.js";
import { $, base64ToBytes, utf8ToBase64, uuid } from "./util.js";

const ROWS = 24;
const MIN_COLS = 40;
const MAX_COLS = 160;

const KEYS = {
  Enter: "\r",
  Backspace: "\x7f",
  Tab: "\t",
  Escape: "\x1b",
  ArrowUp: "\x1b[A",
  ArrowDown: "\x1b[B",
  ArrowRight: "\x1b[C",
  ArrowLeft: "\x1b[D",
  Home: "\x1b[H",
  End: "\x1b[F",
  Insert: "\x1b[2~",
  Delete: "\x1b[3~",
  PageUp: "\x1b[5~",
  PageDown: "\x1b[6~",
};

/// What a key press sends to the shell, or null to let the page have it.
function translate(e) {
  if (e.metaKey) return null;
  if (e.key === "Tab" && e.shiftKey) return null; // leaves the terminal
  if (e.altKey && /^[1-9]$/.test(e.key)) return null; // panel shortcuts
  if (e.ctrlKey && !e.altKey && e.key.length === 1) {
    const c = e.key.toUpperCase().charCodeAt(0);
    if (c >= 64 && c <= 95) return String.fromCharCode(c - 64);
    return null;
  }
  if (KEYS[e.key]) return KEYS[e.key];
  if (e.key.length === 1 || [...e.key].length === 1) return e.altKey ? `\x1b${e.key}` : e.key;
  return null;
}

function fitCols(pre) {
  const probe = document.createElement("span");
  probe.textContent = "0".repeat(10);
  pre.append(probe);
  const width = probe.getBoundingClientRect().width / 10 || 8;
  probe.remove();
  const style = getComputedStyle(pre);
  const inner = pre.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return Math.max(MIN_COLS, Math.min(MAX_COLS, Math.floor(inner / width)));
}

export function initTerminal(store) {
  const pre = $("#term-screen");
  const status = $("#term-status");
  const openButton = $("#term-open");
  const closeButton = $("#term-close");
  let term = null; // { id, runnerId, screen, decoder, queue, sending }
  let frame = 0;

  const setStatus = (text, state) => {
    status.textContent = text;
    status.dataset.state = state;
  };

  function paint() {
    frame = 0;
    if (term) term.screen.render(pre);
  }
  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(paint);
  };

  async function open() {
    const runnerId = store.selected;
    if (!runnerId) return;
    const id = uuid();
    const cols = fitCols(pre);
    term = { id, runnerId, screen: new Screen(cols, ROWS), decoder: new TextDecoder(), queue: "", sending: false };
    store.terminalId = id;
    pre.dataset.terminalId = id;
    setStatus("opening…", "opening");
    openButton.disabled = true;
    const payload = { terminalId: id, cols, rows: ROWS };
    const mark = store.lastSeq();
    try {
      await emit(runnerId, "new_terminal", payload);
    } catch (err) {
      setStatus(`not opened: ${err.message}`, "error");
      openButton.disabled = false;
      return;
    }
    const reply = await waitReply(store, keyOf(runnerId, "new_terminal", payload), mark);
    if (!term || term.id !== id) return;
    if (!reply) setStatus("no answer from the runner", "error");
    else if (reply.event === "terminal_error") setStatus(`refused: ${reply.payload.message}`, "error");
    else {
      setStatus(`${cols}×${ROWS} on ${runnerId.slice(0, 8)} — type here; Shift+Tab leaves`, "open");
      closeButton.disabled = false;
      pre.focus();
    }
    if (!reply || reply.event === "terminal_error") openButton.disabled = false;
    schedule();
  }

  async function flush() {
    if (!term || term.sending || !term.queue) return;
    const { id, runnerId } = term;
    const data = term.queue;
    term.queue = "";
    term.sending = true;
    try {
      await emit(runnerId, "terminal_input", { terminalId: id, data: utf8ToBase64(data) });
    } catch (err) {
      setStatus(`input not sent: ${err.message}`, "error");
    } finally {
      if (term && term.id === id) {
        term.sending = false;
        flush();
      }
    }
  }

  function type(text) {
    if (!term || closeButton.disabled) return;
    term.queue += text;
    flush();
  }

  async function close() {
    if (!term) return;
    const { id, runnerId } = term;
    closeButton.disabled = true;
    try {
      await emit(runnerId, "kill_terminal", { terminalId: id });
    } catch (err) {
      setStatus(`close failed: ${err.message}`, "error");
    }
  }

  store.on("record", (record) => {
    if (!term || record.runnerId !== term.runnerId || record.direction !== "in") return;
    const p = record.payload || {};
    if (p.terminalId !== term.id) return;
    if (record.event === "terminal_data") {
      const bytes = base64ToBytes(p.data || "");
      if (bytes) term.screen.write(term.decoder.decode(bytes, { stream: true }));
      schedule();
    } else if (record.event === "terminal_exit") {
      setStatus(`exited with code ${p.exitCode}`, "exited");
      closeButton.disabled = true;
      openButton.disabled = false;
    }
  });
  // A terminal outlives its runner's reconnection: say so, and carry on.
  let openStatus = "";
  store.on("runners", () => {
    const runner = term && store.runners.find((r) => r.runnerId === term.runnerId);
    if (term && runner && !closeButton.disabled) {
      if (!runner.connected && status.dataset.state === "open") {
        openStatus = status.textContent;
        setStatus("the runner is disconnected; its terminal resumes when it reconnects", "waiting");
      } else if (runner.connected && status.dataset.state === "waiting") {
        setStatus(openStatus, "open");
      }
    }
    if (!term) openButton.disabled = !store.selected;
  });

  pre.addEventListener("keydown", (e) => {
    const data = translate(e);
    if (data === null) return;
    e.preventDefault();
    type(data);
  });
  pre.addEventListener("paste", (e) => {
    e.preventDefault();
    type(e.clipboardData.getData("text").replace(/\r?\n/g, "\r"));
  });
  openButton.addEventListener("click", open);
  closeButton.addEventListener("click", close);
}
