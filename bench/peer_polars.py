"""Peer: polars. Lazy scan_csv, filter, join.

usage: python peer_polars.py NYT_CSV JHU_CSV OUT_CSV
"""
import sys

import polars as pl


def main(nyt_path, jhu_path, out_path):
    nyt = pl.scan_csv(nyt_path, schema_overrides={"date": pl.String}).select("date", "cases", "deaths")
    jhu = (
        pl.scan_csv(
            jhu_path,
            schema_overrides={"Date": pl.String, "Country/Region": pl.String, "Province/State": pl.String,
                              "Recovered": pl.Int64},
        )
        .filter((pl.col("Country/Region") == "US") & pl.col("Province/State").is_null())
        .select(pl.col("Date").alias("date"), pl.col("Recovered").alias("recovered"))
    )
    nyt.join(jhu, on="date", how="inner").sort("date").sink_csv(out_path)


if __name__ == "__main__":
    main(*sys.argv[1:4])
