// The packaged stack, end to end (issue #17): the deployed Lambda zips behind a Runtime API
// emulator (lambda-runtime.mjs), the compiled state machine on an independent interpreter
// (interpreter.mjs), DynamoDB and SNS on moto with an SQS queue subscribed to the topic
// (moto.mjs), sources on a local HTTP server (sources.mjs). Everything is read from the
// compiled CloudFormation template (stack.mjs).
//
//   node tests/e2e/run.mjs [--template PATH] [--lambda-dir DIR] [--data DIR]
//
// Defaults: .serverless/cloudformation-template-update-stack.json (tests/deploy/check.sh
// writes it), target/lambda (scripts/build-lambdas.sh), ../shared/data (the real snapshots;
// their scenario is skipped with a reason when absent). tests/e2e/run.sh builds both first.
// Closes with `e2e: N passed, N failed` (and `, N ignored` for skipped scenarios); exits 1 if
// any scenario failed. No network but 127.0.0.1.

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

import { execute, taskResources } from "./interpreter.mjs";
import { LambdaFunction } from "./lambda-runtime.mjs";
import { Moto, REGION } from "./moto.mjs";
import { expectedSeries, seriesOf, SourceServer } from "./sources.mjs";
import { Stack, unpack } from "./stack.mjs";
import { awsHistory, BAD_ENDINGS, HistoryServer, statusChangeEvent } from "./status-change.mjs";

const ROOT = path.resolve(import.meta.dirname, "../..");
const { values: opts } = parseArgs({
  options: {
    template: { type: "string", default: path.join(ROOT, ".serverless/cloudformation-template-update-stack.json") },
    "lambda-dir": { type: "string", default: path.join(ROOT, "target/lambda") },
    data: { type: "string", default: path.resolve(ROOT, "../shared/data") },
  },
});

/** Step Functions' limit on a state's input or output. */
const PAYLOAD_LIMIT = 256 * 1024;
/** The factor that divides the timeouts a timeout scenario waits for. */
const TIME_SCALE = 10;
const FIXTURES = path.join(ROOT, "fixtures");

const work = fs.mkdtempSync(path.join(os.tmpdir(), "covid-etl-e2e-"));
const stack = new Stack(opts.template);

// --- the stack on this machine ------------------------------------------------------------

const moto = await Moto.start(process.env.MOTO_SERVER ?? path.join(ROOT, ".venv/bin/moto_server"), work);
const sources = await new SourceServer().start();
const histories = await new HistoryServer().start();
const table = stack.tableRequest();
await moto.dynamodb("CreateTable", table);
const topicArn = await moto.createTopic(stack.topicName());
const queueUrl = await moto.subscribeQueue(topicArn, "covid-etl-subscriber");
const refs = {
  EtlTable: table.TableName,
  AlertTopic: topicArn,
  EtlStateMachine: `arn:aws:states:${REGION}:123456789012:stateMachine:covid-etl-ci`,
};
const definition = stack.definition(refs);
const tasks = taskResources(definition);
const specs = stack.functions(refs, opts["lambda-dir"]);
const taskFunctions = specs.filter((s) => Object.values(tasks).includes(s.arn));

// Each function's zip, unpacked once into its own task root.
for (const spec of taskFunctions) {
  if (!fs.existsSync(spec.zip)) throw new Error(`${spec.zip} missing: run scripts/build-lambdas.sh`);
  spec.taskRoot = path.join(work, "task", spec.logicalId);
  fs.mkdirSync(spec.taskRoot, { recursive: true });
  spec.bootstrap = unpack(spec.zip, spec.taskRoot);
  spec.logFile = path.join(work, `${spec.logicalId}.log`);
}

/**
 * The process environment of a function, as Lambda builds it: the runtime's reserved
 * variables, then the template's `Environment.Variables`, then what only this machine needs —
 * the moto endpoint, and the local source server as the one allowed source origin (it
 * replaces whatever origins the template allows). `change` edits the result for a scenario.
 */
