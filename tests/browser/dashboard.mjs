#!/usr/bin/env node
// dashboard.mjs - drives fulcrum's dashboard (src/ctl/dashboard.html) in Debian's chromium.
//
//   node tests/browser/dashboard.mjs URL [SPEC_JSON]      (SPEC_JSON, or on stdin if absent)
//
// SPEC (every key optional):
//   expect        {"POOL": {"SERVER": "STATE", ...}, ...}  wait until each row shows this state
//                 (data-state); with "exact": true no other pools or rows may be shown
//   traffic       true: also wait until some server row shows a request rate above zero
//   click         {"pool": P, "server": S, "action": "drain", "state": "draining"}: click the
//                 button data-action=action in that row, then wait for data-state=state; a
//                 list of those clicks each in turn (what the page showed after each: "clicks")
//   click_error   {"pool": P, "server": S, "action": "drain", "body": TEXT}: click that button
//                 with the request body replaced by TEXT (to provoke an API error), then wait
//                 for the page's error banner; its text is in the result as "banner"
//   evaluate      [JS expression, ...]: evaluated in the page once it shows what "expect" asks
//                 for (the page's functions are globals); the values are in "evaluated"
//   then          {"signal": PATH, "expect": {...}, "exact": true}: after the steps above,
//                 create the file PATH (so the caller knows the page is ready, e.g. to reload
//                 fulcrum), then wait until the page shows the new expectation; the page is
//                 not reloaded in between. What it shows then is in the result as "later"
//   screenshot    a path: save a PNG of the page (after everything else)
//   credentials   {"username": U, "password": P}: HTTP Basic credentials for the page
//   expect_status a number: only load the page and check its HTTP status (e.g. 401)
//   timeout_ms    for each wait (default 20000)
//
// Prints one JSON object to stdout: {"ok": true, ...what was seen} and exits 0, or
// {"ok": false, "error": "..."} (the message also on stderr) and exits 1. Requests to any other
// origin than the page's, and uncaught page errors, are failures: the page is self-contained.
//
// The browser is Debian's /usr/bin/chromium (CHROMIUM overrides), never a downloaded one, with a
// fresh profile in a temporary directory that is removed at the end.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

function fail(message, extra = {}) {
  const err = new Error(message);
  err.extra = extra;
  throw err;
}

function readSpec() {
  if (process.argv[3]) return JSON.parse(process.argv[3]);
  if (process.stdin.isTTY) return {};
  const text = fs.readFileSync(0, "utf8").trim();
  return text ? JSON.parse(text) : {};
}

// A CSS attribute selector for any value: [name="value"] with " and \ escaped.
const attr = (name, value) => `[${name}="${String(value).replace(/["\\]/g, "\\$&")}"]`;

// Runs in the page: {pools: {pool: {server: state}}, error: banner text or null, header: {...}}.
function snapshot() {
  const pools = {};
  for (const block of document.querySelectorAll("[data-pool]")) {
    const rows = {};
    for (const row of block.querySelectorAll("tr[data-server]")) {
      rows[row.getAttribute("data-server")] = row.getAttribute("data-state");
    }
    pools[block.getAttribute("data-pool")] = rows;
  }
  const rates = [...document.querySelectorAll("tr[data-server]")]
    .map((r) => r.getAttribute("data-rps")).filter((v) => v !== null && v !== "").map(Number);
  const banner = document.querySelector('[data-role="error"]');
  const bannerText = document.querySelector('[data-role="error-text"]');
  const error = banner && banner.offsetParent !== null ? (bannerText || banner).textContent.trim() : null;
  const text = (id) => (document.getElementById(id) || {}).textContent || null;
  return { pools, rates, error, header: { version: text("version"), uptime: text("uptime"),
    clients: text("clients"), reloads: text("reloads"), live: text("live") } };
}

// Runs in the page: true when the page shows what spec asks for.
function matches(spec) {
  const find = (sel) => document.querySelector(sel);
  for (const [pool, servers] of Object.entries(spec.expect || {})) {
    const block = [...document.querySelectorAll("[data-pool]")].find((b) => b.getAttribute("data-pool") === pool);
    if (!block) return false;
    const rows = [...block.querySelectorAll("tr[data-server]")];
    for (const [server, state] of Object.entries(servers)) {
      const row = rows.find((r) => r.getAttribute("data-server") === server);
      if (!row || row.getAttribute("data-state") !== state) return false;
    }
    if (spec.exact && rows.length !== Object.keys(servers).length) return false;
  }
  if (spec.exact && spec.expect &&
      document.querySelectorAll("[data-pool]").length !== Object.keys(spec.expect).length) return false;
  if (spec.traffic && ![...document.querySelectorAll("tr[data-server]")]
    .some((r) => Number(r.getAttribute("data-rps") || 0) > 0)) return false;
  return !!find("[data-pool]") || !spec.expect;
}

