#!/usr/bin/env bash
# The dashboard's browser test: headless Debian Chromium, driven by playwright-core (pinned in
# package.json), against `covid-etl serve` on 127.0.0.1 over the fixtures. See dashboard.mjs.
#
#   cargo build --bin covid-etl && bash tests/browser/run.sh
#
# Builds nothing: it needs target/debug/covid-etl (or $COVID_ETL_BIN). Installs what else is
# missing: Debian's chromium (apt-get, as root — CI runs as root on a fresh machine) and
# node_modules (npm ci, no install scripts; playwright-core never downloads a browser here).
# Screenshots go to target/browser/. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

say() { echo "browser-test: $*"; }
die() { echo "browser-test: $*" >&2; exit 1; }

bin="${COVID_ETL_BIN:-${CARGO_TARGET_DIR:-target}/debug/covid-etl}"
[ -x "$bin" ] || die "$bin not found: build it first (cargo build --bin covid-etl)"

# The Debian version this test was written against. Debian replaces it on security updates,
# after which the pinned version is no longer served: then the current one is installed,
# with a warning, rather than failing every run.
CHROMIUM_VERSION="156.0.8078.79-1~deb12u1"
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  [ "$(id -u)" = 0 ] || die "$chromium is missing; install Debian's chromium (apt-get install chromium) as root"
  say "installing Debian chromium $CHROMIUM_VERSION"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "chromium=$CHROMIUM_VERSION" >/dev/null 2>&1 || {
    say "warning: chromium $CHROMIUM_VERSION is no longer served; installing the current version"
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
  }
  [ -x "$chromium" ] || die "apt-get installed chromium but $chromium is still missing"
fi

command -v node >/dev/null || die "node not found (need >= 20)"
if [ ! -f node_modules/playwright-core/package.json ]; then
  say "npm ci (package-lock.json)"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
fi
want="$(node -p "require('./package.json').devDependencies['playwright-core']")"
have="$(node -p "require('./node_modules/playwright-core/package.json').version")"
[ "$want" = "$have" ] || die "node_modules has playwright-core $have, package.json pins $want: run npm ci"

say "$("$chromium" --version 2>/dev/null | head -1), playwright-core $have"
exec node tests/browser/dashboard.mjs
