// The deployed stack as the compiled CloudFormation template describes it: the state machine
// definition, each Lambda function (zip, environment, timeout, memory), the table and the
// topic. Nothing here is written by hand: a function, variable or state added to
// serverless.yml or the ASL reaches the end-to-end run through the template.

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

import { ACCOUNT, REGION } from "./moto.mjs";

const lambdaArn = (name) => `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${name}`;

export class Stack {
  constructor(templatePath) {
    this.template = JSON.parse(fs.readFileSync(templatePath, "utf8"));
    this.resources = this.template.Resources;
  }

  ofType(type) {
    return Object.entries(this.resources).filter(([, r]) => r.Type === type);
  }

  only(type) {
    const found = this.ofType(type);
    if (found.length !== 1) throw new Error(`expected one ${type} in the template, found ${found.length}`);
    return found[0];
  }

  /** The table's CreateTable request: its own properties, minus what moto does not model. */
  tableRequest() {
    const [, { Properties: p }] = this.only("AWS::DynamoDB::Table");
    const { TableName, BillingMode, AttributeDefinitions, KeySchema, LocalSecondaryIndexes } = p;
    return { TableName, BillingMode, AttributeDefinitions, KeySchema, LocalSecondaryIndexes };
  }

  /** The pipeline's topic (the other one, OpsTopic, takes the alarms). */
  topicName() {
    const topic = this.resources.AlertTopic;
    if (topic?.Type !== "AWS::SNS::Topic") throw new Error("no AlertTopic in the template");
    return topic.Properties.TopicName;
  }

  /**
   * Resolves the intrinsic functions the template uses in environments and in the
   * definition's substitutions, against the resources created on moto (`refs`: logical id ->
   * physical id). Anything else is an error: a new kind of value must be wired here knowingly.
   */
  resolve(value, refs) {
    if (typeof value === "string") return value;
    if (value?.Ref !== undefined) {
      if (!(value.Ref in refs)) throw new Error(`no physical id for {"Ref": "${value.Ref}"}`);
      return refs[value.Ref];
    }
    const getAtt = value?.["Fn::GetAtt"];
    if (getAtt && getAtt[1] === "Arn" && this.resources[getAtt[0]]?.Type === "AWS::Lambda::Function") {
      return lambdaArn(this.resources[getAtt[0]].Properties.FunctionName);
    }
    throw new Error(`cannot resolve ${JSON.stringify(value)}`);
  }

  /**
   * Every Lambda function: logical id, name, ARN, timeout, memory, resolved environment and
   * the zip its `Code.S3Key` names (`<fn>.zip`, found as `<lambdaDir>/<fn>/<fn>.zip`).
   */
  functions(refs, lambdaDir) {
    return this.ofType("AWS::Lambda::Function").map(([logicalId, { Properties: p }]) => {
      const zipName = path.basename(p.Code.S3Key);
      const variables = p.Environment?.Variables ?? {};
      return {
        logicalId,
        name: p.FunctionName,
        arn: lambdaArn(p.FunctionName),
        timeoutSeconds: p.Timeout,
        memorySize: p.MemorySize,
        handler: p.Handler,
        runtime: p.Runtime,
        zip: path.join(lambdaDir, zipName.replace(/\.zip$/, ""), zipName),
        env: Object.fromEntries(Object.entries(variables).map(([k, v]) => [k, this.resolve(v, refs)])),
      };
    });
  }

  /** The state machine definition, with the template's `Fn::Sub` substitutions made. */
  definition(refs) {
    const [, { Properties: p }] = this.only("AWS::StepFunctions::StateMachine");
    const sub = p.DefinitionString["Fn::Sub"];
    const [text, variables] = typeof sub === "string" ? [sub, {}] : sub;
    const pseudo = { "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws" };
    const substituted = text.replace(/\$\{([^}]+)\}/g, (_, name) => {
      if (name in variables) return this.resolve(variables[name], refs);
      if (name in pseudo) return pseudo[name];
      throw new Error(`definition: unknown substitution \${${name}}`);
    });
    return JSON.parse(substituted);
  }
}

/**
 * Unzips a deployment zip as Lambda does into its task root, after checking what Lambda
 * needs of a `provided.al2023` zip: a `bootstrap` at the root with the executable bit.
 */
export function unpack(zip, taskRoot) {
  const python = process.env.E2E_PYTHON ?? "python3";
  const mode = execFileSync(
    python,
    [
      "-c",
      `import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
info = z.getinfo("bootstrap")
z.extractall(sys.argv[2])
print(format((info.external_attr >> 16) & 0o777, "o"))`,
      zip,
      taskRoot,
    ],
    { encoding: "utf8" },
  ).trim();
  if ((Number.parseInt(mode, 8) & 0o111) === 0) {
    throw new Error(`${zip}: bootstrap is not executable in the zip (mode ${mode}); Lambda could not start it`);
  }
  const bootstrap = path.join(taskRoot, "bootstrap");
  fs.chmodSync(bootstrap, Number.parseInt(mode, 8));
  return bootstrap;
}
