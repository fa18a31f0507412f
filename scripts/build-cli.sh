#!/usr/bin/env bash
# Builds the `covid-etl` command as it is installed, and prints the path of the binary.
#
#   bash scripts/build-cli.sh                 # -> target/<host>/release/covid-etl
#   install -m 755 "$(bash scripts/build-cli.sh)" ~/.local/bin/
#
# On Linux with glibc the binary is linked statically (glibc included, still
# position-independent, so still randomized in memory): nothing but the kernel is loaded at
# start, which is about 1.5 MiB less resident memory per run than the dynamically linked
# `cargo build --release` binary (BENCHMARKS.md) and no dependency on the installed glibc
# version. One thing keeps a link to the glibc it was built with: host names resolved
# through NSS modules other than `files` and `dns` (mDNS, LDAP, systemd-resolved's `resolve`)
# are loaded at run time from the system, which must then have the same glibc; build on the
# machine you install on, or run `cargo build --release` there instead.
#
# The flag goes to the target only (`--target` given explicitly), never to build scripts and
# proc macros, which cannot be linked statically. Elsewhere this is a plain release build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
case $host in
  *-linux-gnu)
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
      cargo build --release --locked --quiet --bin covid-etl --target "$host" >&2
    echo "target/$host/release/covid-etl"
    ;;
  *)
    cargo build --release --locked --quiet --bin covid-etl >&2
    echo "target/release/covid-etl"
    ;;
esac