function environment(spec, change = (env) => env) {
  return change({
    PATH: "/usr/local/bin:/usr/bin:/bin",
    LANG: "en_US.UTF-8",
    TZ: ":UTC",
    LAMBDA_TASK_ROOT: spec.taskRoot,
    _HANDLER: spec.handler,
    AWS_REGION: REGION,
    AWS_DEFAULT_REGION: REGION,
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_SESSION_TOKEN: "testing",
    AWS_LAMBDA_FUNCTION_NAME: spec.name,
    AWS_LAMBDA_FUNCTION_VERSION: "$LATEST",
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(spec.memorySize),
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${spec.name}`,
    AWS_LAMBDA_LOG_STREAM_NAME: "e2e",
    AWS_LAMBDA_INITIALIZATION_TYPE: "on-demand",
    ...spec.env,
    AWS_ENDPOINT_URL: moto.endpoint,
    // Step Functions' GetExecutionHistory, for the notify function's status-change events.
    AWS_ENDPOINT_URL_SFN: histories.endpoint,
    COVID_ETL_SOURCE_ALLOWLIST: sources.origin,
  });
}

// --- one execution ----------------------------------------------------------------------

let executions = 0;
const measured = { largest: { bytes: 0 }, peakRssKiB: {} };

/**
 * Runs one execution on fresh sandboxes. `scenario` may change a function's environment
 * (`env: {LogicalId: fn}`), hold its invocations (`hold: [LogicalId]`) or divide the timeouts
 * of some functions and their Tasks by TIME_SCALE (`scaled: [LogicalId]`).
 */
async function run(input, scenario = {}) {
  const functions = new Map();
  const byId = {};
  for (const spec of taskFunctions) {
    const scale = scenario.scaled?.includes(spec.logicalId) ? TIME_SCALE : 1;
    const fn = new LambdaFunction({ ...spec, env: environment(spec, scenario.env?.[spec.logicalId]) }, scale);
    if (scenario.hold?.includes(spec.logicalId)) fn.hold();
    functions.set(spec.arn, fn);
    byId[spec.logicalId] = fn;
  }
  const scaledStates = Object.entries(tasks)
    .filter(([, arn]) => scenario.scaled?.some((id) => functions.get(arn) === byId[id]))
    .map(([state]) => state);
  const name = `e2e-${++executions}`;
  await moto.record();
  const before = seriesOf(await moto.scan(table.TableName));
  let result;
  const startedAt = Date.now();
  try {
    result = await execute({
      definition,
      scale: { states: scaledStates, factor: TIME_SCALE },
      input,
      name,
      functions,
      publish: (params) => moto.publish(params),
    });
    result.invoked = Object.fromEntries(Object.entries(byId).map(([id, f]) => [id, [...f.invocations]]));
    // The status-change rule: a bad ending reaches the notify function as EventBridge sends it.
    if (BAD_ENDINGS.includes(result.status)) {
      histories.put(result.executionArn, awsHistory(result.events, LAMBDA_TASKS));
      result.statusChange = await byId.NotifyLambdaFunction.invoke(statusChangeEvent(result, name, startedAt));
    }
  } finally {
    await Promise.all([...functions.values()].map((f) => f.shutdown()));
  }
  result.before = before;
  result.after = seriesOf(await moto.scan(table.TableName));
  result.batchWrites = await moto.countTarget("DynamoDB_20120810.BatchWriteItem");
  result.messages = await moto.drain(queueUrl);
  for (const s of result.sizes) if (s.bytes > measured.largest.bytes) measured.largest = { ...s, input: name };
  for (const [id, invocations] of Object.entries(result.invoked)) {
    for (const i of invocations) {
      const rss = i.outcome?.peakRssKiB;
      if (rss && rss > (measured.peakRssKiB[id] ?? 0)) measured.peakRssKiB[id] = rss;
    }
  }
  return result;
}

// --- what every scenario checks -----------------------------------------------------------

const LAMBDA_TASKS = Object.keys(tasks).filter((s) => tasks[s].startsWith("arn:aws:lambda:"));

/**
 * The interpreter entered exactly these states (in this order; the two extracts of the
 * Parallel in either order), and every Lambda Task on the path reached its function: the
 * function received one invocation per attempt, and no function was invoked off the path.
 */
function assertPath(result, expected, attempts = {}) {
  const norm = (names) =>
    names.map((n) => (n === "ExtractJhu" || n === "ExtractNyt" ? "Extract*" : n)).join(" > ");
  assert.equal(norm(result.visited), norm(expected), `states entered (error: ${JSON.stringify(result.error)})`);
  const invokedByState = {};
  for (const state of expected.filter((s) => LAMBDA_TASKS.includes(s))) {
    const fn = taskFunctions.find((f) => f.arn === tasks[state]).logicalId;
    invokedByState[fn] = (invokedByState[fn] ?? 0) + (attempts[state] ?? 1);
  }
  for (const spec of taskFunctions) {
    const got = result.invoked[spec.logicalId].length;
    assert.equal(got, invokedByState[spec.logicalId] ?? 0, `invocations of ${spec.logicalId}`);
  }
}

/** One message on the subscriber's queue, with this status attribute: the message. */
function oneMessage(result, status) {
  assert.equal(result.messages.length, 1, `messages: ${JSON.stringify(result.messages.map((m) => m.Subject))}`);
  const [message] = result.messages;
  assert.equal(message.MessageAttributes?.status?.Value, status, `status attribute of ${message.Subject}`);
  return message;
}

function assertUnchanged(result) {
  assert.deepEqual(result.after, result.before, "the table's series changed");
  assert.equal(result.batchWrites, 0, "BatchWriteItem requests");
}

/** A notification step failing: the definition's own failure branch, then its Fail state. */
const FAILURE_PATH = (state, ...before) => [...before, `${state}Failed`, "NotifyFailure", "Failed"];
const EXTRACT = ["Prepare", "Extract", "ExtractNyt", "ExtractJhu"];
const LOAD = [...EXTRACT, "CheckForNewData", "Merge", "DiffAndLoad"];

/**
 * An execution that failed in a work step (no Catch: the execution ends in that step, so a
 * redrive reruns it), reported through the status-change rule by the notify function: one
 * message whose subject and body name the step (`failedState`, a string or a RegExp) and
 * `error`.
 */
function assertFailure(result, failedState, error, causeText) {
  assert.equal(result.status, "FAILED");
  assert.equal(result.error.Error, error, `execution error (cause: ${result.error.Cause})`);
  assert.ok(result.statusChange?.ok, `the status-change notification: ${JSON.stringify(result.statusChange)}`);
  const message = oneMessage(result, "FAILED");
  const state = message.MessageAttributes.failedState?.Value;
  if (failedState instanceof RegExp) assert.match(state, failedState);
  else assert.equal(state, failedState);
  assert.match(message.Subject, new RegExp(`${state}.*${error.replace(".", "\\.")}`));
  assert.ok(message.Message.includes(`Error: ${error}`), message.Message);
  if (causeText) assert.ok(message.Message.includes(causeText), `cause ${causeText} in:\n${message.Message}`);
  return message;
}

// --- scenarios ---------------------------------------------------------------------------

const nyt = path.join(FIXTURES, "nyt/us.csv");
const jhu = path.join(FIXTURES, "jhu/combined.csv");
const nytUrl = sources.file("/nyt/us.csv", nyt);
const jhuUrl = sources.file("/jhu/combined.csv", jhu);

const scenarios = [
  [
    "first load of the fixtures: the table equals the harness's own join",
    async () => {
      const r = await run({ nyt: nytUrl, jhu: jhuUrl });
      assert.equal(r.status, "SUCCEEDED", JSON.stringify(r.error));
      assertPath(r, [...LOAD, "NotifySuccess"]);
      const expected = expectedSeries(nyt, jhu);
      assert.equal(expected.length, 60);
      assert.deepEqual(r.after, expected);
      assert.equal(r.batchWrites, Math.ceil(60 / 25));
      assert.match(oneMessage(r, "SUCCEEDED").Subject, /SUCCEEDED: 60 inserted, 0 updated/);
    },
  ],
  [
    "unchanged rerun: no new data, nothing merged or written",
    async () => {
      const r = await run({ nyt: nytUrl, jhu: jhuUrl });
      assert.equal(r.status, "SUCCEEDED", JSON.stringify(r.error));
      assertPath(r, [...EXTRACT, "CheckForNewData", "NotifyNoNewData"]);
      assertUnchanged(r);
      oneMessage(r, "NO_NEW_DATA");
    },
  ],
  [
    "a source changed outside the US rows: merged and diffed, no series written",
    async () => {
      const other = path.join(work, "combined-other-country.csv");
      fs.writeFileSync(other, `${fs.readFileSync(jhu, "utf8")}2020-04-29,Peru,,1,0,0\n`);
      const r = await run({ nyt: nytUrl, jhu: sources.file("/jhu/other-country.csv", other) });
      assert.equal(r.status, "SUCCEEDED", JSON.stringify(r.error));
      assertPath(r, [...LOAD, "NotifySuccess"]);
      assertUnchanged(r);
      assert.match(oneMessage(r, "SUCCEEDED").Subject, /0 inserted, 0 updated/);
    },
  ],
  [
    "a bad source: DataQualityError notified, table unchanged",
    async () => {
      const bad = sources.file("/nyt/negative-count.csv", path.join(FIXTURES, "nyt/negative-count.csv"));
      const r = await run({ nyt: bad, jhu: jhuUrl });
      assertPath(r, EXTRACT);
      assertFailure(r, "ExtractNyt", "DataQualityError", 'nyt line 22 column "cases": "-88" is negative');
      assertUnchanged(r);
    },
  ],
  [
    "a source override off the allowlist: SourceNotAllowed before any I/O, not retried",
    async () => {
      // The same server under another origin (localhost, not 127.0.0.1): not on the list
      // the functions run with, so the real extract binary must refuse it unread.
      const offList = nytUrl.replace("127.0.0.1", "localhost");
      const served = sources.count("/nyt/us.csv");
      const r = await run({ nyt: offList, jhu: jhuUrl });
      assertPath(r, EXTRACT);
      assertFailure(r, "ExtractNyt", "SourceNotAllowed", "localhost");
      assert.equal(r.invoked.ExtractNytLambdaFunction.length, 1, "retried");
      assert.equal(sources.count("/nyt/us.csv"), served, "the server saw the refused source's request");
      assertUnchanged(r);
    },
  ],
  [
    "a flaky source (503 once): retried, then loaded",
    async () => {
      const revised = path.join(FIXTURES, "nyt/us-revised.csv");
      const flaky = sources.flaky("/nyt/flaky.csv", revised, 1);
      const r = await run({ nyt: flaky, jhu: jhuUrl });
      assert.equal(r.status, "SUCCEEDED", JSON.stringify(r.error));
      assertPath(r, [...LOAD, "NotifySuccess"], { ExtractNyt: 2 });
      assert.equal(sources.count("/nyt/flaky.csv"), 2, "requests to the flaky source");
      const [first] = r.invoked.ExtractNytLambdaFunction;
      assert.equal(first.outcome.errorType, "SourceUnavailable");
      assert.ok(r.events.some((e) => e.type === "StateRetried" && e.state.name === "ExtractNyt"));
      assert.deepEqual(r.after, expectedSeries(revised, jhu));
      assert.match(oneMessage(r, "SUCCEEDED").Subject, /0 inserted, 2 updated/);
    },
  ],
  [
    "the notify function failing: the direct sns:publish fallback delivers",
    async () => {
      // A dry run reaches NotifySuccess without writing; the function publishes to a topic
      // that does not exist: a real NotifyError, and NotifyFailure fails the same way.
      const r = await run(
        { nyt: nytUrl, jhu: jhuUrl, dryRun: true, fullReload: true },
        { env: { NotifyLambdaFunction: (env) => ({ ...env, TOPIC_ARN: `${topicArn}-deleted` }) } },
      );
      assertPath(r, [...FAILURE_PATH("NotifySuccess", ...LOAD, "NotifySuccess")].toSpliced(-1, 0, "PublishFailureDirect"));
      assert.equal(r.invoked.NotifyLambdaFunction[0].outcome.errorType, "NotifyError");
      assert.equal(r.status, "FAILED");
      assert.equal(r.error.Error, "NotifyError");
      const message = oneMessage(r, "FAILED");
      assert.equal(message.Subject, "covid-etl FAILED in NotifySuccess");
      assert.equal(message.MessageAttributes.failedState.Value, "NotifySuccess");
      // The Cause as Step Functions passes it: the function's error document.
      assert.ok(message.Message.endsWith(`: NotifyError: ${r.error.Cause}`), message.Message);
      // The rule's notification sees the failure branch's Fail state: not reported twice.
      assert.ok(r.statusChange.ok && r.statusChange.result === null, JSON.stringify(r.statusChange));
      assertUnchanged(r);
    },
  ],
  [
    "a payload that fails to deserialize: InvalidInput, the execution fails there and is notified",
    async () => {
      const r = await run({ nyt: 42, jhu: jhuUrl });
      assertPath(r, EXTRACT);
      // Both extracts read the same options: either may be the one that failed last.
      assertFailure(r, /^Extract(Nyt|Jhu)$/, "InvalidInput", "options.nyt");
      assertUnchanged(r);
    },
  ],
  [
    "a configuration error at start-up: the runtime's init failure, notified",
    async () => {
      const r = await run(
        { nyt: nytUrl, jhu: jhuUrl, fullReload: true },
        { env: { DiffAndLoadLambdaFunction: ({ TABLE_NAME, ...env }) => env } },
      );
      assertPath(r, LOAD);
      assertFailure(r, "DiffAndLoad", "Runtime.ExitError");
      assertUnchanged(r);
    },
  ],
  [
    "a source that stalls: the function's own timeout (Sandbox.Timedout) ends it before its Task's",
    async () => {
      const stalled = sources.stall("/nyt/stalled.csv");
      const r = await run({ nyt: stalled, jhu: jhuUrl }, { scaled: ["ExtractNytLambdaFunction"] });
      assertPath(r, EXTRACT);
      assertFailure(r, "ExtractNyt", "Sandbox.Timedout", "Task timed out after 17.00 seconds");
      assertUnchanged(r);
    },
  ],
  [
    "an invocation that never answers: the Task's TimeoutSeconds (States.Timeout), notified",
    async () => {
      const r = await run(
        { nyt: nytUrl, jhu: jhuUrl, fullReload: true },
        { scaled: ["MergeLambdaFunction"], hold: ["MergeLambdaFunction"] },
      );
      assertPath(r, [...EXTRACT, "CheckForNewData", "Merge"]);
      assertFailure(r, "Merge", "States.Timeout");
      assertUnchanged(r);
    },
  ],
];

// The real snapshots: the largest payloads the pipeline meets.
const realNyt = path.join(opts.data, "nyt/us.2022-04-19.csv");
const realJhu = path.join(opts.data, "jhu/time-series-19-covid-combined.2021-03-17.csv");
const realSkip = fs.existsSync(realNyt) && fs.existsSync(realJhu) ? null : `${opts.data} is absent`;
scenarios.push([
  "first load of the real snapshots: the table equals the join, every payload under 256 KiB",
  async () => {
    await moto.dynamodb("DeleteTable", { TableName: table.TableName });
    await moto.dynamodb("CreateTable", table);
    const r = await run({
      nyt: sources.file("/real/us.csv", realNyt),
      jhu: sources.file("/real/combined.csv", realJhu),
    });
    assert.equal(r.status, "SUCCEEDED", JSON.stringify(r.error));
    assertPath(r, [...LOAD, "NotifySuccess"]);
    const expected = expectedSeries(realNyt, realJhu);
    assert.ok(expected.length > 400, `${expected.length} days`);
    assert.deepEqual(r.after, expected);
    const largest = r.sizes.reduce((a, b) => (b.bytes > a.bytes ? b : a));
    console.log(`  largest state payload: ${largest.state} ${largest.what}, ${largest.bytes} bytes`);
    assert.ok(largest.bytes < PAYLOAD_LIMIT, `${largest.state} ${largest.what}: ${largest.bytes} bytes`);
  },
  realSkip,
]);

// #18: each function links only what it uses; the embedded database is the command line's.
scenarios.push([
  "no function's binary contains SQLite",
  async () => {
    for (const spec of specs) {
      const root = path.join(work, "scan", spec.logicalId);
      fs.mkdirSync(root, { recursive: true });
      const binary = fs.readFileSync(unpack(spec.zip, root));
      // A string SQLite's own code holds (the header of every database file).
      assert.ok(!binary.includes("SQLite format 3"), `${spec.logicalId} links SQLite`);
    }
    console.log(`  ${specs.length} binaries, none with SQLite`);
  },
]);

// --- the run ------------------------------------------------------------------------------

/** #17.4: every Lambda Task's function times out before the Task does. */
function assertTimeoutsNest() {
  const walk = (m) =>
    Object.entries(m.States).flatMap(([name, s]) => [[name, s], ...(s.Branches ?? []).flatMap(walk)]);
  for (const [name, state] of walk(definition)) {
    const spec = taskFunctions.find((f) => f.arn === state.Resource);
    if (!spec) continue;
    assert.ok(
      spec.timeoutSeconds < state.TimeoutSeconds,
      `${spec.logicalId} Timeout ${spec.timeoutSeconds} s is not below ${name}'s TimeoutSeconds ${state.TimeoutSeconds}`,
    );
    console.log(`  ${name}: function ${spec.timeoutSeconds} s < Task ${state.TimeoutSeconds} s`);
  }
}

