#!/usr/bin/env bash
# Build the six Lambda binaries (the five states and the daily starter) as
# provided.al2023 `bootstrap` zips:
#   target/lambda/<name>/<name>.zip   (cargo-lambda writes bootstrap.zip; renamed, because
#                                      Serverless v3 keys the S3 upload by file name)
# and write target/lambda/build.json ({"architecture": "..."}), which
# serverless.yml reads for provider.architecture — so what is deployed is
# always the architecture that was built. The architecture is chosen here and
# only here:
#
#   scripts/build-lambdas.sh [--arch arm64|x86_64]     (default: $ARCH, else arm64)
#
# Needs cargo-lambda and zig from .venv (scripts/setup-tools.sh installs them).
# arm64 needs the aarch64-unknown-linux-gnu Rust std (rustup target add; CI
# does that); x86_64 builds on an x86_64 host with the host std.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# One crate per function under lambdas/ (the list is src/functions.rs; tests/registry.rs).
mapfile -t LAMBDAS < <(cd lambdas && ls)
ARCH="${ARCH:-arm64}"
LAMBDA_DIR="target/lambda"

while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH="${2:?--arch needs a value}"; shift 2 ;;
    --arch=*) ARCH="${1#--arch=}"; shift ;;
    --lambda-dir) LAMBDA_DIR="${2:?--lambda-dir needs a value}"; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "build-lambdas: unknown argument: $1" >&2; exit 2 ;;
  esac
done

case "$ARCH" in
  arm64|aarch64) ARCH=arm64; ARCH_FLAG=--arm64; TRIPLE=aarch64-unknown-linux-gnu ;;
  x86_64|amd64|x86-64) ARCH=x86_64; ARCH_FLAG=--x86-64; TRIPLE=x86_64-unknown-linux-gnu ;;
  *) echo "build-lambdas: --arch must be arm64 or x86_64, got '$ARCH'" >&2; exit 2 ;;
esac

if [ -x "$ROOT/.venv/bin/cargo-lambda" ]; then
  export PATH="$ROOT/.venv/bin:$PATH"
fi
if ! command -v cargo-lambda >/dev/null 2>&1; then
  echo "build-lambdas: cargo-lambda not found; run scripts/setup-tools.sh first" >&2
  exit 1
fi

if command -v rustup >/dev/null 2>&1 \
   && ! rustup target list --installed 2>/dev/null | grep -qx "$TRIPLE"; then
  host="$(rustc -vV | sed -n 's/^host: //p')"
  if [ "$host" != "$TRIPLE" ]; then
    echo "build-lambdas: Rust std for $TRIPLE is not installed (rustup target add $TRIPLE)" >&2
    exit 1
  fi
fi

pkg_args=()
for l in "${LAMBDAS[@]}"; do pkg_args+=(--package "$l"); done

echo "build-lambdas: building ${LAMBDAS[*]} for $ARCH ($TRIPLE) into $LAMBDA_DIR"
rm -f "$LAMBDA_DIR/build.json"
start=$(date +%s)
cargo lambda build --profile lambda --locked --output-format zip "$ARCH_FLAG" \
  --lambda-dir "$LAMBDA_DIR" "${pkg_args[@]}"
end=$(date +%s)

for l in "${LAMBDAS[@]}"; do
  z="$LAMBDA_DIR/$l/bootstrap.zip"
  [ -s "$z" ] || { echo "build-lambdas: missing $z" >&2; exit 1; }
  mv -f "$z" "$LAMBDA_DIR/$l/$l.zip"
done
printf '{"architecture": "%s", "target": "%s"}\n' "$ARCH" "$TRIPLE" > "$LAMBDA_DIR/build.json"

echo "build-lambdas: done in $((end - start))s"
for l in "${LAMBDAS[@]}"; do
  printf '  %-14s %8s bytes\n' "$l" "$(stat -c %s "$LAMBDA_DIR/$l/$l.zip")"
done
