// A Lambda Runtime API emulator: each function's real `bootstrap` (unzipped from the deployed
// zip) runs as a child process with the environment the template gives it, and fetches its
// events over the four endpoints of the Runtime API (version 2018-06-01), as on Lambda:
//
//   GET  /2018-06-01/runtime/invocation/next           the next event (held until there is one)
//   POST /2018-06-01/runtime/invocation/{id}/response  the function's result
//   POST /2018-06-01/runtime/invocation/{id}/error     a function error {errorType, errorMessage}
//   POST /2018-06-01/runtime/init/error                a failure before the first /next
//
// One process ("sandbox") serves one invocation at a time and is reused while warm; a second
// concurrent invocation gets a second sandbox. What Lambda itself reports, the emulator reports
// with Lambda's error types: the function's Timeout from the template is enforced by killing
// the process (`Sandbox.Timedout`, "Task timed out after N.00 seconds"); a process that exits
// before answering (a failed start-up, a crash) is `Runtime.ExitError`, unless it reported its
// own error type to /init/error first.

import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import { randomUUID } from "node:crypto";

/** Lambda's limit for the init phase of an on-demand function. */
const INIT_LIMIT_MS = 10_000;

export class LambdaFunction {
  /**
   * @param {object} spec  {name, arn, bootstrap, env, timeoutSeconds, memorySize, logFile}
   * @param {number} timeScale  divides the function's timeout (the scenario that waits for it)
   */
  constructor(spec, timeScale = 1) {
    this.spec = spec;
    this.timeScale = timeScale;
    this.sandboxes = new Set();
    /** Every invocation: {requestId, payload, outcome, peakRssKiB, ms}. */
    this.invocations = [];
    /** When set, the next invocations get a hold instead of an answer (see `hold`). */
    this.held = false;
  }

  /**
   * Invokes the function synchronously (RequestResponse): resolves with
   * `{ok: true, result}` or `{ok: false, errorType, errorMessage}` — never rejects.
   */
  async invoke(payload) {
    const requestId = randomUUID();
    const record = { requestId, payload, started: Date.now() };
    this.invocations.push(record);
    if (this.held) return new Promise(() => {}); // the Task's own timeout ends it
    let sandbox = [...this.sandboxes].find((s) => s.idle());
    if (!sandbox) {
      sandbox = new Sandbox(this);
      this.sandboxes.add(sandbox);
      await sandbox.start();
    }
    const outcome = await sandbox.run(requestId, payload);
    record.outcome = outcome;
    record.ms = Date.now() - record.started;
    return outcome;
  }

  /**
   * Make every later invocation hang without an answer, as an invocation lost in the Lambda
   * service would: only the Task's TimeoutSeconds ends it (`States.Timeout`).
   */
  hold() {
    this.held = true;
  }

  async shutdown() {
    await Promise.all([...this.sandboxes].map((s) => s.kill()));
  }
}

class Sandbox {
  constructor(fn) {
    this.fn = fn;
    this.waitingNext = null; // the held response of the runtime's GET /next
    this.current = null; // {requestId, payload, resolve, timer}
    this.initError = null;
    this.dead = false;
    this.deliveredOnce = false;
  }

  idle() {
    return !this.dead && this.current === null;
  }

  async start() {
    this.server = http.createServer((req, res) => this.route(req, res));
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    const { spec } = this.fn;
    const log = fs.openSync(spec.logFile, "a");
    this.child = spawn(spec.bootstrap, [], {
      cwd: spec.taskRoot,
      env: {
        ...spec.env,
        AWS_LAMBDA_RUNTIME_API: `127.0.0.1:${this.server.address().port}`,
      },
      stdio: ["ignore", log, log],
    });
    fs.closeSync(log);
    this.child.on("exit", (code, signal) => this.exited(code, signal));
  }

  /** Hands the event to the runtime when it asks for it; settles when the runtime answers. */
  run(requestId, payload) {
    return new Promise((resolve) => {
      this.current = { requestId, payload, resolve, timer: null };
      // Init (until the first /next) has its own limit, as on Lambda.
      if (!this.deliveredOnce) {
        this.current.timer = setTimeout(() => this.timedOut(INIT_LIMIT_MS / 1000), INIT_LIMIT_MS);
      }
      this.deliver();
    });
  }

