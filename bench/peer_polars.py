"""Peer: polars. Lazy scan_csv, filter, join.

usage: python peer_polars.py NYT_CSV JHU_CSV OUT_CSV
A JHU Recovered of 0 after an earlier positive one is "not reported" (JHU stopped counting
US recoveries on 2020-12-14 and wrote 0 from then on) and written empty, like a missing one.
"""
import sys

import polars as pl


def main(nyt_path, jhu_path, out_path):
    nyt = pl.scan_csv(nyt_path, schema_overrides={"date": pl.String}).select("date", "cases", "deaths")
    rec = pl.col("Recovered")
    jhu = (
        pl.scan_csv(
            jhu_path,
            schema_overrides={"Date": pl.String, "Country/Region": pl.String, "Province/State": pl.String,
                              "Recovered": pl.Int64},
        )
        .filter((pl.col("Country/Region") == "US") & pl.col("Province/State").is_null())
        .sort("Date")
        # The running max (nulls skipped) is positive once any date so far had a positive count.
        .select(
            pl.col("Date").alias("date"),
            pl.when((rec == 0) & (rec.cum_max() > 0)).then(None).otherwise(rec).alias("recovered"),
        )
    )
    nyt.join(jhu, on="date", how="inner").sort("date").sink_csv(out_path)


if __name__ == "__main__":
    main(*sys.argv[1:4])
