#!/usr/bin/env bash
# Every check the project has, in one command (CI runs exactly this through .ci/run):
#   1. the pinned tools (npm ci, .venv with moto and cfn-lint) — fast when already there
#   2. cargo fmt --check and clippy -D warnings
#   3. offline deployment checks: serverless package, cfn-lint, asl-validator, actionlint
#   4. the dashboard in headless Chromium (tests/browser), over the fixtures
#   5. the packaged stack end to end (tests/e2e): the Lambda zips, built here, behind a
#      Runtime API emulator, the compiled definition on aws-local-stepfunctions, moto
#   6. cargo test: unit tests, the engine, the pipeline on fixtures and real snapshots,
#      the CLI end to end, the AWS adapters against moto on 127.0.0.1, the compiled template
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup-tools.sh
echo "=== cargo fmt --check"
cargo fmt --all --check
echo "=== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "=== deployment checks"
COVID_ETL_SKIP_SETUP=1 bash tests/deploy/check.sh
# Kept for cargo test below (the template and serverless-state.json beside it): packaging
# again (tests/e2e) empties .serverless/.
rm -rf target/ci-package && cp -r .serverless target/ci-package
ci_template="$PWD/target/ci-package/cloudformation-template-update-stack.json"
echo "=== browser test (dashboard in headless Chromium)"
cargo build --workspace --locked
browser_log="$(mktemp)"
bash tests/browser/run.sh 2>&1 | tee "$browser_log"
echo "=== end-to-end: the packaged stack (tests/e2e)"
e2e_log="$(mktemp)"
set +e
bash tests/e2e/run.sh 2>&1 | tee "$e2e_log"
e2e_status=${PIPESTATUS[0]}
set -e
echo "=== cargo test"
# The deployment test reads the template that check.sh compiled (stage ci).
log="$(mktemp)"
trap 'rm -f "$log" "$browser_log" "$e2e_log"' EXIT
set +e
COVID_ETL_TEMPLATE="$ci_template" \
COVID_ETL_ARTIFACT_DIR="$PWD/target/placeholder-lambda" \
COVID_ETL_EXPECT_STAGE=ci COVID_ETL_EXPECT_ARCH="${ARCH:-arm64}" \
  cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# cargo prints one "test result" line per test binary (the last ones are empty doc-test
# runs); the total is what a reader wants last.
# The browser and end-to-end tests close with "dashboard:" and "e2e: N passed, N failed";
# all are counted.
awk '/^test result:|^dashboard:|^e2e:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log" "$browser_log" "$e2e_log"
[ "$e2e_status" -eq 0 ] || status=1
exit "$status"