async function main() {
  const url = process.argv[2];
  if (!url) fail("usage: dashboard.mjs URL [SPEC_JSON]");
  const spec = readSpec();
  const timeout = spec.timeout_ms || 20000;
  if (!fs.existsSync(CHROMIUM)) fail(`chromium not found at ${CHROMIUM} (apt-get install chromium)`);

  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "fulcrum-chromium-"));
  const result = { ok: false, url };
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 60000,
      viewport: { width: 1280, height: 800 },
      httpCredentials: spec.credentials || undefined,
    });
    const page = context.pages()[0] || await context.newPage();
    const origin = new URL(url).origin;
    const pageErrors = [], foreign = [], consoleErrors = [];
    page.on("pageerror", (e) => pageErrors.push(String(e && e.message || e)));
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    page.on("request", (r) => {
      const u = r.url();
      if (!u.startsWith("data:") && !u.startsWith("about:") && new URL(u).origin !== origin) foreign.push(u);
    });
    result.console_errors = consoleErrors;

    // A 401 without (right) credentials makes goto fail (net::ERR_INVALID_AUTH_CREDENTIALS)
    // rather than return it: the status is taken from the response event in that case.
    let documentStatus = null;
    page.on("response", (r) => { if (r.url() === url && documentStatus === null) documentStatus = r.status(); });
    let response = null;
    try {
      response = await page.goto(url, { timeout, waitUntil: "load" });
    } catch (e) {
      if (spec.expect_status === undefined || documentStatus === null) throw e;
      result.goto_error = String(e.message || e).split("\n")[0];
    }
    result.status = response ? response.status() : documentStatus;
    if (spec.expect_status !== undefined) {
      if (result.status !== spec.expect_status) {
        fail(`page answered ${result.status}, expected ${spec.expect_status}`, result);
      }
      result.ok = true;
      return result;
    }
    if (result.status !== 200) fail(`page answered ${result.status}, expected 200`, result);

    const wait = async (what, want) => {
      try {
        await page.waitForFunction(matches, want, { timeout, polling: 100 });
      } catch (e) {
        const seen = await page.evaluate(snapshot).catch(() => null);
        fail(`timed out after ${timeout} ms waiting for ${what}; the page shows ` +
             JSON.stringify(seen), { ...result, seen });
      }
    };
    await wait("the expected states" + (spec.traffic ? " and traffic" : ""), spec);
    result.before = await page.evaluate(snapshot);

    if (spec.evaluate) {
      result.evaluated = [];
      for (const expr of spec.evaluate) result.evaluated.push(await page.evaluate(expr));
    }

    // One click, or several in order; what the page showed after each is in result.clicks.
    result.clicks = [];
    for (const click of spec.click ? [].concat(spec.click) : []) {
      const { pool, server, action = "drain", state = "draining" } = click;
      const button = page.locator(`${attr("data-pool", pool)} tr${attr("data-server", server)} ` +
                                  `button${attr("data-action", action)}`);
      if (await button.count() !== 1) fail(`no ${action} button for ${pool}/${server}`, result);
      await button.click({ timeout });
      await wait(`${pool}/${server} to show ${state}`, { expect: { [pool]: { [server]: state } } });
      result.clicked = { pool, server, action, state };
      result.after = await page.evaluate(snapshot);
      result.clicks.push(result.after);
      if (result.after.error) fail(`the page shows an error: ${result.after.error}`, result);
    }

    if (spec.click_error) {
      const { pool, server, action = "drain", body } = spec.click_error;
      await page.route("**/api/pools/**", (route) =>
        route.request().method() === "POST" ? route.continue({ postData: body }) : route.continue());
      const button = page.locator(`${attr("data-pool", pool)} tr${attr("data-server", server)} ` +
                                  `button${attr("data-action", action)}`);
      if (await button.count() !== 1) fail(`no ${action} button for ${pool}/${server}`, result);
      await button.click({ timeout });
      try {
        await page.waitForFunction(() => {
          const b = document.querySelector('[data-role="error"]');
          return b && b.offsetParent !== null && b.textContent.trim() !== "";
        }, null, { timeout, polling: 100 });
      } catch (e) {
        fail(`no error banner after the ${action} click with body ${body}`, result);
      }
      await page.unroute("**/api/pools/**");
      result.banner = (await page.evaluate(snapshot)).error;
    }

    if (spec.then) {
      fs.writeFileSync(spec.then.signal, "ready\n");
      await wait("the states after the signal", spec.then);
      result.later = await page.evaluate(snapshot);
    }

    if (spec.screenshot) {
      // Two more refreshes, so the rates on the picture are of an interval with traffic.
      await page.waitForTimeout(2200);
      await page.screenshot({ path: spec.screenshot });
      result.screenshot = spec.screenshot;
    }
    if (pageErrors.length) fail("uncaught errors in the page: " + pageErrors.join("; "), result);
    if (foreign.length) fail("the page loaded from other origins: " + foreign.join(", "), result);
    result.ok = true;
    return result;
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

const guard = setTimeout(() => {
  process.stdout.write(JSON.stringify({ ok: false, error: "dashboard.mjs: overall time limit" }) + "\n");
  process.exit(1);
}, 180000);
guard.unref();

main().then((result) => {
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(0);
}, (e) => {
  const out = { ...(e.extra || {}), ok: false, error: e.message || String(e) };
  process.stdout.write(JSON.stringify(out) + "\n");
  process.stderr.write("dashboard.mjs: " + out.error + "\n");
  process.exit(1);
});
