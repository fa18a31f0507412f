// The covid-etl dashboard: reads /api/series, /api/series/{weekly,monthly} and
// /api/executions from the same origin and draws them with uPlot (vendored, see
// web/vendor/VERSION). No other network access, so it works offline.
//
// For tests, window.covidDashboard exposes the uPlot instances and the last answers, and
// <body data-state> is "loading", "ready" or "error" (and data-empty="true" over a database
// with no days); each chart's container carries data-points (the number of x values it holds).
//
// Dates are shown one way everywhere: ISO 8601 (2020-03-01, 2020-W10, 2020-03), in UTC.
"use strict";

(function () {
  const METRICS = [
    { key: "cases", newKey: "newCases", label: "Cases", color: "#2563eb" },
    { key: "deaths", newKey: "newDeaths", label: "Deaths", color: "#b91c1c" },
    { key: "recovered", newKey: "newRecovered", label: "Recovered", color: "#15803d" },
  ];
  // The pipeline's STALE_AFTER_DAYS default: a newest day older than this is called stale.
  const STALE_AFTER_DAYS = 3;
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

  function renderStale(latest) {
    const el = $("stale");
    const today = new Date().toISOString().slice(0, 10);
    const age = latest ? Math.round((toSeconds(today) - toSeconds(latest.date)) / 86400) : 0;
    el.hidden = !latest || age <= STALE_AFTER_DAYS;
    el.dataset.ageDays = String(age);
    el.textContent = el.hidden
      ? ""
      : `Stale data: the newest stored day is ${latest.date}, ${fmt.format(age)} days ago (more than ${STALE_AFTER_DAYS}). ` +
        "The sources may have stopped updating (both real sources stopped in March 2023), or the daily run is failing: see the executions below.";
  }

  function renderEmpty(series) {
    const empty = !series.latest;
    document.body.dataset.empty = String(empty);
    $("empty").hidden = !empty;
    $("data").hidden = empty;
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

  // Every value axis starts at zero: a bar that starts at 40k exaggerates a change.
  const fromZero = (_u, min, max) => [Math.min(0, min ?? 0), Math.max(1, max ?? 1)];

  // `label` names the x values (dates or periods), `unit` the y values.
  function makeChart(el, name, xs, ys, metric, bars, unit, xLabel = "Date (UTC)", xValue = isoOf) {
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
      scales: { x: { time: true }, y: { range: fromZero } },
      axes: [
        {
          stroke: "#5b6475", grid: { stroke: "#eef0f3" }, space: 90,
          label: xLabel, labelSize: 18, labelFont: "12px system-ui", font: "11px system-ui",
          values: (_u, splits) => splits.map((v) => (v === null ? "" : xValue(v))),
        },
        {
          stroke: "#5b6475", grid: { stroke: "#eef0f3" }, size: 56, values: axisValues,
          label: unit, labelSize: 18, labelFont: "12px system-ui", font: "11px system-ui",
        },
      ],
      series: [
        { label: xLabel, value: (_u, v) => (v === null ? "–" : xValue(v)) },
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
      const people = m.key === "cases" ? "cases" : m.key === "deaths" ? "deaths" : "people recovered";
      makeChart(cum, `${m.key}-cumulative`, xs, records.map((r) => r[m.key]), m, false, `${people}, cumulative`);
      makeChart(daily, `${m.key}-daily`, xs, records.map((r) => r[m.newKey]), m, true, `new ${people} per day`);
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
    const week = body.granularity === "week";
    // Bars at each period's first day, labelled with the period (2020-W10, 2020-03).
    const xs = body.periods.map((p) => toSeconds(p.start));
    const label = new Map(body.periods.map((p) => [toSeconds(p.start), p.period]));
    const periodOf = (v) => label.get(v) || isoOf(v);
    for (const m of METRICS.slice(0, 2)) {
      const el = document.querySelector(`[data-chart="${m.key}-periods"]`);
      const ys = body.periods.map((p) => p[m.newKey]);
      makeChart(el, `${m.key}-periods`, xs, ys, m, true, `new ${m.key} per ${week ? "week" : "month"}`, week ? "ISO week (from its Monday)" : "Month", periodOf);
    }
    const tbody = document.querySelector("#periods tbody");
    tbody.textContent = "";
    for (const p of [...body.periods].reverse()) {
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

  // What a run did, as a word and a colour: the API's `outcome`, with a redrive marked.
  const OUTCOME_TEXT = {
    LOADED: "loaded",
    NO_NEW_DATA: "no new data",
    DRY_RUN: "dry run",
    FAILED: "failed",
    TIMED_OUT: "timed out",
    ABORTED: "stopped",
    RUNNING: "running",
  };

  // ISO 8601 in UTC, to the second.
  const isoTime = (t) => (t ? t.replace(/\.\d+Z$/, "Z").replace(/\+00:00$/, "Z") : "–");

  function renderExecutions(body) {
    const tbody = document.querySelector("#executions tbody");
    tbody.textContent = "";
    for (const e of body.executions) {
      const tr = document.createElement("tr");
      tr.dataset.status = e.status;
      tr.dataset.outcome = e.outcome;
      tr.tabIndex = 0;
      tr.title = "Show this execution's steps";
      const td = cell(tr, "");
      const badge = document.createElement("span");
      badge.className = `status ${e.outcome}`;
      badge.textContent = OUTCOME_TEXT[e.outcome] || e.outcome;
      td.appendChild(badge);
      if (e.redriveCount > 0) {
        const tag = document.createElement("span");
        tag.className = "tag redriven";
        tag.textContent = e.redriveCount > 1 ? `redriven ×${e.redriveCount}` : "redriven";
        td.appendChild(tag);
      }
      if (e.fullReload) {
        const tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = "full reload";
        td.appendChild(tag);
      }
      cell(tr, e.name, "name");
      cell(tr, isoTime(e.startedAt));
      cell(tr, duration(e.durationMs), "num");
      // A dry run's counts are what it would have written: shown as such, never as writes.
      const counts = e.load || e.planned;
      for (const k of ["inserted", "updated", "unchanged"]) {
        const text = counts ? fmt.format(counts[k]) : "–";
        cell(tr, e.planned && k !== "unchanged" ? `(would ${text})` : text, "num");
      }
      const failure = e.failedState ? `${e.failedState}: ${e.error || ""}${e.cause ? ` — ${e.cause}` : ""}` : "";
      cell(tr, failure, "cause");
      const open = () => showExecution(e.executionId);
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter") open();
      });
      tbody.appendChild(tr);
    }
    const empty = $("executions-empty");
    empty.hidden = body.executions.length > 0;
    empty.textContent = "No executions recorded yet.";
  }

  async function showExecution(executionId) {
    const el = $("execution-detail");
    el.hidden = false;
    el.textContent = "Loading…";
    let d;
    try {
      d = await getJson(`/api/executions/${encodeURIComponent(executionId)}`);
    } catch (e) {
      el.textContent = `Cannot show the execution: ${e.message}`;
      return;
    }
    state.detail = d;
    el.textContent = "";
    el.dataset.executionId = d.executionId;
    const h = document.createElement("h3");
    h.textContent = `${d.name}: ${OUTCOME_TEXT[d.outcome] || d.outcome}, started ${isoTime(d.startedAt)}, took ${duration(d.durationMs)}`;
    el.appendChild(h);
    if (d.cause) {
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = `${d.failedState || ""}: ${d.error || ""} — ${d.cause}`;
      el.appendChild(p);
    }
    if (d.warnings.length) {
      const ul = document.createElement("ul");
      ul.className = "warnings";
      for (const w of d.warnings) {
        const li = document.createElement("li");
        li.textContent = w;
        ul.appendChild(li);
      }
      el.appendChild(ul);
    }
    if (!d.steps) {
      const p = document.createElement("p");
      p.className = "note";
      p.textContent = "The steps of this execution are in the Step Functions console.";
      el.appendChild(p);
      return;
    }
    const wrap = document.createElement("div");
    wrap.className = "scroll";
    const table = document.createElement("table");
    table.className = "steps";
    const head = document.createElement("tr");
    for (const t of ["State", "Status", "Duration", "Attempts", "Detail"]) {
      const th = document.createElement("th");
      th.textContent = t;
      head.appendChild(th);
    }
    table.appendChild(head);
    for (const s of d.steps) {
      const tr = document.createElement("tr");
      tr.dataset.status = s.status;
      cell(tr, s.name);
      cell(tr, s.status);
      cell(tr, duration(s.durationMs), "num");
      cell(tr, s.type === "Task" ? String(s.attempts) : "", "num");
      cell(tr, s.error ? `${s.error}: ${s.cause || ""}` : s.output || "", "cause");
      table.appendChild(tr);
    }
    wrap.appendChild(table);
    el.appendChild(wrap);
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
      renderEmpty(series);
      renderStale(series.latest);
      renderTotals(series.latest, series.records);
      renderExecutions(executions);
      if (!series.latest) {
        $("range-info").textContent = "";
        state.ready = true;
        document.body.dataset.state = "ready";
        return;
      }
      renderCharts(series.records);
      const first = series.records.length ? series.records[0].date : null;
      const last = series.records.length ? series.records[series.records.length - 1].date : null;
      // Show the range actually drawn in the inputs (the URL keeps only what was asked).
      $("from").value = from || first || "";
      $("to").value = to || last || "";
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
      return false;
    }
    return true;
  }

  async function start() {
    const params = new URLSearchParams(location.search);
    // The URL's range goes to the API as written: a date input would silently drop
    // `from=2020-02-30`; the API names what is wrong instead.
    const from = params.get("from") || "";
    const to = params.get("to") || "";
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
    if (!(await load(from, to)) && (from || to)) {
      // A bad link still shows the dashboard: the whole range, with what was ignored.
      const why = $("error").textContent;
      if (await load("", "")) showError(`The link's range was ignored: ${why}`);
    }
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
