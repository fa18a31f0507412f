// The sources' side of the harness: a local HTTP server on 127.0.0.1 that serves the source
// files (and misbehaves when a scenario says so), and the harness's own join of the two files,
// written independently of the Rust code, that the loaded table must equal.

import fs from "node:fs";
import http from "node:http";

function serveFile(res, file) {
  res.writeHead(200, { "content-type": "text/csv" });
  fs.createReadStream(file).pipe(res);
}

export class SourceServer {
  async start() {
    this.routes = new Map();
    this.requests = new Map();
    this.stalled = new Set();
    this.server = http.createServer((req, res) => {
      const route = this.routes.get(req.url);
      this.requests.set(req.url, (this.requests.get(req.url) ?? 0) + 1);
      if (!route) {
        res.writeHead(404).end("not found");
        return;
      }
      route(req, res, this.requests.get(req.url));
    });
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.origin = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  /** Serves `file` at `path`: its URL. */
  file(path, file) {
    return this.route(path, (req, res) => serveFile(res, file));
  }

  /** Answers 503 to the first `failures` requests of `path`, then serves `file`. */
  flaky(path, file, failures) {
    return this.route(path, (req, res, n) => {
      if (n <= failures) res.writeHead(503).end("unavailable");
      else serveFile(res, file);
    });
  }

  /** Accepts the request and never answers it: a source that stalls. */
  stall(path) {
    return this.route(path, (req, res) => {
      this.stalled.add(res);
    });
  }

  route(path, handler) {
    this.routes.set(path, handler);
    return `${this.origin}${path}`;
  }

  count(path) {
    return this.requests.get(path) ?? 0;
  }

  async stop() {
    for (const res of this.stalled) res.destroy();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** RFC 4180 rows (quoted fields, doubled quotes), with the header as keys. */
export function readCsv(file) {
  const text = fs.readFileSync(file, "utf8");
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if (field !== "" || row.length > 0) rows.push([...row, field]);
  const [header, ...body] = rows;
  return body.filter((r) => r.length > 1).map((r) => Object.fromEntries(header.map((h, i) => [h, r[i]])));
}

/**
 * The README's merge rule: dates in both files; cases and deaths from the NYT, recovered from
 * the country-level US rows of JHU (absent when empty). Sorted by date.
 */
export function expectedSeries(nytFile, jhuFile) {
  // JHU stopped counting US recoveries on 2020-12-14 and wrote 0 from then on: a Recovered of
  // 0 after positive values is "not reported", stored as absent.
  let reported = false;
  const jhu = new Map(
    readCsv(jhuFile)
      .filter((r) => r["Country/Region"] === "US" && !r["Province/State"])
      .sort((a, b) => a.Date.localeCompare(b.Date))
      .map((r) => {
        const stopped = reported && r.Recovered !== "" && Number(r.Recovered) === 0;
        if (r.Recovered !== "" && Number(r.Recovered) > 0) reported = true;
        return [r.Date, stopped ? "" : r.Recovered];
      }),
  );
  return readCsv(nytFile)
    .filter((r) => jhu.has(r.date))
    .map((r) => ({
      date: r.date,
      cases: Number(r.cases),
      deaths: Number(r.deaths),
      ...(jhu.get(r.date) !== "" && { recovered: Number(jhu.get(r.date)) }),
    }))
    .sort((a, b) => a.date.localeCompare(b.date));
}

/** The series rows of a DynamoDB scan (the `series` partition; the marker and the run ledger
 * live in others), as above. */
export function seriesOf(items) {
  return items
    .filter((item) => item.pk.S === "series")
    .map((item) => ({
      date: item.sk.S,
      cases: Number(item.cases.N),
      deaths: Number(item.deaths.N),
      ...(item.recovered && { recovered: Number(item.recovered.N) }),
    }))
    .sort((a, b) => a.date.localeCompare(b.date));
}
