// moto's standalone server (PyPI `moto[server]`, pinned in requirements-dev.txt, in .venv) on a
// free 127.0.0.1 port, and the few DynamoDB, SNS and SQS calls the harness itself makes, as plain
// HTTP requests in each service's own protocol. The functions under test talk to the same
// server through the AWS SDK (AWS_ENDPOINT_URL); the harness needs no SDK of its own.

import { spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import path from "node:path";

import { freePort, sleep } from "./util.mjs";

export const REGION = "us-east-1";
export const ACCOUNT = "123456789012";

/** Any signature: moto does not check it, it only reads the region and service from the scope. */
function authorization(service) {
  return `AWS4-HMAC-SHA256 Credential=testing/20200101/${REGION}/${service}/aws4_request, SignedHeaders=host, Signature=0`;
}

export class Moto {
  static async start(bin, dir) {
    const port = await freePort();
    const log = fs.openSync(path.join(dir, "moto.log"), "w");
    const child = spawn(bin, ["-H", "127.0.0.1", "-p", String(port)], {
      cwd: dir,
      env: { ...process.env, MOTO_RECORDER_FILEPATH: path.join(dir, "recording.jsonl") },
      stdio: ["ignore", log, log],
    });
    const moto = new Moto(child, `http://127.0.0.1:${port}`, dir);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`moto exited with ${child.exitCode}:\n${moto.log()}`);
      try {
        await fetch(`${moto.endpoint}/moto-api/reset`);
        return moto;
      } catch {
        if (Date.now() > deadline) throw new Error(`moto did not answer within 60 s:\n${moto.log()}`);
        await sleep(100);
      }
    }
  }

  constructor(child, endpoint, dir) {
    this.child = child;
    this.endpoint = endpoint;
    this.dir = dir;
  }

  log() {
    return fs.readFileSync(path.join(this.dir, "moto.log"), "utf8");
  }

  async stop() {
    if (this.child.exitCode === null) {
      this.child.kill("SIGKILL");
      await once(this.child, "exit");
    }
  }

  /** A JSON-protocol call (DynamoDB, SQS): the parsed answer, or an Error named by its `__type`. */
  async json(service, target, body) {
    const response = await fetch(this.endpoint, {
      method: "POST",
      headers: {
        "content-type": "application/x-amz-json-1.0",
        "x-amz-target": target,
        authorization: authorization(service),
      },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    const parsed = text ? JSON.parse(text) : {};
    if (!response.ok) {
      const error = new Error(`${target}: HTTP ${response.status}: ${text}`);
      error.code = String(parsed.__type ?? "").split("#").pop();
      throw error;
    }
    return parsed;
  }

  /** A query-protocol call (SNS): the XML answer as text, or an Error named by its `<Code>`. */
  async query(service, params) {
    const response = await fetch(this.endpoint, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded; charset=utf-8",
        authorization: authorization(service),
      },
      body: new URLSearchParams(params).toString(),
    });
    const text = await response.text();
    if (!response.ok) {
      const error = new Error(`${params.Action}: HTTP ${response.status}: ${text}`);
      error.code = xmlField(text, "Code") ?? "InternalError";
      throw error;
    }
    return text;
  }

  // --- DynamoDB -------------------------------------------------------------------------

  dynamodb(operation, body) {
    return this.json("dynamodb", `DynamoDB_20120810.${operation}`, body);
  }

  /** Every item of the table (consistent Scan, all pages), as DynamoDB's attribute-value maps. */
  async scan(table) {
    const items = [];
    let start;
    do {
      const page = await this.dynamodb("Scan", {
        TableName: table,
        ConsistentRead: true,
        ...(start && { ExclusiveStartKey: start }),
      });
      items.push(...page.Items);
      start = page.LastEvaluatedKey;
    } while (start);
    return items;
  }

  // --- SNS and SQS ----------------------------------------------------------------------

  async createTopic(name) {
    const xml = await this.query("sns", { Action: "CreateTopic", Version: "2010-03-31", Name: name });
    return xmlField(xml, "TopicArn");
  }

  /** SNS Publish with the parameters of Step Functions' `sns:publish` integration. */
  async publish({ TopicArn, Subject, Message, MessageAttributes = {} }) {
    const params = { Action: "Publish", Version: "2010-03-31", TopicArn, Message };
    if (Subject !== undefined) params.Subject = Subject;
    Object.entries(MessageAttributes).forEach(([name, value], i) => {
      const prefix = `MessageAttributes.entry.${i + 1}`;
      params[`${prefix}.Name`] = name;
      params[`${prefix}.Value.DataType`] = value.DataType;
      params[`${prefix}.Value.StringValue`] = value.StringValue;
    });
    const xml = await this.query("sns", params);
    return { MessageId: xmlField(xml, "MessageId") };
  }

  /** A queue subscribed to the topic, as an email or chat subscriber would be: its URL. */
  async subscribeQueue(topicArn, name) {
    const { QueueUrl } = await this.json("sqs", "AmazonSQS.CreateQueue", { QueueName: name });
    const queueArn = `arn:aws:sqs:${REGION}:${ACCOUNT}:${name}`;
    await this.query("sns", {
      Action: "Subscribe",
      Version: "2010-03-31",
      TopicArn: topicArn,
      Protocol: "sqs",
      Endpoint: queueArn,
    });
    return QueueUrl;
  }

  /**
   * Every message waiting on the queue, removed from it: SNS's envelope
   * (`{Subject, Message, MessageAttributes: {status: {Type, Value}}, …}`), parsed.
   */
  async drain(queueUrl) {
    const messages = [];
    for (;;) {
      const { Messages = [] } = await this.json("sqs", "AmazonSQS.ReceiveMessage", {
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
      });
      if (Messages.length === 0) return messages;
      for (const m of Messages) {
        messages.push(JSON.parse(m.Body));
        await this.json("sqs", "AmazonSQS.DeleteMessage", {
          QueueUrl: queueUrl,
          ReceiptHandle: m.ReceiptHandle,
        });
      }
    }
  }

  // --- server-side request recording ----------------------------------------------------

  async record() {
    await fetch(`${this.endpoint}/moto-api/recorder/reset-recording`, { method: "POST" });
    await fetch(`${this.endpoint}/moto-api/recorder/start-recording`, { method: "POST" });
  }

  /** How many requests with this `X-Amz-Target` the server received since `record()`. */
  async countTarget(target) {
    const text = await (await fetch(`${this.endpoint}/moto-api/recorder/download-recording`)).text();
    return text
      .split("\n")
      .filter((line) => line.trim())
      .map((line) => JSON.parse(line).headers ?? {})
      .filter((headers) =>
        Object.entries(headers).some(([k, v]) => k.toLowerCase() === "x-amz-target" && v === target),
      ).length;
  }
}

function xmlField(xml, name) {
  return xml.match(new RegExp(`<${name}>([^<]*)</${name}>`))?.[1];
}
