#!/usr/bin/env bash
# Smoke test of a deployed stage: one execution that goes through merge and load,
# then the dashboard's API. Exits 0 only if both prove what they should.
#
#   scripts/smoke-test.sh --stage dev|prod --mode full-load|dry-run [--region us-east-1] [--timeout 2100]
#
#   --mode full-load  input {"fullReload": true}: both real sources downloaded in full,
#                     merged and every row written to the stage's table. The execution
#                     must SUCCEED with rows written. For dev (it sends the usual success
#                     notification to that stage's subscribers).
#   --mode dry-run    input {"dryRun": true, "fullReload": true}: the same downloads, merge
#                     and diff, nothing written. The notification carries the message
#                     attribute dryRun=true, which the email subscription's filter drops:
#                     no subscriber is emailed. For prod.
#
# Then, in both modes, GET <DashboardUrl>/api/series must answer 200 with `latest.date`
# equal to the newest merged day of that execution (`load.latest`), and GET <DashboardUrl>/
# must serve the page. On a brand-new prod table the dry run cannot make that true: load it
# once with --mode full-load (docs/DEPLOY.md, "First deploy").
#
# Needs the AWS CLI, curl and python3, and credentials allowed to read the stack's
# outputs and to start/describe this state machine's executions.
set -euo pipefail

STAGE=""
MODE=""
REGION="${AWS_REGION:-us-east-1}"
TIMEOUT=2100   # the ASL's TimeoutSeconds is 1800
POLL=15

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) STAGE="$2"; shift 2 ;;
    --mode) MODE="$2"; shift 2 ;;
    --region) REGION="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "smoke-test: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -n "$STAGE" ] || { echo "smoke-test: --stage is required" >&2; exit 2; }
case "$MODE" in
  full-load) INPUT='{"fullReload": true}' ;;
  dry-run) INPUT='{"dryRun": true, "fullReload": true}' ;;
  *) echo "smoke-test: --mode must be full-load or dry-run" >&2; exit 2 ;;
esac

fail() { echo "smoke-test: FAILED: $*" >&2; exit 1; }

STACK="covid-etl-$STAGE"
output_of() {
  aws cloudformation describe-stacks --region "$REGION" --stack-name "$STACK" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
SM_ARN="$(output_of EtlStateMachineArn)"
DASHBOARD_URL="$(output_of DashboardUrl)"
[ -n "$SM_ARN" ] && [ "$SM_ARN" != None ] || fail "stack $STACK has no EtlStateMachineArn output"
[ -n "$DASHBOARD_URL" ] && [ "$DASHBOARD_URL" != None ] || fail "stack $STACK has no DashboardUrl output"

# --- 1. one execution through merge and load ------------------------------------
NAME="smoke-$MODE-$(date -u +%Y%m%dT%H%M%SZ)-${GITHUB_SHA:-manual}"
NAME="${NAME:0:80}"
EXEC_ARN="$(aws stepfunctions start-execution --region "$REGION" \
  --state-machine-arn "$SM_ARN" --name "$NAME" --input "$INPUT" \
  --query executionArn --output text)"
echo "smoke-test: started $EXEC_ARN with $INPUT"

deadline=$((SECONDS + TIMEOUT))
status=RUNNING
while [ "$status" = RUNNING ]; do
  [ $SECONDS -lt $deadline ] || fail "execution still RUNNING after ${TIMEOUT}s"
  sleep "$POLL"
  status="$(aws stepfunctions describe-execution --region "$REGION" \
    --execution-arn "$EXEC_ARN" --query status --output text)"
  echo "smoke-test: $status (${SECONDS}s)"
done
if [ "$status" != SUCCEEDED ]; then
  aws stepfunctions get-execution-history --region "$REGION" --execution-arn "$EXEC_ARN" \
    --reverse-order --max-results 8 --output json >&2 || true
  fail "execution ended $status"
fi

OUTPUT="$(aws stepfunctions describe-execution --region "$REGION" \
  --execution-arn "$EXEC_ARN" --query output --output text)"
# The execution's output is the notify step's summary; its `load` is diff-and-load's report.
LATEST="$(MODE="$MODE" python3 -c '
import json, os, sys
out = json.load(sys.stdin)
load = out.get("load")
if out.get("status") != "SUCCEEDED" or not load:
    sys.exit("no load report in the output: merge and load did not run (status %s)" % out.get("status"))
rows = load["inserted"] + load["updated"] + load["unchanged"]
if rows == 0 or not load.get("latest"):
    sys.exit("the merged series is empty")
if not load["fullReload"]:
    sys.exit("not a full reload")
if os.environ["MODE"] == "dry-run":
    if not load["dryRun"] or load["written"] != 0:
        sys.exit("a dry run wrote %d rows" % load["written"])
elif load["dryRun"] or load["written"] != rows:
    sys.exit("a full load wrote %d of %d rows" % (load["written"], rows))
print(load["latest"].split(",")[0])
' <<<"$OUTPUT")" || fail "execution output: $OUTPUT"
echo "smoke-test: execution SUCCEEDED, merged series up to $LATEST"

# --- 2. the dashboard and its API --------------------------------------------------
SERIES="$(curl -fsS --max-time 30 "$DASHBOARD_URL/api/series")" || fail "GET $DASHBOARD_URL/api/series"
API_LATEST="$(python3 -c 'import json, sys; l = json.load(sys.stdin).get("latest"); print(l["date"] if l else "none")' <<<"$SERIES")" \
  || fail "GET /api/series: not the series JSON: ${SERIES:0:200}"
[ "$API_LATEST" = "$LATEST" ] || fail "GET /api/series: latest day $API_LATEST, the execution merged up to $LATEST"
curl -fsS --max-time 30 -o /dev/null "$DASHBOARD_URL/" || fail "GET $DASHBOARD_URL/ (the dashboard page)"
echo "smoke-test: $DASHBOARD_URL/api/series answers with the latest day, $API_LATEST"
echo "smoke-test: SUCCEEDED ($MODE on $STAGE)"
