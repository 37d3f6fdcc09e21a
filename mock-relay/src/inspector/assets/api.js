// Talking to the relay: JSON requests to the control API and the live
// feed (GET /api/events, Server-Sent Events read with fetch so that the
// control token, when the relay has one, can go in a header).

const TOKEN_KEY = "mock-relay-control-token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const h = { Accept: "application/json", ...extra };
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/// A JSON request; resolves to the answer's JSON, rejects with ApiError.
export async function request(method, path, body) {
  const init = { method, headers: headers(), credentials: "same-origin" };
  if (body !== undefined) {
    init.headers = headers({ "Content-Type": "application/json" });
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `the relay cannot be reached (${err.message})`);
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const message = (json && json.error) || text || response.statusText;
    throw new ApiError(response.status, message);
  }
  return json;
}

/// Reads the live feed from `since` on, calling onRecord(record) and
/// onRunners(list); reconnects after a cut (relay restart) every `retryMs`,
/// resuming after the last record seen. onStatus(state, detail) reports
/// "live", "down" and "unauthorized".
export function streamEvents({ onRecord, onRunners, onStatus, retryMs = 500 }) {
  let next = 0;
  let stopped = false;
  async function once() {
    const response = await fetch(`/api/events?since=${next}`, {
      headers: headers({ Accept: "text/event-stream" }),
      credentials: "same-origin",
    });
    if (response.status === 401) {
      onStatus("unauthorized", "the control API needs its token");
      return false;
    }
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    onStatus("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length === 0) continue;
        let payload;
        try {
          payload = JSON.parse(data.join("\n"));
        } catch {
          continue;
        }
        if (event === "record") {
          if (payload.seq > 0) next = Math.max(next, payload.seq + 1);
          onRecord(payload);
        } else if (event === "runners") {
          onRunners(payload);
        }
      }
    }
    return true;
  }
  (async () => {
    while (!stopped) {
      try {
        const again = await once();
        if (!again) return;
        onStatus("down", "the feed ended");
      } catch (err) {
        onStatus("down", err.message);
      }
      await new Promise((r) => setTimeout(r, retryMs));
    }
  })();
  return { stop: () => (stopped = true), resume: () => next };
}
