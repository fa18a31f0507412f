#!/usr/bin/env bash
# Refreshes the dashboard's vendored charting library, web/vendor/, from node_modules/.
#
# The dashboard embeds uPlot into the binary (include_str! in src/api/assets.rs). A fresh
# clone must build with plain `cargo build` before any `npm ci`, so the minified files live in
# the repository; this script is how they are updated, from the version pinned (exactly) in
# package.json's devDependencies:
#
#   npm install --save-exact --save-dev --ignore-scripts uplot@X.Y.Z
#   bash scripts/vendor-web.sh          # copy the files, record the version
#   bash scripts/vendor-web.sh --check  # exit 1 if web/vendor differs from node_modules
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

src=node_modules/uplot
dst=web/vendor
[ -f "$src/package.json" ] || { echo "vendor-web: $src missing: run npm ci first" >&2; exit 1; }
version="$(node -p "require('./$src/package.json').version")"
pinned="$(node -p "require('./package.json').devDependencies.uplot")"
[ "$version" = "$pinned" ] || {
  echo "vendor-web: node_modules has uplot $version, package.json pins $pinned: run npm ci" >&2
  exit 1
}

# source in node_modules/uplot -> name in web/vendor
files=(dist/uPlot.iife.min.js:uPlot.iife.min.js dist/uPlot.min.css:uPlot.min.css LICENSE:uPlot.LICENSE)
if [ "${1:-}" = "--check" ]; then
  for pair in "${files[@]}"; do
    from="$src/${pair%%:*}" to="$dst/${pair#*:}"
    cmp -s "$from" "$to" || { echo "vendor-web: $to differs from $from" >&2; exit 1; }
  done
  grep -qx "uplot $version" "$dst/VERSION" || { echo "vendor-web: $dst/VERSION is not uplot $version" >&2; exit 1; }
  echo "vendor-web: web/vendor matches uplot $version"
  exit 0
fi

mkdir -p "$dst"
for pair in "${files[@]}"; do
  cp "$src/${pair%%:*}" "$dst/${pair#*:}"
done
echo "uplot $version" > "$dst/VERSION"
echo "vendor-web: copied uplot $version into $dst"
