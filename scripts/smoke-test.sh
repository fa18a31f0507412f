#!/usr/bin/env bash
# Start one execution of the deployed state machine and wait for it to end.
# Exits 0 only if it SUCCEEDED; otherwise prints the last history events.
#
#   scripts/smoke-test.sh [--stage prod] [--region us-east-1] [--input '{}'] [--timeout 2100]
#
# Needs the AWS CLI and credentials allowed to read the stack outputs and to
# start/describe executions. The state machine ARN comes from the stack's
# outputs (stack covid-etl-<stage>), so nothing account-specific is needed.
set -euo pipefail

STAGE=prod
REGION="${AWS_REGION:-us-east-1}"
INPUT='{}'
TIMEOUT=2100   # the ASL's TimeoutSeconds is 1800
POLL=15

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) STAGE="$2"; shift 2 ;;
    --region) REGION="$2"; shift 2 ;;
    --input) INPUT="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "smoke-test: unknown argument: $1" >&2; exit 2 ;;
  esac
done

STACK="covid-etl-$STAGE"
SM_ARN="$(aws cloudformation describe-stacks --region "$REGION" --stack-name "$STACK" \
  --query "Stacks[0].Outputs[?OutputKey=='EtlStateMachineArn'].OutputValue" --output text)"
if [ -z "$SM_ARN" ] || [ "$SM_ARN" = None ]; then
  echo "smoke-test: stack $STACK has no EtlStateMachineArn output" >&2
  exit 1
fi

NAME="smoke-$(date -u +%Y%m%dT%H%M%SZ)-${GITHUB_SHA:-manual}"
NAME="${NAME:0:80}"
EXEC_ARN="$(aws stepfunctions start-execution --region "$REGION" \
  --state-machine-arn "$SM_ARN" --name "$NAME" --input "$INPUT" \
  --query executionArn --output text)"
echo "smoke-test: started $EXEC_ARN"

deadline=$((SECONDS + TIMEOUT))
status=RUNNING
while [ "$status" = RUNNING ]; do
  if [ $SECONDS -ge $deadline ]; then
    echo "smoke-test: still RUNNING after ${TIMEOUT}s" >&2
    exit 1
  fi
  sleep "$POLL"
  status="$(aws stepfunctions describe-execution --region "$REGION" \
    --execution-arn "$EXEC_ARN" --query status --output text)"
  echo "smoke-test: $status (${SECONDS}s)"
done

if [ "$status" != SUCCEEDED ]; then
  echo "smoke-test: execution ended $status; last events:" >&2
  aws stepfunctions get-execution-history --region "$REGION" --execution-arn "$EXEC_ARN" \
    --reverse-order --max-results 8 --output json >&2 || true
  exit 1
fi
aws stepfunctions describe-execution --region "$REGION" --execution-arn "$EXEC_ARN" \
  --query output --output text
echo "smoke-test: SUCCEEDED"
