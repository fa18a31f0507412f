#!/usr/bin/env bash
# covid-etl against the tools people reach for instead (pandas, the DuckDB CLI, polars,
# Python's csv module), on the real snapshots and on a 100x JHU input, side by side.
#
#   bash bench/run.sh            # full run: correctness check, hyperfine rounds, peak RSS
#   bash bench/run.sh --smoke    # CI-sized: a 3x input, one short round, same checks
#
# Env: DATA (default ../shared/data), ROUNDS (10), RUNS (runs per command per round: 3),
# BIG_ROUNDS (3), BIG_RUNS (1) for the 100x input,
# COPIES (99), COVID_ETL_BIN (a covid-etl binary to use instead of building this checkout's). Everything generated goes to bench/out/ (gitignored); the pinned peers go
# to bench/.venv/. Needs python3 with venv, cargo, hyperfine and GNU time (/usr/bin/time);
# as root on Debian it installs the last two itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SMOKE=0
[[ "${1:-}" == "--smoke" ]] && SMOKE=1
DATA=${DATA:-../shared/data}
ROUNDS=${ROUNDS:-$([[ $SMOKE == 1 ]] && echo 1 || echo 10)}
RUNS=${RUNS:-$([[ $SMOKE == 1 ]] && echo 2 || echo 3)}
# The 100x input takes the Python peers tens of seconds a run: fewer rounds and runs there.
BIG_ROUNDS=${BIG_ROUNDS:-$([[ $SMOKE == 1 ]] && echo 1 || echo 3)}
BIG_RUNS=${BIG_RUNS:-1}
COPIES=${COPIES:-$([[ $SMOKE == 1 ]] && echo 2 || echo 99)}
OUT=bench/out
NYT=$DATA/nyt/us.2022-04-19.csv
JHU=$DATA/jhu/time-series-19-covid-combined.2021-03-17.csv
if [[ ! -f $NYT || ! -f $JHU ]]; then
  echo "bench: the real snapshots are not in $DATA (set DATA); nothing to measure"
  exit 0
fi
mkdir -p "$OUT"

