#!/usr/bin/env bash
# Where a `covid-etl run`'s resident memory is: stops the process at its last system call
# (exit_group, under gdb) and sums /proc/<pid>/smaps by mapping, largest first.
#
#   bash bench/smaps.sh BINARY        # e.g. bench/out/covid-etl after bench/run.sh
#
# Env: DATA (default ../shared/data). Needs gdb (with Python) and python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=${1:?usage: bench/smaps.sh BINARY}
DATA=${DATA:-../shared/data}
OUT=bench/out
mkdir -p "$OUT"
DB=$OUT/smaps.db
rm -f "$DB" "$DB-wal" "$DB-shm"
# Loaded from disk, as an installed program is (see run.sh).
dd if="$BIN" iflag=nocache count=0 status=none
gdb -q -batch -ex 'catch syscall exit_group' \
  -ex "run run --nyt $DATA/nyt/us.2022-04-19.csv --jhu $DATA/jhu/time-series-19-covid-combined.2021-03-17.csv --db $DB --json >/dev/null" \
  -ex 'python pid = gdb.selected_inferior().pid; print(open(f"/proc/{pid}/status").read() + open(f"/proc/{pid}/smaps").read())' \
  "$BIN" 2>/dev/null >"$OUT/smaps.txt"
grep -E '^(VmHWM|VmRSS|RssAnon|RssFile):' "$OUT/smaps.txt"
python3 - "$OUT/smaps.txt" <<'EOF'
import re, sys
by_mapping, current = {}, None
for line in open(sys.argv[1]):
    m = re.match(r"^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$", line)
    if m:
        current = f"{(m.group(2) or '[anon]').split('/')[-1]} {m.group(1)}"
    elif line.startswith("Rss:") and current:
        by_mapping[current] = by_mapping.get(current, 0) + int(line.split()[1])
for name, kb in sorted(by_mapping.items(), key=lambda kv: -kv[1]):
    if kb:
        print(f"{kb:7d} KiB  {name}")
EOF
