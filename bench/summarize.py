"""Summarizes bench/run.sh's hyperfine JSON files and peak-RSS lists as Markdown tables.

usage: python summarize.py OUT_DIR ROUNDS BIG_ROUNDS
"""
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main(out, rounds, big_rounds):
    out = Path(out)
    for size, title in (("real", "real snapshots"), ("big", "100x JHU input")):
        times = defaultdict(list)
        for r in range(1, (rounds if size == "real" else big_rounds) + 1):
            for res in json.loads((out / f"hyperfine.{size}.{r}.json").read_text())["results"]:
                times[res["command"]].extend(res["times"])
        rss = defaultdict(list)
        for line in (out / f"rss.{size}.tsv").read_text().splitlines():
            name, kb = line.split("\t")
            rss[name].append(int(kb))
        med = {n: statistics.median(t) for n, t in times.items()}
        # Each process's peak RSS varies by a few hundred KiB run to run: the median of the
        # runs' peaks is compared, the largest is shown beside it.
        peak = {n: statistics.median(v) for n, v in rss.items()}
        top = {n: max(v) for n, v in rss.items()}
        ours = med["covid-etl"]
        print(f"\n### {title}\n")
        print("| tool | median wall | runs | min | max | time / covid-etl | peak RSS (median) | largest | RSS / covid-etl |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in sorted(med, key=med.get):
            t = times[n]
            print(
                f"| {n} | {med[n] * 1000:.1f} ms | {len(t)} | {min(t) * 1000:.1f} ms | {max(t) * 1000:.1f} ms "
                f"| {med[n] / ours:.2f}x | {peak[n] / 1024:.1f} MiB | {top[n] / 1024:.1f} MiB "
                f"| {peak[n] / peak['covid-etl']:.2f}x |"
            )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
