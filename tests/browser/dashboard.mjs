// Browser test of the dashboard (issues 7 and 19): headless Debian Chromium driven by
// playwright-core against `covid-etl serve` over three databases: the fixtures, the real
// snapshots in ../shared/data (skipped with the reason printed when absent) and an empty one.
//
//   node tests/browser/dashboard.mjs      (tests/browser/run.sh installs what it needs)
//
// Builds nothing: it runs the binary at $COVID_ETL_BIN (default target/debug/covid-etl).
// It loads the fixtures with `covid-etl run` (plus one failing run, so both statuses show),
// starts `covid-etl serve` on a free 127.0.0.1 port and checks, in a desktop and a phone
// viewport:
//   - the six charts each hold 60 points (the fixtures' merged days), in uPlot's data and in
//     the page's data-points attributes;
//   - the totals shown equal the store's latest record (read with `covid-etl export`);
//   - the executions panel shows each run's outcome (loaded, failed, dry run with "would"
//     counts), the failure's cause, and a run's steps when its row is selected;
//   - the stale-data banner (the fixtures end 2020-04-29); value axes from zero, axis titles;
//   - an invalid URL parameter (?from=2020-02-30) is reported, and the whole range shown;
//   - weekly and monthly sums as charts, and their table newest first;
//   - the date-range control narrows the charts (2020-04-01..2020-04-29 → 29 points) and a
//     reversed range is refused;
//   - no request leaves 127.0.0.1 (the page works offline) and nothing is logged as an error;
//   - the full-page screenshots (target/browser/*.png) are not blank: the PNG is decoded here
//     and must have many distinct colours and enough non-background pixels;
//   - over the real snapshots: the recovered line has a gap from 2020-12-14 (JHU stopped
//     reporting; no fall to 0, no -6.3M bar); its desktop screenshot becomes docs/dashboard.png;
//   - over an empty database: a message that says how to load data, no empty chart frames.
// Exits 1 on the first failed check; the whole run is bounded by a 300 s timer.

import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { inflateSync } from "node:zlib";
import { chromium } from "playwright-core";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = resolve(ROOT, process.env.COVID_ETL_BIN || "target/debug/covid-etl");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const OUT = resolve(ROOT, process.env.COVID_ETL_SCREENSHOTS || "target/browser");
const EXPECTED_POINTS = 60;
const CHARTS = ["cases", "deaths", "recovered"].flatMap((m) => [`${m}-cumulative`, `${m}-daily`]);
// (The two period charts hold one bar per week or month, checked apart.)

let passed = 0;
const servers = [];
let browser = null;
const work = mkdtempSync(join(tmpdir(), "covid-etl-browser-"));

function cleanup() {
  for (const s of servers) if (s.exitCode === null) s.kill("SIGTERM");
  rmSync(work, { recursive: true, force: true });
}

function fail(message) {
  console.error(`not ok - ${message}`);
  console.log(`dashboard: ${passed} passed, 1 failed`);
  cleanup();
  process.exit(1);
}

function check(condition, message, detail = "") {
  if (!condition) fail(detail ? `${message}: ${detail}` : message);
  passed += 1;
  console.log(`ok - ${message}`);
}

const deadline = setTimeout(() => fail("timed out after 300 s"), 300_000);
deadline.unref();

