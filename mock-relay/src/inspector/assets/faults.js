// The faults panel: misbehave on purpose.

import { request } from "./api.js";
import { $ } from "./util.js";

function number(selector, fallback) {
  const n = Number($(selector).value);
  return Number.isFinite(n) && n >= 0 ? Math.floor(n) : fallback;
}

export function initFaults(store) {
  const status = $("#fault-status");
  const say = (text, state = "ok") => {
    status.textContent = text;
    status.dataset.state = state;
  };
  const run = async (label, path, body) => {
    try {
      await request("POST", path, body);
      say(`${label}: done`);
      return true;
    } catch (err) {
      say(`${label}: ${err.message}`, "error");
      return false;
    }
  };
  const runner = () => {
    if (!store.selected) say("select a runner first", "error");
    return store.selected;
  };

  $("#fault-kick").addEventListener("click", () => {
    const id = runner();
    if (id) run("kick", "/api/faults/kick", { runnerId: id });
  });
  $("#fault-kick-error").addEventListener("click", () => {
    const id = runner();
    const error = $("#fault-error").value.trim() || "kicked from the inspector";
    if (id) run("kick with an error", "/api/faults/kick", { runnerId: id, error });
  });
  $("#fault-drop").addEventListener("click", () => {
    const count = number("#fault-drop-count", 1);
    run(`drop the next ${count}`, "/api/faults/drop", { count });
  });
  $("#fault-refuse").addEventListener("click", () => {
    const count = number("#fault-refuse-count", 1);
    const message = $("#fault-refuse-message").value.trim();
    run(`refuse the next ${count}`, "/api/faults/refuse", message ? { count, message } : { count });
  });
  $("#fault-delay").addEventListener("click", () => {
    const ms = number("#fault-delay-ms", 0);
    run(ms ? `delay by ${ms} ms` : "no delay", "/api/faults/delay", { ms });
  });

  let countdown = 0;
  $("#fault-restart").addEventListener("click", async () => {
    const downMs = number("#fault-restart-ms", 2000);
    const keepState = $("#fault-restart-keep").checked;
    const button = $("#fault-restart");
    button.disabled = true;
    const ok = await run("restart", "/api/faults/restart", { downMs, keepState });
    if (!ok) {
      button.disabled = false;
      return;
    }
    const until = performance.now() + downMs;
    clearInterval(countdown);
    const tick = () => {
      const left = Math.max(0, until - performance.now());
      if (left > 0) say(`relay down — back in ${(left / 1000).toFixed(1)} s`, "down");
      else say("relay restarting… waiting for it", "down");
    };
    tick();
    countdown = setInterval(tick, 100);
    const done = (state) => {
      if (state !== "live" || performance.now() < until) return;
      clearInterval(countdown);
      say("relay back up");
      button.disabled = false;
      store.listeners.set("link", (store.listeners.get("link") || []).filter((f) => f !== done));
    };
    store.on("link", done);
  });
}
