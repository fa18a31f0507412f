// The deployed definition executed by an interpreter that is not ours: aws-local-stepfunctions
// (pinned in package.json). Its Lambda Tasks go to the Runtime API emulator's functions, its
// `sns:publish` Task to a real Publish on moto.
//
// Where the interpreter is not AWS, the harness works around it here, explicitly, and never in
// the product (aws-local-stepfunctions 3.0.0; each rewrite keeps AWS's semantics):
//
// 1. Node 20 has no `Promise.withResolvers` (the interpreter's Task timeout uses it): polyfilled.
// 2. `$$.Execution.Input` inside a Parallel branch evaluates to the branch's input, not the
//    execution's: such a parameter is replaced by the execution input itself, as a literal.
// 3. `"ResultPath": "$"` adds a key named `$` instead of replacing the input: the field is
//    removed, which means the same in ASL (`$` is ResultPath's default).
// 4. `States.Format` deletes every backslash of its result (a JSON `Cause` loses its escapes):
//    it is rewritten to `States.Array` of the same arguments (results that are not strings are
//    left alone) and the Task's handler formats the array as AWS does.
//
// Time: a scenario that waits for a timeout divides the TimeoutSeconds of the Tasks it names
// (and the emulator their functions' timeouts) by one factor, so it keeps the template's
// proportions without its minutes. Retry delays stay real.

import { ExecutionTimeoutError, StateMachine } from "aws-local-stepfunctions";

import { jsonBytes } from "./util.mjs";

Promise.withResolvers ??= function withResolvers() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};

const EXECUTION_INPUT = "$$.Execution.Input";
const FORMAT = /^States\.Format\((.*)\)$/s;

/** Every state of the definition, branches included: [name, state, insideParallel]. */
function* allStates(machine, insideParallel = false) {
  for (const [name, state] of Object.entries(machine.States)) {
    yield [name, state, insideParallel];
    for (const branch of state.Branches ?? []) yield* allStates(branch, true);
  }
}

/**
 * Rewrites a payload template for workarounds 2 and 4; `formatted` collects the dotted paths
 * of the keys whose value the Task handler must format.
 */
function adaptTemplate(template, executionInput, insideParallel, formatted, prefix = "") {
  const out = {};
  for (const [key, value] of Object.entries(template)) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      out[key] = adaptTemplate(value, executionInput, insideParallel, formatted, `${prefix}${key}.`);
      continue;
    }
    if (!key.endsWith(".$") || typeof value !== "string") {
      out[key] = value;
      continue;
    }
    if (insideParallel && value.startsWith(EXECUTION_INPUT)) {
      if (value !== EXECUTION_INPUT) throw new Error(`workaround 2 handles ${EXECUTION_INPUT} only, not ${value}`);
      out[key.slice(0, -2)] = executionInput;
      continue;
    }
    const format = value.match(FORMAT);
    if (format) {
      if (format[1].split("'")[1]?.includes("\\")) throw new Error(`workaround 4: escapes in ${value}`);
      out[key] = `States.Array(${format[1]})`;
      formatted.push(`${prefix}${key.slice(0, -2)}`);
      continue;
    }
    out[key] = value;
  }
  return out;
}

/** AWS's States.Format over the arguments workaround 4 collected: values inserted as they are. */
function formatArray([template, ...args]) {
  let i = 0;
  return template.replace(/\{\}/g, () => {
    const v = args[i++];
    return typeof v === "string" ? v : JSON.stringify(v);
  });
}

function applyFormats(input, paths) {
  for (const dotted of paths) {
    const keys = dotted.split(".");
    const last = keys.pop();
    const parent = keys.reduce((o, k) => o[k], input);
    parent[last] = formatArray(parent[last]);
  }
  return input;
}

/**
 * The definition as the interpreter runs it for one execution: workarounds applied, and the
 * TimeoutSeconds of the Tasks in `scale.states` divided by `scale.factor`. Also returns the
 * `Format` paths per Task state.
 */
