"""Peer: Python's csv module. Same extract-filter-join as `covid-etl run`.

usage: python peer_csv.py NYT_CSV JHU_CSV OUT_CSV
Writes the merged rows (date,cases,deaths,recovered) sorted by date; recovered is empty
when JHU did not report it: an empty field, or a 0 after an earlier date had a positive
Recovered (JHU stopped counting US recoveries on 2020-12-14 and wrote 0 from then on).
"""
import csv
import sys


def main(nyt_path, jhu_path, out_path):
    with open(jhu_path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        d, c, p, r = (header.index(n) for n in ("Date", "Country/Region", "Province/State", "Recovered"))
        us = sorted((row[d], row[r]) for row in rows if row[c] == "US" and row[p] == "")
    recovered = {}
    counting = False  # has an earlier date had a positive Recovered?
    for date, rec in us:
        if rec:
            n = int(rec)
            if n == 0 and counting:
                rec = ""
            counting = counting or n > 0
        recovered[date] = rec
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
