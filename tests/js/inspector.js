// Drives the mock relay's inspector page in headless Chromium (Debian's
// /usr/bin/chromium through playwright-core) against a real relay and a
// real runner:
//
//   node inspector.js RELAY_URL OUT_DIR
//
// Screenshots go to OUT_DIR/*.png, the exported scenario and transcript to
// OUT_DIR/scenario/. The last line on stdout is a JSON report
// {ok, steps, scenario, ndjson, error?}; every wait is bounded.

"use strict";

const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { chromium } = require("playwright-core");

const [url, outDir] = process.argv.slice(2);
if (!url || !outDir) {
  console.error("usage: node inspector.js RELAY_URL OUT_DIR");
  process.exit(64);
}
const WAIT = 20_000;
const TOTAL = 240_000;
const steps = [];
const report = { ok: false, steps, scenario: null, ndjson: null };

function step(name, detail = {}) {
  steps.push({ name, ...detail });
  console.error(`inspector: ${name} ${JSON.stringify(detail)}`);
}

async function shot(page, name) {
  const file = path.join(outDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/// Rows of the traffic table as {seq, event, direction}.
function rows(page) {
  return page.$$eval("#traffic tbody tr", (trs) =>
    trs.map((tr) => ({ seq: Number(tr.dataset.seq), event: tr.dataset.event, direction: tr.dataset.direction })),
  );
}

async function waitReply(page, event) {
  await page.waitForFunction(
    (ev) => {
      const r = document.querySelector("#send-reply");
      return r.dataset.state === "reply" && r.dataset.event === ev;
    },
    event,
    { timeout: WAIT },
  );
  return JSON.parse(await page.textContent("#send-reply"));
}

async function main() {
  fs.mkdirSync(path.join(outDir, "scenario"), { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "inspector-chromium-"));
  // A fresh, empty profile (playwright passes it as --user-data-dir).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    timeout: WAIT,
    viewport: { width: 1360, height: 1000 },
    acceptDownloads: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(WAIT);
    const problems = [];
    // While the relay is down on purpose, the browser logs the refused
    // connections of the page's reconnection attempts: expected then.
    let outage = false;
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (msg) => {
      if (msg.type() !== "error") return;
      if (outage && /^Failed to load resource: net::ERR_/.test(msg.text())) return;
      problems.push(`console error: ${msg.text()}`);
    });
    // Nothing but the relay itself may be asked for anything.
    const origin = new URL(url).origin;
    const foreign = [];
    page.on("request", (req) => {
      if (!req.url().startsWith(origin) && !req.url().startsWith("blob:") && !req.url().startsWith("data:")) {
        foreign.push(req.url());
      }
    });

    await page.goto(url, { waitUntil: "load", timeout: WAIT });
    await page.waitForSelector('#link-status[data-state="live"]');
    const runner = await page.waitForSelector('.runner[data-connected="true"]');
    const runnerId = await runner.getAttribute("data-runner-id");
    step("runner appeared", { runnerId, screenshot: await shot(page, "01-runner") });

    await page.click("#record-start");
    await page.click('[data-quick="list-skills"]');
    const skills = await waitReply(page, "skills_list");
    step("list_skills answered", { skills: skills.skills.length, screenshot: await shot(page, "02-list-skills") });

    await page.click('[data-quick="spawn"]');
    const ready = await waitReply(page, "session_ready");
    await page.waitForSelector(`.runner[data-runner-id="${runnerId}"] dd >> text=${ready.sessionId.slice(0, 8)}`);
    step("session spawned", { sessionId: ready.sessionId });
    await page.selectOption("#quick-session", ready.sessionId);
    await page.click('[data-quick="kill"]');
    const killed = await waitReply(page, "session_killed");
    if (killed.sessionId !== ready.sessionId) throw new Error(`killed ${killed.sessionId}, not ${ready.sessionId}`);
    step("session killed", { screenshot: await shot(page, "03-session-killed") });

    // A request and its reply are linked, with the latency.
    const link = await page.textContent('#traffic tr[data-event="session_killed"] td.link');
    if (!/reply to #\d+ · [\d.]+ ms/.test(link)) throw new Error(`no link on the reply: ${link}`);
    await page.click('#traffic tr[data-event="kill_session"]');
    await page.waitForSelector("#traffic tr.peer");

    await page.click("#record-stop");
    const [toml] = await Promise.all([page.waitForEvent("download"), page.click("#record-export")]);
    report.scenario = path.join(outDir, "scenario", toml.suggestedFilename());
    await toml.saveAs(report.scenario);
    const [ndjson] = await Promise.all([page.waitForEvent("download"), page.click("#record-ndjson")]);
    report.ndjson = path.join(outDir, `${ndjson.suggestedFilename()}`);
    await ndjson.saveAs(report.ndjson);
    step("recording exported", { scenario: report.scenario, screenshot: await shot(page, "04-recorded") });

    await page.click("#term-open");
    await page.waitForSelector('#term-status[data-state="open"]');
    await page.focus("#term-screen");
    await page.keyboard.type("echo $((6*7))");
    await page.keyboard.press("Enter");
    await page.waitForFunction(
      () => /^42\s*$/m.test(document.querySelector("#term-screen").textContent),
      null,
      { timeout: WAIT },
    );
    step("terminal answered 42", { screenshot: await shot(page, "05-terminal") });

    const before = Math.max(0, ...(await rows(page)).map((r) => r.seq));
    await page.click("#fault-kick");
    await page.waitForFunction(
      ({ before }) => {
        const trs = [...document.querySelectorAll("#traffic tbody tr")];
        const after = trs.filter((tr) => Number(tr.dataset.seq) > before);
        const gone = after.find((tr) => tr.dataset.event === "disconnect");
        const back = gone && after.find((tr) => tr.dataset.event === "register_runner" && Number(tr.dataset.seq) > Number(gone.dataset.seq));
        return Boolean(gone && back && gone.classList.contains("alarm"));
      },
      { before },
      { timeout: WAIT },
    );
    await page.waitForSelector(`.runner[data-runner-id="${runnerId}"][data-connected="true"]`);
    step("kick: disconnect and re-registration seen", { screenshot: await shot(page, "06-kicked") });

    await page.emulateMedia({ colorScheme: "dark" });
    step("dark mode", { screenshot: await shot(page, "07-dark") });
    await page.setViewportSize({ width: 420, height: 900 });
    step("narrow, dark", { screenshot: await shot(page, "08-narrow-dark") });
    await page.emulateMedia({ colorScheme: "light" });
    step("narrow, light", { screenshot: await shot(page, "09-narrow-light") });
    // The picture for the README: the wide page after the kick, small.
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.screenshot({ path: path.join(outDir, "readme.jpg"), type: "jpeg", quality: 60, fullPage: true });

    // A relay restart: the countdown, then the feed and the runner come back.
    await page.fill("#fault-restart-ms", "1500");
    outage = true;
    await page.click("#fault-restart");
    await page.waitForSelector('#fault-status[data-state="down"]');
    const downShot = await shot(page, "10-relay-down");
    await page.waitForFunction(() => document.querySelector("#fault-status").textContent === "relay back up", null, {
      timeout: WAIT,
    });
    await page.waitForFunction(
      () => {
        const trs = [...document.querySelectorAll('#traffic tbody tr[data-event="relay_up"]')];
        const up = trs.length && Number(trs[trs.length - 1].dataset.seq);
        return up && [...document.querySelectorAll('#traffic tbody tr[data-event="register_runner"]')].some((tr) => Number(tr.dataset.seq) > up);
      },
      null,
      { timeout: WAIT },
    );
    outage = false;
    step("relay restarted with a countdown; the runner came back", { screenshot: downShot });

    if (foreign.length) throw new Error(`the page asked for other origins: ${foreign.join(", ")}`);
    if (problems.length) throw new Error(problems.join("; "));
    report.ok = true;
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

const deadline = setTimeout(() => {
  report.error = `not done within ${TOTAL / 1000} s`;
  console.log(JSON.stringify(report));
  process.exit(1);
}, TOTAL);

main()
  .catch((err) => {
    report.error = String(err && err.stack ? err.stack : err);
  })
  .finally(() => {
    clearTimeout(deadline);
    console.log(JSON.stringify(report));
    process.exit(report.ok ? 0 : 1);
  });
