#!/usr/bin/env bash
# The packaged stack end to end (issue #17; the harness is tests/e2e/run.mjs):
#
#   1. the Lambda zips for this machine's architecture (scripts/build-lambdas.sh), which the
#      emulator runs natively — skipped with E2E_LAMBDA_DIR=DIR, zips already built there;
#   2. the CloudFormation template compiled from those zips (serverless package --stage ci),
#      so the template's architecture and S3 keys are those of the zips that run;
#   3. node tests/e2e/run.mjs: every scenario, closing with `e2e: N passed, N failed`.
#
#   tests/e2e/run.sh [--profile PROFILE]   (passed to build-lambdas.sh; default: lambda)
#
# Needs scripts/setup-tools.sh's node_modules/ and .venv/ (moto, cargo-lambda, zig).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

build_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) build_args+=(--profile "${2:?--profile needs a value}"); shift 2 ;;
    *) echo "e2e: unknown argument: $1" >&2; exit 2 ;;
  esac
done

case "$(uname -m)" in
  x86_64) ARCH=x86_64 ;;
  aarch64|arm64) ARCH=arm64 ;;
  *) echo "e2e: no Lambda architecture for $(uname -m)" >&2; exit 1 ;;
esac

if [ -n "${E2E_LAMBDA_DIR:-}" ]; then
  LAMBDA_DIR="$(cd "$E2E_LAMBDA_DIR" && pwd)"
else
  LAMBDA_DIR="$ROOT/target/lambda-e2e"
  t0=$SECONDS
  bash scripts/build-lambdas.sh --arch "$ARCH" --lambda-dir "$LAMBDA_DIR" "${build_args[@]}"
  echo "measured: Lambda zips built in $((SECONDS - t0)) s"
fi

PACKAGE="$(mktemp -d)"
trap 'rm -rf "$PACKAGE"' EXIT
(
  export AWS_ACCESS_KEY_ID=dummy AWS_SECRET_ACCESS_KEY=dummy AWS_SESSION_TOKEN=
  export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off SLS_DEPRECATION_DISABLE='*'
  unset AWS_PROFILE
  node_modules/.bin/serverless package --stage ci --region us-east-1 \
    --param="artifactDir=$LAMBDA_DIR" --package "$PACKAGE" >/dev/null
)

node tests/e2e/run.mjs --template "$PACKAGE/cloudformation-template-update-stack.json" \
  --lambda-dir "$LAMBDA_DIR"
