// What AWS does after an execution ends badly, for the harness: the EventBridge rule on "Step
// Functions Execution Status Change" (FAILED, TIMED_OUT, ABORTED) invokes the notify function,
// which reads the execution's history with GetExecutionHistory. The interpreter is not Step
// Functions, so this module answers GetExecutionHistory itself, from the interpreter's event
// log converted to AWS's event shapes, on 127.0.0.1; the notify function reaches it through
// AWS_ENDPOINT_URL_SFN (the SDK's service-specific endpoint), everything else through moto.

import http from "node:http";

/** The EventBridge rule's statuses (serverless.yml, the status-change rule). */
export const BAD_ENDINGS = ["FAILED", "TIMED_OUT", "ABORTED"];

/** AWS's event type prefix of each state type. */
const STATE_TYPE = { Task: "Task", Parallel: "Parallel", Pass: "Pass", Choice: "Choice", Succeed: "Succeed", Fail: "Fail" };

/**
 * The interpreter's event log (aws-local-stepfunctions `eventLogs`) as AWS history events:
 * `{StateType}StateEntered/Exited`, `LambdaFunctionFailed` or `LambdaFunctionTimedOut` for a
 * Lambda Task's failure, and the execution's start and end. `lambdaStates` names the states
 * whose resource is a Lambda function.
 */
export function awsHistory(log, lambdaStates) {
  const events = [];
  const enteredId = new Map();
  const add = (event, previous) => {
    const id = events.length + 1;
    events.push({ id, previousEventId: previous ?? id - 1, ...event });
    return id;
  };
  for (const e of log) {
    const timestamp = e.timestamp / 1000;
    const text = (v) => JSON.stringify(v ?? null);
    switch (e.type) {
      case "ExecutionStarted":
        add({ timestamp, type: "ExecutionStarted", executionStartedEventDetails: { input: text(e.input) } });
        break;
      case "StateEntered": {
        const type = `${STATE_TYPE[e.state.type] ?? e.state.type}StateEntered`;
        const id = add({ timestamp, type, stateEnteredEventDetails: { name: e.state.name, input: text(e.state.input) } });
        enteredId.set(e.state.name, id);
        break;
      }
      case "StateExited":
        add({
          timestamp,
          type: `${STATE_TYPE[e.state.type] ?? e.state.type}StateExited`,
          stateExitedEventDetails: { name: e.state.name, output: text(e.state.output) },
        });
        break;
      case "StateFailed":
        if (lambdaStates.includes(e.state.name)) {
          const timedOut = e.Error === "States.Timeout";
          const details = { error: e.Error, cause: typeof e.Cause === "string" ? e.Cause : text(e.Cause) };
          add(
            timedOut
              ? { timestamp, type: "LambdaFunctionTimedOut", lambdaFunctionTimedOutEventDetails: details }
              : { timestamp, type: "LambdaFunctionFailed", lambdaFunctionFailedEventDetails: details },
            enteredId.get(e.state.name),
          );
        }
        break;
      case "ExecutionFailed":
        add({
          timestamp,
          type: "ExecutionFailed",
          executionFailedEventDetails: { error: e.Error, cause: typeof e.Cause === "string" ? e.Cause : text(e.Cause) },
        });
        break;
      default:
        break;
    }
  }
  return events;
}

/** GetExecutionHistory on 127.0.0.1, answering from the histories `put` here. */
export class HistoryServer {
  async start() {
    this.histories = new Map();
    this.server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (chunk) => (body += chunk));
      req.on("end", () => {
        const target = req.headers["x-amz-target"];
        const { executionArn } = JSON.parse(body || "{}");
        const events = this.histories.get(executionArn);
        const headers = { "content-type": "application/x-amz-json-1.0" };
        if (target !== "AWSStepFunctions.GetExecutionHistory" || !events) {
          res.writeHead(400, headers).end(JSON.stringify({ __type: "ExecutionDoesNotExist", message: `${target} ${executionArn}` }));
          return;
        }
        res.writeHead(200, headers).end(JSON.stringify({ events }));
      });
    });
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.endpoint = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  put(executionArn, events) {
    this.histories.set(executionArn, events);
  }

  async stop() {
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** The rule's event for an execution that ended with `result` (as `execute` returns it). */
export function statusChangeEvent(result, name, startedAt) {
  return {
    version: "0",
    "detail-type": "Step Functions Execution Status Change",
    source: "aws.states",
    detail: {
      executionArn: result.executionArn,
      name,
      status: result.status,
      startDate: startedAt,
      stopDate: Date.now(),
      error: result.error?.Error ?? null,
      cause: result.error?.Cause ?? null,
    },
  };
}
