#!/usr/bin/env node
// Render statemachine/etl.asl.json the way CloudFormation will see it after
// deployment: every {"Fn::GetAtt": [Fn, "Arn"]} becomes a Lambda ARN and
// every {"Ref": Resource} a plausible ARN, all in a fake account. Used by
// tests/deploy/check.sh to run asl-validator's ARN checks on real-looking
// Resource strings (the raw file has objects there, which asl-validator
// accepts without looking at them).
//
//   node tests/deploy/render-asl.mjs IN.json OUT.json [stage] [region]
import { readFileSync, writeFileSync } from 'node:fs';

const [, , input, output, stage = 'ci', region = 'us-east-1'] = process.argv;
if (!input || !output) {
  console.error('usage: render-asl.mjs IN.json OUT.json [stage] [region]');
  process.exit(2);
}
const account = '123456789012';
const service = 'covid-etl';
const kebab = (s) => s.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
const refs = {
  AlertTopic: `arn:aws:sns:${region}:${account}:${service}-${stage}-alerts`,
};
const seen = { getAtt: new Set(), ref: new Set() };

function render(node) {
  if (Array.isArray(node)) return node.map(render);
  if (node === null || typeof node !== 'object') return node;
  const keys = Object.keys(node);
  if (keys.length === 1 && keys[0] === 'Fn::GetAtt') {
    const [logicalId, attr] = node['Fn::GetAtt'];
    if (attr !== 'Arn') throw new Error(`unsupported Fn::GetAtt attribute ${attr}`);
    seen.getAtt.add(logicalId);
    return `arn:aws:lambda:${region}:${account}:function:${service}-${stage}-${kebab(logicalId)}`;
  }
  if (keys.length === 1 && keys[0] === 'Ref') {
    const id = node.Ref;
    if (!(id in refs)) throw new Error(`no fake value for {"Ref": "${id}"}`);
    seen.ref.add(id);
    return refs[id];
  }
  if (keys.some((k) => k.startsWith('Fn::'))) {
    throw new Error(`unsupported intrinsic ${JSON.stringify(node)}`);
  }
  return Object.fromEntries(keys.map((k) => [k, render(node[k])]));
}

const rendered = render(JSON.parse(readFileSync(input, 'utf8')));
writeFileSync(output, `${JSON.stringify(rendered, null, 2)}\n`);
console.log(`rendered ${input} -> ${output}: Fn::GetAtt ${[...seen.getAtt].join(', ')}; Ref ${[...seen.ref].join(', ')}`);
