// The runners panel: who is connected, what they run, and which one the
// other panels act on.

import { $, el, relayTime, shortId } from "./util.js";

function since(runner) {
  if (!runner.connectedAtMs) return "";
  return new Date(runner.connectedAtMs).toLocaleTimeString();
}

function heartbeat(runner) {
  const hb = runner.lastHeartbeat;
  if (!hb) return "none yet";
  const parts = [];
  if (hb.uptimeMs !== undefined) parts.push(`up ${Math.round(hb.uptimeMs / 1000)} s`);
  if (hb.ts) parts.push(`at ${new Date(hb.ts).toLocaleTimeString()}`);
  return parts.join(", ") || "received";
}

function terminals(runner) {
  const hb = runner.lastHeartbeat;
  const list = hb && Array.isArray(hb.terminals) ? hb.terminals : [];
  return list.length ? list.map(shortId).join(", ") : "none";
}

function row(store, runner) {
  const selected = runner.runnerId === store.selected;
  const reason = store.disconnects.get(runner.runnerId);
  const id = `runner-${runner.runnerId}`;
  return el(
    "li",
    {
      class: `runner${runner.connected ? "" : " gone"}${selected ? " selected" : ""}`,
      dataset: { runnerId: runner.runnerId, connected: String(runner.connected) },
    },
    el(
      "label",
      { class: "runner-head", for: id },
      el("input", {
        type: "radio",
        name: "runner",
        id,
        value: runner.runnerId,
        checked: selected,
        onchange: () => store.select(runner.runnerId),
      }),
      el("strong", {}, runner.name || "(no name)"),
      el("span", { class: `badge ${runner.connected ? "ok" : "bad"}` }, runner.connected ? "connected" : "disconnected"),
    ),
    el(
      "dl",
      {},
      el("dt", {}, "id"),
      el("dd", { class: "mono" }, runner.runnerId),
      el("dt", {}, "roots"),
      el("dd", { class: "mono" }, runner.roots.length ? runner.roots.join(", ") : "(unscoped)"),
      el("dt", {}, "version"),
      el("dd", {}, `${runner.version || "?"} on ${runner.platform || "?"}`),
      el("dt", {}, runner.connected ? "connected since" : "last connected"),
      el("dd", {}, since(runner)),
      el("dt", {}, "last heartbeat"),
      el("dd", {}, heartbeat(runner)),
      el("dt", {}, "sessions"),
      el("dd", { class: "mono" }, runner.sessions.length ? runner.sessions.map(shortId).join(", ") : "none"),
      el("dt", {}, "terminals"),
      el("dd", { class: "mono" }, terminals(runner)),
      !runner.connected && el("dt", {}, "reason"),
      !runner.connected && el("dd", { class: "reason" }, reason || "unknown"),
    ),
  );
}

export function initRunners(store) {
  const list = $("#runners");
  const render = () => {
    const focused = document.activeElement && document.activeElement.name === "runner";
    list.replaceChildren(...store.runners.map((r) => row(store, r)));
    $("#runners-empty").hidden = store.runners.length > 0;
    $("#relay-clock").textContent = `relay time ${relayTime(store.records.at(-1)?.atUs || 0)} s`;
    if (focused) {
      const checked = list.querySelector("input:checked");
      if (checked) checked.focus();
    }
  };
  store.on("runners", render);
  store.on("select", render);
}