export function adapt(definition, executionInput, scale = { states: [], factor: 1 }) {
  const machine = structuredClone(definition);
  const formats = {};
  for (const [name, state, insideParallel] of allStates(machine)) {
    if (state.ResultPath === "$") delete state.ResultPath;
    if (scale.states.includes(name)) state.TimeoutSeconds /= scale.factor;
    if (state.Parameters && typeof state.Parameters === "object") {
      const formatted = [];
      state.Parameters = adaptTemplate(state.Parameters, executionInput, insideParallel, formatted);
      if (formatted.length > 0) {
        if (state.Type !== "Task") throw new Error(`workaround 4 applies to Task states only, not ${name}`);
        formats[name] = formatted;
      }
    }
  }
  return { machine, formats };
}

/** The Task states of the definition, branches included: name -> Resource. */
export function taskResources(definition) {
  return Object.fromEntries(
    [...allStates(definition)].filter(([, s]) => s.Type === "Task").map(([name, s]) => [name, s.Resource]),
  );
}

/** A failed Task as Step Functions reports it: the error name and its Cause. */
class TaskError extends Error {
  constructor(name, cause) {
    super(cause);
    this.name = name;
  }
}

/**
 * Runs one execution. `functions` maps Lambda ARNs to emulated functions; `publish` performs
 * the `sns:publish` integration. Resolves with
 * `{status, output, error, events, visited, sizes}` where `sizes` lists every state's input
 * and output size in bytes.
 */
export async function execute({ definition, input, name, functions, publish, scale }) {
  // Validates the definition as deployed (timeouts unscaled), once per execution.
  new StateMachine(adapt(definition, input).machine, { validationOptions: { checkArn: true } });
  const { machine, formats } = adapt(definition, input, scale);
  const handlers = {};
  for (const [state, resource] of Object.entries(taskResources(definition))) {
    if (resource === "arn:aws:states:::sns:publish") {
      handlers[state] = async (params) => {
        try {
          return await publish(applyFormats(params, formats[state] ?? []));
        } catch (e) {
          throw new TaskError(`SNS.${e.code.endsWith("Exception") ? e.code : `${e.code}Exception`}`, e.message);
        }
      };
    } else if (functions.has(resource)) {
      const fn = functions.get(resource);
      handlers[state] = async (payload) => {
        const outcome = await fn.invoke(applyFormats(payload, formats[state] ?? []));
        if (outcome.ok) return outcome.result;
        // A Lambda function error's Cause is the error document the function returned.
        const cause = JSON.stringify({ errorType: outcome.errorType, errorMessage: outcome.errorMessage });
        throw new TaskError(outcome.errorType, cause);
      };
    } else {
      throw new Error(`state ${state}: no emulated resource for ${resource}`);
    }
  }
  const executionArn = `arn:aws:states:us-east-1:123456789012:execution:covid-etl-ci:${name}`;
  const run = new StateMachine(machine, { validationOptions: { noValidate: true } }).run(input, {
    overrides: { taskResourceLocalHandlers: handlers },
    context: { Execution: { Id: executionArn, Name: name } },
  });
  const events = [];
  const collected = (async () => {
    for await (const event of run.eventLogs) events.push(event);
  })();
  let status;
  let output;
  let error;
  try {
    output = await run.result;
    status = "SUCCEEDED";
  } catch (e) {
    if (e instanceof ExecutionTimeoutError) {
      status = "TIMED_OUT";
    } else {
      status = "FAILED";
      error = { Error: e.cause?.name ?? e.name, Cause: e.cause?.message ?? e.message };
    }
  }
  await Promise.race([collected, new Promise((resolve) => setTimeout(resolve, 1000))]);
  const visited = events.filter((e) => e.type === "StateEntered").map((e) => e.state.name);
  const sizes = events
    .filter((e) => e.type === "StateEntered" || e.type === "StateExited")
    .map((e) => ({
      state: e.state.name,
      what: e.type === "StateEntered" ? "input" : "output",
      bytes: jsonBytes(e.type === "StateEntered" ? e.state.input : e.state.output),
    }));
  return { status, output, error, events, visited, sizes, executionArn };
}
