// Browser test of the dashboard (issue 7): headless Debian Chromium driven by playwright-core
// against `covid-etl serve` over a database loaded from the fixtures.
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
//   - the executions table lists both runs with their status;
//   - the date-range control narrows the charts (2020-04-01..2020-04-29 → 29 points) and a
//     reversed range is refused;
//   - no request leaves 127.0.0.1 (the page works offline) and nothing is logged as an error;
//   - the full-page screenshots (target/browser/*.png) are not blank: the PNG is decoded here
//     and must have many distinct colours and enough non-background pixels.
// Exits 1 on the first failed check; the whole run is bounded by a 180 s timer.

import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

let passed = 0;
let server = null;
let browser = null;
const work = mkdtempSync(join(tmpdir(), "covid-etl-browser-"));

function cleanup() {
  if (server && server.exitCode === null) server.kill("SIGTERM");
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

const deadline = setTimeout(() => fail("timed out after 180 s"), 180_000);
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

async function waitForServer(base) {
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
const exported = JSON.parse(cli(["export", "--db", db, "--format", "json"]).stdout);
check(exported.length === EXPECTED_POINTS, `the store holds ${EXPECTED_POINTS} days`, `${exported.length}`);
const latest = exported[exported.length - 1];

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
let serverLog = "";
server = spawn(BIN, ["serve", "--db", db, "--addr", `127.0.0.1:${port}`], {
  cwd: ROOT,
  stdio: ["ignore", "pipe", "pipe"],
});
server.stdout.on("data", (d) => (serverLog += d));
server.stderr.on("data", (d) => (serverLog += d));
await waitForServer(base);

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

async function openPage(viewport, name) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const problems = [];
  // Offline: anything not served by our server is refused and reported.
  await page.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith(base + "/") || url.startsWith("data:")) return route.continue();
    problems.push(`request outside the server: ${url}`);
    return route.abort();
  });
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  const response = await page.goto(`${base}/`, { waitUntil: "load" });
  check(response.ok(), `${name}: GET / answers 200`, `${response.status()}`);
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

const fmt = new Intl.NumberFormat("en-US");

// Desktop.
{
  const { context, page, problems } = await openPage({ width: 1280, height: 900 }, "desktop");
  checkPoints(await chartPoints(page), EXPECTED_POINTS, "desktop");

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

  const statuses = await page.locator("#executions tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.status));
  check(
    JSON.stringify(statuses) === JSON.stringify(["FAILED", "SUCCEEDED"]),
    "desktop: the executions table lists the failed and the successful run, newest first",
    JSON.stringify(statuses),
  );
  const loadCells = await page.locator('#executions tbody tr[data-status="SUCCEEDED"] td.num').allTextContents();
  check(loadCells.slice(1).join(",") === "60,0,0", "desktop: the successful run shows 60 inserted, 0 updated, 0 unchanged", loadCells.join(","));
  const periods = await page.locator("#periods tbody tr").count();
  check(periods === 10, "desktop: the weekly table has the fixtures' 10 ISO weeks", `${periods}`);

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

  await page.fill("#from", "2020-04-20");
  await page.fill("#to", "2020-04-10");
  await page.click("#apply");
  const error = (await page.locator("#error").textContent()).trim();
  check(/after/.test(error) && (await page.locator("#error").isVisible()), "range: a reversed range is refused with a message", error);

  check(problems.length === 0, "desktop: no console errors and no request outside 127.0.0.1", problems.join("; "));
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
  await screenshotCheck(page, "dashboard-phone");
  check(problems.length === 0, "phone: no console errors and no request outside 127.0.0.1", problems.join("; "));
  await context.close();
}

await browser.close();
console.log(`   browser part took ${((Date.now() - started) / 1000).toFixed(1)} s`);
writeFileSync(join(OUT, "server.log"), serverLog);
cleanup();
console.log(`dashboard: ${passed} passed, 0 failed`);
process.exit(0);
