// The covid-etl dashboard: reads /api/series, /api/series/{weekly,monthly} and
// /api/executions from the same origin and draws them with uPlot (vendored, see
// web/vendor/VERSION). No other network access, so it works offline.
//
// For tests, window.covidDashboard exposes the uPlot instances and the last answers, and
// <body data-state> is "loading", "ready" or "error"; each chart's container carries
// data-points (the number of x values it holds).
"use strict";

(function () {
  const METRICS = [
    { key: "cases", newKey: "newCases", label: "Cases", color: "#2563eb" },
    { key: "deaths", newKey: "newDeaths", label: "Deaths", color: "#b91c1c" },
    { key: "recovered", newKey: "newRecovered", label: "Recovered", color: "#15803d" },
  ];
  const fmt = new Intl.NumberFormat("en-US");
  const state = { charts: {}, series: null, executions: null, periods: null, ready: false };
  window.covidDashboard = state;

  const $ = (id) => document.getElementById(id);

  function showError(message) {
    const el = $("error");
    el.textContent = message;
    el.hidden = !message;
  }

  async function getJson(url) {
    let response;
    try {
      response = await fetch(url, { headers: { accept: "application/json" } });
    } catch (e) {
      throw new Error(`cannot reach the server (${url}): ${e.message}`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      /* not JSON */
    }
    if (!response.ok) {
      const why = body && body.error ? body.error : `HTTP ${response.status}`;
      throw new Error(why);
    }
    return body;
  }

  // Dates are calendar days: keep them in UTC end to end.
  const toSeconds = (iso) => Date.parse(iso + "T00:00:00Z") / 1000;
  const isoOf = (seconds) => new Date(seconds * 1000).toISOString().slice(0, 10);
  const addDays = (iso, n) => isoOf(toSeconds(iso) + n * 86400);

  function signed(n) {
    if (n === null || n === undefined) return "";
    return (n > 0 ? "+" : n < 0 ? "−" : "±") + fmt.format(Math.abs(n));
  }

  function renderTotals(latest, records) {
    $("latest-date").textContent = latest ? latest.date : "no data yet";
    const last = records.length ? records[records.length - 1] : null;
    for (const m of METRICS) {
      const el = $(`total-${m.key}`);
      const value = latest ? latest[m.key] : null;
      el.dataset.value = value === null || value === undefined ? "" : String(value);
      el.textContent = value === null || value === undefined ? "not reported" : fmt.format(value);
      const delta = $(`new-${m.key}`);
      // The day-over-day change of the latest day, when the range shows it.
      if (latest && last && last.date === latest.date && last[m.newKey] !== null) {
        delta.textContent = `${signed(last[m.newKey])} on ${latest.date}`;
      } else {
        delta.textContent = "";
      }
    }
  }

  function chartWidth(el) {
    return Math.max(260, Math.floor(el.clientWidth || el.parentElement.clientWidth || 320));
  }

  function axisValues(_u, splits) {
    return splits.map((v) => (v === null ? "" : Math.abs(v) >= 1e6 ? (v / 1e6).toFixed(1) + "M" : Math.abs(v) >= 1e4 ? Math.round(v / 1e3) + "k" : fmt.format(v)));
  }

  function makeChart(el, name, xs, ys, metric, bars) {
    const previous = state.charts[name];
    if (previous) previous.destroy();
    el.textContent = "";
    const known = ys.filter((v) => v !== null).length;
    const opts = {
      width: chartWidth(el),
      height: 200,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [
        { stroke: "#5b6475", grid: { stroke: "#eef0f3" } },
        { stroke: "#5b6475", grid: { stroke: "#eef0f3" }, size: 56, values: axisValues },
      ],
      series: [
        { label: "Date", value: (_u, v) => (v === null ? "–" : isoOf(v)) },
        {
          label: bars ? `New ${metric.label.toLowerCase()}` : metric.label,
          stroke: metric.color,
          fill: bars ? metric.color + "bb" : metric.color + "22",
          width: bars ? 0 : 2,
          points: { show: false },
          paths: bars ? uPlot.paths.bars({ size: [0.8, 24] }) : undefined,
          value: (_u, v) => (v === null ? "–" : bars ? signed(v) : fmt.format(v)),
        },
      ],
    };
    const chart = new uPlot(opts, [xs, ys], el);
    state.charts[name] = chart;
    el.dataset.points = String(chart.data[0].length);
    el.dataset.known = String(known);
    return chart;
  }

  function renderCharts(records) {
    const xs = records.map((r) => toSeconds(r.date));
    for (const m of METRICS) {
      const cum = document.querySelector(`[data-chart="${m.key}-cumulative"]`);
      const daily = document.querySelector(`[data-chart="${m.key}-daily"]`);
      makeChart(cum, `${m.key}-cumulative`, xs, records.map((r) => r[m.key]), m, false);
      makeChart(daily, `${m.key}-daily`, xs, records.map((r) => r[m.newKey]), m, true);
    }
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function renderPeriods(body) {
    const tbody = document.querySelector("#periods tbody");
    tbody.textContent = "";
    for (const p of body.periods) {
      const tr = document.createElement("tr");
      const label = cell(tr, p.period);
      label.title = `${p.start} – ${p.end} (stored: ${p.firstDate} – ${p.lastDate})`;
      cell(tr, String(p.days), "num");
      cell(tr, fmt.format(p.newCases), "num" + (p.newCases < 0 ? " neg" : ""));
      cell(tr, fmt.format(p.newDeaths), "num" + (p.newDeaths < 0 ? " neg" : ""));
      cell(tr, p.revisions ? String(p.revisions) : "", "num" + (p.revisions ? " neg" : ""));
      tbody.appendChild(tr);
    }
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "–";
    if (ms < 1000) return `${ms} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  }

  function renderExecutions(body) {
    const tbody = document.querySelector("#executions tbody");
    tbody.textContent = "";
    for (const e of body.executions) {
      const tr = document.createElement("tr");
      tr.dataset.status = e.status;
      const td = cell(tr, "");
      const badge = document.createElement("span");
      badge.className = `status ${e.status}`;
      badge.textContent = e.status;
      if (e.error) badge.title = e.error;
      td.appendChild(badge);
      cell(tr, e.name);
      cell(tr, e.startedAt.replace("T", " ").replace(/\.\d+Z$|Z$/, ""));
      cell(tr, duration(e.durationMs), "num");
      cell(tr, e.failedState ? `${e.failedState}${e.error ? ` (${e.error})` : ""}` : "");
      for (const k of ["inserted", "updated", "unchanged"]) {
        cell(tr, e.load ? fmt.format(e.load[k]) : "–", "num");
      }
      tbody.appendChild(tr);
    }
    const empty = $("executions-empty");
    empty.hidden = body.executions.length > 0;
    empty.textContent = "No executions recorded yet.";
  }

  function query(from, to) {
    const q = new URLSearchParams();
    if (from) q.set("from", from);
    if (to) q.set("to", to);
    const s = q.toString();
    return s ? `?${s}` : "";
  }

  async function loadPeriods() {
    const kind = $("granularity").value;
    const body = await getJson(`/api/series/${kind}${query($("from").value, $("to").value)}`);
    state.periods = body;
    renderPeriods(body);
  }

  async function load(from, to) {
    document.body.dataset.state = "loading";
    showError("");
    try {
      const q = query(from, to);
      const [series, executions] = await Promise.all([
        getJson(`/api/series${q}`),
        getJson("/api/executions?limit=10"),
      ]);
      state.series = series;
      state.executions = executions;
      renderTotals(series.latest, series.records);
      renderCharts(series.records);
      renderExecutions(executions);
      const first = series.records.length ? series.records[0].date : null;
      const last = series.records.length ? series.records[series.records.length - 1].date : null;
      // Show the range actually drawn in the inputs (the URL keeps only what was asked).
      $("from").value = from || first || "";
      $("to").value = to || last || "";
      if (series.latest) {
        $("from").max = series.latest.date;
        $("to").max = series.latest.date;
      }
      $("range-info").textContent = series.count
        ? `${series.count} days, ${first} – ${last}`
        : "no stored days in this range";
      await loadPeriods();
      history.replaceState(null, "", location.pathname + q);
      state.ready = true;
      document.body.dataset.state = "ready";
    } catch (e) {
      showError(e.message);
      document.body.dataset.state = "error";
    }
  }

  function start() {
    const params = new URLSearchParams(location.search);
    $("from").value = params.get("from") || "";
    $("to").value = params.get("to") || "";
    $("range").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const from = $("from").value;
      const to = $("to").value;
      if (from && to && from > to) {
        showError(`"From" (${from}) is after "To" (${to}).`);
        return;
      }
      load(from, to);
    });
    for (const b of document.querySelectorAll(".presets button")) {
      b.addEventListener("click", () => {
        const latest = state.series && state.series.latest ? state.series.latest.date : null;
        if (b.dataset.days === "all" || !latest) {
          $("from").value = "";
          $("to").value = "";
        } else {
          $("from").value = addDays(latest, -(Number(b.dataset.days) - 1));
          $("to").value = latest;
        }
        load($("from").value, $("to").value);
      });
    }
    $("granularity").addEventListener("change", () => loadPeriods().catch((e) => showError(e.message)));
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        for (const [name, chart] of Object.entries(state.charts)) {
          const el = document.querySelector(`[data-chart="${name}"]`);
          chart.setSize({ width: chartWidth(el), height: 200 });
        }
      }, 150);
    });
    load($("from").value, $("to").value);
  }

  if (typeof uPlot === "undefined") {
    document.addEventListener("DOMContentLoaded", () => {
      showError("The chart library did not load.");
      document.body.dataset.state = "error";
    });
  } else {
    start();
  }
})();
