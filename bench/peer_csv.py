"""Peer: Python's csv module. Same extract-filter-join as `covid-etl run`.

usage: python peer_csv.py NYT_CSV JHU_CSV OUT_CSV
Writes the merged rows (date,cases,deaths,recovered) sorted by date; recovered is empty
when JHU did not report it.
"""
import csv
import sys


def main(nyt_path, jhu_path, out_path):
    with open(jhu_path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        d, c, p, r = (header.index(n) for n in ("Date", "Country/Region", "Province/State", "Recovered"))
        recovered = {row[d]: row[r] for row in rows if row[c] == "US" and row[p] == ""}
    out = []
    with open(nyt_path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        d, c, k = (header.index(n) for n in ("date", "cases", "deaths"))
        for row in rows:
            rec = recovered.get(row[d])
            if rec is not None:
                out.append((row[d], row[c], row[k], rec))
    out.sort()
    with open(out_path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("date", "cases", "deaths", "recovered"))
        w.writerows(out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