function cli(args, { allowFailure = false } = {}) {
  const r = spawnSync(BIN, args, { cwd: ROOT, encoding: "utf8" });
  if (r.error) fail(`cannot run ${BIN}: ${r.error.message} (build it: cargo build --bin covid-etl)`);
  if (r.status !== 0 && !allowFailure) fail(`covid-etl ${args.join(" ")} exited ${r.status}:\n${r.stderr}`);
  return r;
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

let serverLog = "";

async function startServer(db) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = spawn(BIN, ["serve", "--db", db, "--addr", `127.0.0.1:${port}`], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  servers.push(server);
  server.stdout.on("data", (d) => (serverLog += d));
  server.stderr.on("data", (d) => (serverLog += d));
  await waitForServer(server, base);
  return base;
}

async function waitForServer(server, base) {
  const until = Date.now() + 30_000;
  let last = "";
  while (Date.now() < until) {
    if (server.exitCode !== null) fail(`covid-etl serve exited ${server.exitCode}:\n${serverLog}`);
    try {
      const r = await fetch(`${base}/api/series`, { signal: AbortSignal.timeout(2000) });
      if (r.ok) return;
      last = `HTTP ${r.status}`;
    } catch (e) {
      last = e.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  fail(`covid-etl serve did not answer within 30 s (${last}):\n${serverLog}`);
}

// --- PNG decoding (8-bit RGB/RGBA, non-interlaced: what Chromium writes) ----------------------
function decodePng(buf) {
  const sig = "89504e470d0a1a0a";
  if (buf.subarray(0, 8).toString("hex") !== sig) throw new Error("not a PNG");
  let off = 8;
  let width = 0, height = 0, colorType = 0, bitDepth = 0, interlace = 0;
  const idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString("ascii", off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      bitDepth = data[8];
      colorType = data[9];
      interlace = data[12];
    } else if (type === "IDAT") idat.push(data);
    else if (type === "IEND") break;
    off += 12 + len;
  }
  const channels = { 2: 3, 6: 4 }[colorType];
  if (bitDepth !== 8 || !channels || interlace) {
    throw new Error(`unsupported PNG: depth ${bitDepth}, colour type ${colorType}, interlace ${interlace}`);
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const px = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = px.subarray(y * stride, (y + 1) * stride);
    const prev = y ? px.subarray((y - 1) * stride, y * stride) : Buffer.alloc(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? row[i - channels] : 0;
      const b = prev[i];
      const c = i >= channels ? prev[i - channels] : 0;
      let v = line[i];
      if (filter === 1) v += a;
      else if (filter === 2) v += b;
      else if (filter === 3) v += (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (filter !== 0) throw new Error(`bad PNG filter ${filter}`);
      row[i] = v & 0xff;
    }
  }
  return { width, height, channels, px };
}

function imageStats(png) {
  const { width, height, channels, px } = png;
  const counts = new Map();
  for (let i = 0; i < width * height; i++) {
    const o = i * channels;
    const key = (px[o] << 16) | (px[o + 1] << 8) | px[o + 2];
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const background = Math.max(...counts.values());
  return { width, height, distinct: counts.size, foreground: 1 - background / (width * height) };
}

async function screenshotCheck(page, name) {
  mkdirSync(OUT, { recursive: true });
  const path = join(OUT, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  const stats = imageStats(decodePng(readFileSync(path)));
  check(
    stats.distinct >= 64 && stats.foreground >= 0.05,
    `${name} screenshot is not blank (${path})`,
    `${stats.width}x${stats.height}, ${stats.distinct} colours, ${(stats.foreground * 100).toFixed(1)}% non-background`,
  );
  console.log(`   ${stats.width}x${stats.height} px, ${stats.distinct} distinct colours, ${(stats.foreground * 100).toFixed(1)}% non-background`);
}

// --- the fixture database and the server ----------------------------------------------------
const db = join(work, "dashboard.db");
cli(["run", "--db", db, "--nyt", "fixtures/nyt/us.csv", "--jhu", "fixtures/jhu/combined.csv"]);
const failed = cli(
  ["run", "--db", db, "--nyt", "fixtures/nyt/negative-count.csv", "--jhu", "fixtures/jhu/combined.csv"],
  { allowFailure: true },
);
check(failed.status === 1, "the failing fixture run exits 1", `exit ${failed.status}`);
cli(["run", "--db", db, "--dry-run", "--nyt", "fixtures/nyt/us-revised.csv", "--jhu", "fixtures/jhu/combined.csv"]);
const exported = JSON.parse(cli(["export", "--db", db, "--json"]).stdout);
check(exported.length === EXPECTED_POINTS, `the store holds ${EXPECTED_POINTS} days`, `${exported.length}`);
const latest = exported[exported.length - 1];
const base = await startServer(db);

// --- the browser ------------------------------------------------------------------------------
const started = Date.now();
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
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
} catch (e) {
  fail(`cannot start ${CHROMIUM}: ${e.message}`);
}

async function openPage(viewport, name, origin = base, path = "/") {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const problems = [];
  // Offline: anything not served by our server is refused and reported.
  await page.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith(origin + "/") || url.startsWith("data:")) return route.continue();
    problems.push(`request outside the server: ${url}`);
    return route.abort();
  });
  page.on("console", (m) => {
    // A 400 the page asked for on purpose (a bad URL parameter) is logged by Chromium.
    if (m.type() === "error" && /status of 400/.test(m.text()) && path !== "/") return;
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  const response = await page.goto(`${origin}${path}`, { waitUntil: "load" });
  check(response.ok(), `${name}: GET ${path} answers 200`, `${response.status()}`);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 15_000 }).catch(async () => {
    const err = await page.locator("#error").textContent();
    fail(`${name}: the dashboard did not become ready: ${err} ${problems.join("; ")}`);
  });
  return { context, page, problems };
}

async function chartPoints(page) {
  return page.evaluate((names) => {
    const out = {};
    for (const n of names) {
      const el = document.querySelector(`[data-chart="${n}"]`);
      const u = window.covidDashboard.charts[n];
      const canvas = el.querySelector("canvas");
      out[n] = {
        attr: Number(el.dataset.points),
        data: u ? u.data[0].length : -1,
        values: u ? u.data[1].length : -1,
        canvas: canvas ? canvas.width * canvas.height : 0,
      };
    }
    return out;
  }, CHARTS);
}

function checkPoints(points, expected, name) {
  for (const chart of CHARTS) {
    const p = points[chart];
    check(
      p.attr === expected && p.data === expected && p.values === expected && p.canvas > 0,
      `${name}: chart ${chart} holds ${expected} points`,
      JSON.stringify(p),
    );
  }
}

// Every chart's value axis starts at zero (or below, for revisions) and both axes have a title.
async function checkAxes(page, name) {
  const axes = await page.evaluate(() =>
    Object.entries(window.covidDashboard.charts).map(([n, u]) => ({
      n, min: u.scales.y.min, x: u.axes[0].label, y: u.axes[1].label,
    })),
  );
  const bad = axes.filter((a) => !(a.min <= 0) || !a.x || !a.y);
  check(axes.length === 8 && bad.length === 0, `${name}: 8 charts, value axes from zero, axis titles`, JSON.stringify(bad.length ? bad : axes));
}

const fmt = new Intl.NumberFormat("en-US");

// Desktop.
{
  const { context, page, problems } = await openPage({ width: 1280, height: 900 }, "desktop");
  checkPoints(await chartPoints(page), EXPECTED_POINTS, "desktop");
  await checkAxes(page, "desktop");

  for (const key of ["cases", "deaths", "recovered"]) {
    const el = page.locator(`#total-${key}`);
    const value = await el.getAttribute("data-value");
    const text = (await el.textContent()).trim();
    const want = latest[key];
    check(
      value === String(want) && text === fmt.format(want),
      `desktop: total ${key} shows the store's latest (${latest.date}: ${want})`,
      `data-value ${value}, text "${text}"`,
    );
  }
  const shownDate = (await page.locator("#latest-date").textContent()).trim();
  check(shownDate === latest.date, "desktop: the latest date shown is the store's", shownDate);
  const stale = page.locator("#stale");
  const staleText = (await stale.textContent()).trim();
  check(
    (await stale.isVisible()) && staleText.startsWith(`Stale data: the newest stored day is ${latest.date}, `),
    "desktop: a banner says the data is stale",
    staleText,
  );

  const outcomes = await page.locator("#executions tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.outcome));
  check(
    JSON.stringify(outcomes) === JSON.stringify(["DRY_RUN", "FAILED", "LOADED"]),
    "desktop: the executions panel lists the dry run, the failed and the loading run, newest first",
    JSON.stringify(outcomes),
  );
  const badges = await page.locator("#executions tbody .status").allTextContents();
  check(badges.join(",") === "dry run,failed,loaded", "desktop: outcomes are shown in words", badges.join(","));
  const loadCells = await page.locator('#executions tbody tr[data-outcome="LOADED"] td.num').allTextContents();
  check(loadCells.slice(1).join(",") === "60,0,0", "desktop: the loading run shows 60 inserted, 0 updated, 0 unchanged", loadCells.join(","));
  const dryCells = await page.locator('#executions tbody tr[data-outcome="DRY_RUN"] td.num').allTextContents();
  check(dryCells.slice(1).join(",") === "(would 0),(would 2),58", "desktop: the dry run's counts are what it would write", dryCells.join(","));
  const cause = (await page.locator('#executions tbody tr[data-outcome="FAILED"] td.cause').textContent()).trim();
  check(/^ExtractNyt: DataQualityError — .*nyt line \d+ column "(cases|deaths)"/.test(cause), "desktop: a failed run shows its state, error and cause", cause);

  await page.click('#executions tbody tr[data-outcome="FAILED"]');
  await page.waitForFunction(() => window.covidDashboard.detail && document.querySelector("#execution-detail table"));
  const steps = await page.locator("#execution-detail table tr[data-status]").evaluateAll((rows) =>
    rows.map((r) => `${r.cells[0].textContent}:${r.dataset.status}`),
  );
  // A failing step ends the execution there (no Catch, so a redrive reruns it): the detail
  // shows the failed step and the Parallel around it.
  check(steps.includes("ExtractNyt:FAILED") && steps.includes("Extract:FAILED"), "desktop: selecting a run shows its steps", steps.join(" "));

  const periods = await page.locator("#periods tbody tr").evaluateAll((rows) => rows.map((r) => r.cells[0].textContent));
  check(periods.length === 10 && periods[0] > periods[9], "desktop: the weekly table has the fixtures' 10 ISO weeks, newest first", periods.join(","));

  await screenshotCheck(page, "dashboard-desktop");

  // The date-range control.
  await page.fill("#from", "2020-04-01");
  await page.fill("#to", "2020-04-29");
  await page.click("#apply");
  await page.waitForFunction(() => document.body.dataset.state === "ready" && window.covidDashboard.series.count === 29);
  checkPoints(await chartPoints(page), 29, "range 2020-04-01..2020-04-29");
  check(new URL(page.url()).search === "?from=2020-04-01&to=2020-04-29", "range: the URL keeps the range", page.url());
  const stillLatest = await page.locator("#total-cases").getAttribute("data-value");
  check(stillLatest === String(latest.cases), "range: the totals still show the latest day", stillLatest);

  await page.click('.presets button[data-days="30"]');
  await page.waitForFunction(() => document.body.dataset.state === "ready" && window.covidDashboard.series.count === 30);
  checkPoints(await chartPoints(page), 30, "preset 30 days");
  await checkAxes(page, "preset 30 days");

  await page.fill("#from", "2020-04-20");
  await page.fill("#to", "2020-04-10");
  await page.click("#apply");
  const error = (await page.locator("#error").textContent()).trim();
  check(/after/.test(error) && (await page.locator("#error").isVisible()), "range: a reversed range is refused with a message", error);

  check(problems.length === 0, "desktop: no console errors and no request outside 127.0.0.1", problems.join("; "));
  await context.close();
}

// A link with an impossible date: reported, and the whole range shown.
{
  const { context, page, problems } = await openPage({ width: 1280, height: 900 }, "bad link", base, "/?from=2020-02-30");
  const error = (await page.locator("#error").textContent()).trim();
  check(
    (await page.locator("#error").isVisible()) && error.includes('"2020-02-30"') && error.startsWith("The link's range was ignored"),
    "bad link: ?from=2020-02-30 is reported",
    error,
  );
  checkPoints(await chartPoints(page), EXPECTED_POINTS, "bad link");
  check(problems.length === 0, "bad link: nothing else logged", problems.join("; "));
  await context.close();
}

// Phone.
{
  const { context, page, problems } = await openPage({ width: 390, height: 844 }, "phone");
  checkPoints(await chartPoints(page), EXPECTED_POINTS, "phone");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, "phone: the page does not scroll sideways", `${overflow} px too wide`);
  const chartWidth = await page.evaluate(() => window.covidDashboard.charts["cases-cumulative"].width);
  check(chartWidth <= 390 && chartWidth >= 260, "phone: charts fit the screen", `${chartWidth} px`);
  const causeBox = await page.locator('#executions tbody tr[data-outcome="FAILED"] td.cause').boundingBox();
  check(causeBox && causeBox.x >= 0 && causeBox.x + causeBox.width <= 390, "phone: the failed state and cause are on screen", JSON.stringify(causeBox));
  await screenshotCheck(page, "dashboard-phone");
  await page.locator("section.executions").screenshot({ path: join(OUT, "executions-phone.png") });
  check(problems.length === 0, "phone: no console errors and no request outside 127.0.0.1", problems.join("; "));
  await context.close();
}

// An empty database: says how to load data, draws no empty frames.
{
  const emptyDb = join(work, "empty.db");
  writeFileSync(emptyDb, "");
  const emptyBase = await startServer(emptyDb);
  for (const [viewport, name] of [[{ width: 1280, height: 900 }, "empty"], [{ width: 390, height: 844 }, "empty-phone"]]) {
    const { context, page, problems } = await openPage(viewport, name, emptyBase);
    const text = (await page.locator("#empty").textContent()).replace(/\s+/g, " ");
    check(
      (await page.locator("#empty").isVisible()) && text.includes("No data loaded yet") && text.includes("covid-etl run"),
      `${name}: the page says how to load data`,
      text,
    );
    check(!(await page.locator("#data").isVisible()) && (await page.locator("canvas").count()) === 0, `${name}: no empty chart frames`);
    check(!(await page.locator("#stale").isVisible()), `${name}: no stale banner without data`);
    await screenshotCheck(page, `dashboard-${name}`);
    check(problems.length === 0, `${name}: no console errors`, problems.join("; "));
    await context.close();
  }
}

// The real snapshots: the recovered gap after 2020-12-13, the screenshot for the README.
{
  const data = resolve(ROOT, "../shared/data");
  const nyt = join(data, "nyt/us.2022-04-19.csv");
  const jhu = join(data, "jhu/time-series-19-covid-combined.2021-03-17.csv");
  if (!existsSync(nyt) || !existsSync(jhu)) {
    console.log(`skipped: the real snapshots are absent (${data}); docs/dashboard.png not regenerated`);
  } else {
    const realDb = join(work, "real.db");
    cli(["run", "--db", realDb, "--nyt", nyt, "--jhu", jhu]);
    const realBase = await startServer(realDb);
    const { context, page, problems } = await openPage({ width: 1280, height: 900 }, "real", realBase);
    const recovered = await page.evaluate(() => {
      const u = window.covidDashboard.charts["recovered-cumulative"];
      const daily = window.covidDashboard.charts["recovered-daily"];
      const at = (chart, day) => chart.data[1][chart.data[0].indexOf(Date.parse(day + "T00:00:00Z") / 1000)];
      const known = daily.data[1].filter((v) => v !== null);
      return {
        dec13: at(u, "2020-12-13"),
        dec14: at(u, "2020-12-14"),
        mar16: at(u, "2021-03-16"),
        lowestDaily: Math.min(...known),
      };
    });
    check(
      recovered.dec13 > 6_000_000 && recovered.dec14 === null && recovered.mar16 === null,
      "real: the recovered line stops after 2020-12-13 (a gap, not a fall to 0)",
      JSON.stringify(recovered),
    );
    check(recovered.lowestDaily > -1_000_000, "real: no -6.3M recovered bar", JSON.stringify(recovered));
    const tile = (await page.locator("#total-recovered").textContent()).trim();
    check(tile === "not reported", "real: the latest recovered total is 'not reported'", tile);
    await checkAxes(page, "real");
    await screenshotCheck(page, "dashboard-real");
    mkdirSync(join(ROOT, "docs"), { recursive: true });
    copyFileSync(join(OUT, "dashboard-real.png"), join(ROOT, "docs/dashboard.png"));
    console.log("   docs/dashboard.png regenerated");
    await context.close();
    const phone = await openPage({ width: 390, height: 844 }, "real-phone", realBase);
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, "real-phone: the page does not scroll sideways", `${overflow} px too wide`);
    await screenshotCheck(phone.page, "dashboard-real-phone");
    check(problems.length === 0 && phone.problems.length === 0, "real: no console errors", [...problems, ...phone.problems].join("; "));
    await phone.context.close();
  }
}

await browser.close();
console.log(`   browser part took ${((Date.now() - started) / 1000).toFixed(1)} s`);
writeFileSync(join(OUT, "server.log"), serverLog);
cleanup();
console.log(`dashboard: ${passed} passed, 0 failed`);
process.exit(0);
