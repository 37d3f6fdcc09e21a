// Pairs a request the relay sent with the runner's reply, the way the relay
// does: by requestId, by sessionId for spawns and kills, by terminalId for
// terminal commands, and by reply name for ping and the list commands.

const BY_SESSION = { new_session: ["session_ready", "session_error"], kill_session: ["session_killed", "session_error"] };
const BY_TERMINAL = {
  new_terminal: ["terminal_ready", "terminal_error"],
  kill_terminal: ["terminal_exit", "terminal_error"],
};
const BY_NAME = { ping: "pong", list_sessions: "sessions_list", list_terminals: "terminals_list" };

/// Events the relay sends that have no reply.
export const NO_REPLY = new Set(["runner_registered", "error", "restart", "terminal_input", "terminal_resize"]);

function requestKey(event, payload) {
  const p = payload && typeof payload === "object" ? payload : {};
  if (typeof p.requestId === "string" && p.requestId) return `req|${p.requestId}`;
  if (BY_SESSION[event] && typeof p.sessionId === "string") return `session|${p.sessionId}`;
  if (BY_TERMINAL[event] && typeof p.terminalId === "string") return `terminal|${p.terminalId}`;
  if (BY_NAME[event]) return `name|${BY_NAME[event]}`;
  return null;
}

function replyKeys(event, payload) {
  const p = payload && typeof payload === "object" ? payload : {};
  const keys = [];
  if (typeof p.requestId === "string" && p.requestId) keys.push(`req|${p.requestId}`);
  if (typeof p.sessionId === "string" && /^session_(ready|error|killed)$/.test(event)) {
    keys.push(`session|${p.sessionId}`);
  }
  if (typeof p.terminalId === "string" && /^terminal_(ready|error|exit)$/.test(event)) {
    keys.push(`terminal|${p.terminalId}`);
  }
  if (Object.values(BY_NAME).includes(event)) keys.push(`name|${event}`);
  return keys;
}

/// The key a request to `runnerId` would be answered under (null: none).
export function keyOf(runnerId, event, payload) {
  if (NO_REPLY.has(event)) return null;
  const key = requestKey(event, payload);
  return key && `${runnerId}|${key}`;
}

export class Correlator {
  constructor() {
    this.pending = new Map(); // key → request record
  }

  /// Looks at one record; links it with its peer (record.link = {peer,
  /// latencyMs, role}) and returns the peer record when it answers one.
  add(record) {
    if (record.direction === "out") {
      const key = keyOf(record.runnerId, record.event, record.payload);
      if (key) this.pending.set(key, record);
      if (this.pending.size > 10_000) this.pending.delete(this.pending.keys().next().value);
      return null;
    }
    if (record.direction !== "in") return null;
    for (const key of replyKeys(record.event, record.payload)) {
      const full = `${record.runnerId}|${key}`;
      const request = this.pending.get(full);
      if (!request) continue;
      this.pending.delete(full);
      const latencyMs = (record.atUs - request.atUs) / 1000;
      request.link = { peer: record.seq, latencyMs, role: "request" };
      record.link = { peer: request.seq, latencyMs, role: "reply" };
      return request;
    }
    return null;
  }
}
