#!/usr/bin/env bash
# The one deploy command: install tools, build the Lambdas, check the
# packaged stack offline, then `serverless deploy`.
#
#   scripts/deploy.sh --stage dev|prod [--region us-east-1] [--arch arm64|x86_64]
#                     [--alert-email someone@example.com] [--ops-email ops@example.com]
#                     [--no-build] [--no-check]
#
# AWS credentials come from the environment (AWS_PROFILE, SSO, OIDC, ...).
# --no-build deploys the zips already in target/lambda with the architecture
# recorded in target/lambda/build.json (the deploy workflow puts CI's artifact
# there); --no-check skips tests/deploy/check.sh (CI ran it on that artifact).
# An empty email is the same as none.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

STAGE=""
REGION="${AWS_REGION:-us-east-1}"
ARCH="${ARCH:-arm64}"
BUILD=1
CHECK=1
params=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) STAGE="$2"; shift 2 ;;
    --region) REGION="$2"; shift 2 ;;
    --arch) ARCH="$2"; shift 2 ;;
    --alert-email) [ -z "$2" ] || params+=(--param="alertEmail=$2"); shift 2 ;;
    --ops-email) [ -z "$2" ] || params+=(--param="opsEmail=$2"); shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --no-check) CHECK=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "deploy: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -n "$STAGE" ] || { echo "deploy: --stage is required (e.g. --stage dev)" >&2; exit 2; }

bash scripts/setup-tools.sh
if [ $BUILD = 1 ]; then
  bash scripts/build-lambdas.sh --arch "$ARCH"
fi
[ -s target/lambda/build.json ] || { echo "deploy: nothing built in target/lambda" >&2; exit 1; }
if [ $CHECK = 1 ]; then
  ARTIFACT_DIR=target/lambda COVID_ETL_SKIP_SETUP=1 bash tests/deploy/check.sh
fi

export SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off
node_modules/.bin/serverless deploy --stage "$STAGE" --region "$REGION" ${params[@]+"${params[@]}"} --conceal
node_modules/.bin/serverless info --stage "$STAGE" --region "$REGION" --verbose