let passed = 0;
let failed = 0;
let ignored = 0;
const started = Date.now();
try {
  try {
    assertTimeoutsNest();
    passed++;
    console.log("ok - every function's timeout is below its Task's TimeoutSeconds");
  } catch (e) {
    failed++;
    console.log(`FAILED - timeouts: ${e.message}`);
  }
  for (const [name, scenario, skip] of scenarios) {
    if (skip) {
      ignored++;
      console.log(`SKIPPED - ${name}: ${skip}`);
      continue;
    }
    const t0 = Date.now();
    try {
      await scenario();
      passed++;
      console.log(`ok - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    } catch (e) {
      failed++;
      console.log(`FAILED - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n${e.stack}`);
      for (const spec of taskFunctions) {
        const log = fs.readFileSync(spec.logFile, { encoding: "utf8", flag: "a+" }).split("\n").slice(-5).join("\n");
        if (log.trim()) console.log(`  --- last lines of ${spec.logicalId}:\n${log}`);
      }
    }
  }
} finally {
  await sources.stop();
  await histories.stop();
  await moto.stop();
  // The unpacked binaries go; the functions' and moto's logs stay for a post-mortem.
  fs.rmSync(path.join(work, "task"), { recursive: true, force: true });
}
const { largest, peakRssKiB } = measured;
console.log(`measured: largest state payload ${largest.bytes} bytes (${largest.state} ${largest.what}, ${largest.input})`);
console.log(`measured: peak RSS per function (KiB): ${JSON.stringify(peakRssKiB)}`);
console.log(`measured: ${executions} executions in ${((Date.now() - started) / 1000).toFixed(1)} s; logs in ${work}`);
for (const spec of taskFunctions) {
  const peakMiB = (peakRssKiB[spec.logicalId] ?? 0) / 1024;
  if (peakMiB >= spec.memorySize) {
    failed++;
    console.log(`FAILED - ${spec.logicalId} peaked at ${peakMiB.toFixed(1)} MiB, MemorySize ${spec.memorySize}`);
  }
}
console.log(`e2e: ${passed} passed, ${failed} failed${ignored ? `, ${ignored} ignored` : ""}`);
process.exitCode = failed > 0 ? 1 : 0;
