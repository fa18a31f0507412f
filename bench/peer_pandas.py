"""Peer: pandas. read_csv, boolean filter, join on date.

usage: python peer_pandas.py NYT_CSV JHU_CSV OUT_CSV
A JHU Recovered of 0 after an earlier positive one is "not reported" (JHU stopped counting
US recoveries on 2020-12-14 and wrote 0 from then on) and written empty, like a missing one.
"""
import sys

import pandas as pd


def main(nyt_path, jhu_path, out_path):
    nyt = pd.read_csv(nyt_path, usecols=["date", "cases", "deaths"], dtype={"date": str})
    jhu = pd.read_csv(
        jhu_path,
        usecols=["Date", "Country/Region", "Province/State", "Recovered"],
        dtype={"Date": str, "Country/Region": str, "Province/State": str, "Recovered": "Int64"},
        keep_default_na=False,
        na_values={"Recovered": [""]},
    )
    us = jhu[(jhu["Country/Region"] == "US") & (jhu["Province/State"] == "")]
    rec = us.set_index("Date")["Recovered"].sort_index()
    # The running max (NA skipped) is positive once any date so far had a positive count.
    rec = rec.mask(rec.eq(0) & rec.cummax().gt(0))
    us = rec.rename("recovered").to_frame()
    merged = nyt.set_index("date").join(us, how="inner").sort_index()
    merged.index.name = "date"
    merged.to_csv(out_path, lineterminator="\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