  deliver() {
    if (!this.current || !this.waitingNext || this.current.delivered) return;
    const { requestId, payload } = this.current;
    const { spec } = this.fn;
    const timeoutMs = (spec.timeoutSeconds * 1000) / this.fn.timeScale;
    const res = this.waitingNext;
    this.waitingNext = null;
    this.current.delivered = true;
    this.deliveredOnce = true;
    clearTimeout(this.current.timer);
    this.current.timer = setTimeout(() => this.timedOut(timeoutMs / 1000), timeoutMs);
    res.writeHead(200, {
      "content-type": "application/json",
      "lambda-runtime-aws-request-id": requestId,
      "lambda-runtime-deadline-ms": String(Date.now() + timeoutMs),
      "lambda-runtime-invoked-function-arn": spec.arn,
      "lambda-runtime-trace-id": `Root=1-00000000-${requestId.replace(/-/g, "").slice(0, 24)};Sampled=0`,
    });
    res.end(JSON.stringify(payload));
  }

  settle(outcome) {
    const current = this.current;
    if (!current) return;
    clearTimeout(current.timer);
    this.current = null;
    if (outcome.ok) outcome.peakRssKiB = this.peakRssKiB();
    current.resolve(outcome);
  }

  /** The process's peak resident set (VmHWM), to hold against the function's MemorySize. */
  peakRssKiB() {
    try {
      const status = fs.readFileSync(`/proc/${this.child.pid}/status`, "utf8");
      return Number(status.match(/^VmHWM:\s+(\d+) kB/m)?.[1]);
    } catch {
      return undefined;
    }
  }

  timedOut(seconds) {
    const requestId = this.current?.requestId;
    this.kill();
    this.settle({
      ok: false,
      errorType: "Sandbox.Timedout",
      errorMessage: `RequestId: ${requestId} Error: Task timed out after ${seconds.toFixed(2)} seconds`,
    });
  }

  exited(code, signal) {
    this.dead = true;
    this.fn.sandboxes.delete(this);
    this.server.close();
    if (!this.current) return;
    const requestId = this.current.requestId;
    this.settle(
      this.initError
        ? { ok: false, errorType: this.initError.errorType, errorMessage: this.initError.errorMessage }
        : {
            ok: false,
            errorType: "Runtime.ExitError",
            errorMessage: `RequestId: ${requestId} Error: Runtime exited with ${
              signal ? `signal: ${signal}` : `error: exit status ${code}`
            }`,
          },
    );
  }

  async kill() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      const gone = new Promise((resolve) => this.child.once("exit", resolve));
      this.child.kill("SIGKILL");
      await gone;
    }
  }

  async route(req, res) {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks).toString("utf8");
    const url = req.url;
    const reply = (status, value) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(value));
    };
    if (req.method === "GET" && url === "/2018-06-01/runtime/invocation/next") {
      this.waitingNext = res;
      return this.deliver();
    }
    const invocation = url.match(/^\/2018-06-01\/runtime\/invocation\/([^/]+)\/(response|error)$/);
    if (req.method === "POST" && invocation) {
      const [, requestId, kind] = invocation;
      if (this.current?.requestId !== requestId || !this.current.delivered) {
        return reply(400, { errorType: "InvalidRequestID", errorMessage: `unknown request ${requestId}` });
      }
      reply(202, { status: "OK" });
      if (kind === "response") return this.settle({ ok: true, result: JSON.parse(body) });
      const error = JSON.parse(body || "{}");
      return this.settle({
        ok: false,
        errorType: error.errorType ?? req.headers["lambda-runtime-function-error-type"] ?? "Unhandled",
        errorMessage: error.errorMessage ?? "",
      });
    }
    if (req.method === "POST" && url === "/2018-06-01/runtime/init/error") {
      const error = JSON.parse(body || "{}");
      this.initError = {
        errorType: error.errorType ?? req.headers["lambda-runtime-function-error-type"] ?? "Runtime.Unknown",
        errorMessage: error.errorMessage ?? "",
      };
      return reply(202, { status: "OK" });
    }
    reply(404, { errorType: "NotFound", errorMessage: `${req.method} ${url}` });
  }
}