# --- tools ---------------------------------------------------------------------------
need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
[[ -x /usr/bin/time ]] || need+=(time)
if ((${#need[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "bench: install ${need[*]} first" >&2
    exit 1
  fi
fi
VENV=bench/.venv
if [[ ! -x $VENV/bin/python ]] || ! cmp -s bench/requirements.txt "$VENV/.installed"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r bench/requirements.txt
  cp bench/requirements.txt "$VENV/.installed"
fi
PY=$VENV/bin/python
# The native DuckDB binary inside the package, not the Python wrapper in front of it.
DUCKDB=$("$PY" -c 'import duckdb_cli, os; print(os.path.join(os.path.dirname(duckdb_cli.__file__), "duckdb"))')
BIN=$OUT/covid-etl
DYN=$OUT/covid-etl-dynamic
rm -f "$DYN"
if [[ -n ${COVID_ETL_BIN:-} ]]; then
  cp "$COVID_ETL_BIN" "$BIN" # a binary built elsewhere (another checkout)
else
  # The binary as installed (scripts/build-cli.sh: static on Linux with glibc), and beside
  # it the dynamically linked one plain `cargo build --release` makes, measured in the same run.
  cp "$(bash scripts/build-cli.sh)" "$BIN"
  cargo build --release --locked --quiet --bin covid-etl
  cp target/release/covid-etl "$DYN"
fi
# Drop the copies' pages from the page cache, so they are loaded the way an installed program
# is (read from disk), not mapped from the pages `cp` just wrote: those come in larger folios,
# and a process maps a whole folio on a fault, which alone added ~0.6 MiB of peak RSS.
for bin in "$BIN" "$DYN"; do
  [[ -f $bin ]] && dd if="$bin" iflag=nocache count=0 status=none
done

# --- inputs --------------------------------------------------------------------------
BIG=$OUT/jhu-${COPIES}x.csv
[[ -f $BIG ]] || "$PY" bench/gen_100x.py "$JHU" "$BIG" "$COPIES"

# --- commands ------------------------------------------------------------------------
DB=$OUT/bench.db
FRESH="rm -f $DB $DB-wal $DB-shm $DB-journal"
commands() { # size jhu -> "name<TAB>command" lines
  local size=$1 jhu=$2
  sed -e "s#@NYT@#$NYT#" -e "s#@JHU@#$jhu#" -e "s#@OUT@#$OUT/duckdb-cli.$size.csv#" \
    bench/peer_duckdb.sql >"$OUT/duckdb.$size.sql"
  printf 'covid-etl\t%s run --nyt %s --jhu %s --db %s --json\n' "$BIN" "$NYT" "$jhu" "$DB"
  if [[ -f $DYN ]]; then
    printf 'covid-etl-dynamic\t%s run --nyt %s --jhu %s --db %s --json\n' "$DYN" "$NYT" "$jhu" "$DB"
  fi
  printf 'csv-module\t%s bench/peer_csv.py %s %s %s\n' "$PY" "$NYT" "$jhu" "$OUT/csv-module.$size.csv"
  printf 'duckdb-cli\t%s -no-init -f %s\n' "$DUCKDB" "$OUT/duckdb.$size.sql"
  printf 'polars\t%s bench/peer_polars.py %s %s %s\n' "$PY" "$NYT" "$jhu" "$OUT/polars.$size.csv"
  printf 'pandas\t%s bench/peer_pandas.py %s %s %s\n' "$PY" "$NYT" "$jhu" "$OUT/pandas.$size.csv"
}

for size in real big; do
  jhu=$([[ $size == real ]] && echo "$JHU" || echo "$BIG")
  mapfile -t cmds < <(commands "$size" "$jhu")

  # Same merged rows from every tool before any timing.
  for line in "${cmds[@]}"; do
    name=${line%%$'\t'*} cmd=${line#*$'\t'}
    $FRESH
    $cmd >/dev/null 2>"$OUT/$name.$size.err" || { cat "$OUT/$name.$size.err"; exit 1; }
    if [[ $name == covid-etl* ]]; then
      "${cmd%% *}" export --db "$DB" --format csv >"$OUT/$name.$size.csv"
    fi
  done
  for line in "${cmds[@]:1}"; do
    name=${line%%$'\t'*}
    if ! cmp -s "$OUT/covid-etl.$size.csv" "$OUT/$name.$size.csv"; then
      echo "bench: $name ($size) differs from covid-etl:" >&2
      diff "$OUT/covid-etl.$size.csv" "$OUT/$name.$size.csv" | head >&2
      exit 1
    fi
  done
  echo "bench: $size input: all ${#cmds[@]} commands produce the same $(($(wc -l <"$OUT/covid-etl.$size.csv") - 1)) merged rows"

  # Time: ROUNDS hyperfine invocations, each running every tool in turn (so the tools
  # alternate round by round on this shared machine), warm-up first; medians over all runs.
  # Many short rounds: a burst of load from another tenant then lands on a few runs of one
  # tool, not on a whole block of them (5 rounds of 5 once put one at 21 ms instead of 13).
  args=()
  for line in "${cmds[@]}"; do args+=(-n "${line%%$'\t'*}" "${line#*$'\t'}"); done
  rounds=$([[ $size == real ]] && echo "$ROUNDS" || echo "$BIG_ROUNDS")
  runs=$([[ $size == real ]] && echo "$RUNS" || echo "$BIG_RUNS")
  warmup=$([[ $size == real ]] && echo 3 || echo 1)
  for ((r = 1; r <= rounds; r++)); do
    hyperfine -N --style none --warmup "$warmup" --runs "$runs" --prepare "$FRESH" \
      --export-json "$OUT/hyperfine.$size.$r.json" "${args[@]}" >/dev/null
  done

  # Peak RSS of each process, from GNU time as the direct parent (never a Python parent,
  # whose pages a forked child would count).
  : >"$OUT/rss.$size.tsv"
  if ((SMOKE)); then rss_rounds=1; elif [[ $size == real ]]; then rss_rounds=11; else rss_rounds=3; fi
  for ((r = 1; r <= rss_rounds; r++)); do
    for line in "${cmds[@]}"; do
      name=${line%%$'\t'*} cmd=${line#*$'\t'}
      $FRESH
      kb=$(/usr/bin/time -f %M $cmd 2>&1 >/dev/null | tail -1)
      printf '%s\t%s\n' "$name" "$kb" >>"$OUT/rss.$size.tsv"
    done
  done
done

"$PY" bench/summarize.py "$OUT" "$ROUNDS" "$BIG_ROUNDS" | tee "$OUT/summary.md"
