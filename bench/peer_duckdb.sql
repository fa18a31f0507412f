-- Peer: the DuckDB CLI (the native binary shipped in PyPI duckdb-cli), in-memory database.
-- A template: run.sh replaces @NYT@, @JHU@ and @OUT@ and runs `duckdb -no-init -f FILE`.
-- read_csv_auto needs quote='"' on the JHU file, or it aborts at "Korea, South".
-- A Recovered of 0 after an earlier positive one is "not reported" (JHU stopped counting US
-- recoveries on 2020-12-14 and wrote 0 from then on): NULL, written empty like a missing one.
-- The window's running max (NULLs skipped) is positive once any date so far had a positive count.
COPY (
    SELECT n.date, n.cases, n.deaths, j.recovered
    FROM read_csv('@NYT@', header = true, types = {'date': 'VARCHAR'}) AS n
    JOIN (
        SELECT "Date",
               CASE WHEN max("Recovered") OVER (ORDER BY "Date") > 0 THEN nullif("Recovered", 0)
                    ELSE "Recovered" END AS recovered
        FROM read_csv_auto('@JHU@', header = true, quote = '"',
                           types = {'Date': 'VARCHAR', 'Country/Region': 'VARCHAR',
                                    'Province/State': 'VARCHAR', 'Recovered': 'BIGINT'})
        WHERE "Country/Region" = 'US' AND "Province/State" IS NULL
    ) AS j ON n.date = j."Date"
    ORDER BY n.date
) TO '@OUT@' (HEADER, DELIMITER ',');
