-- Peer: the DuckDB CLI (the native binary shipped in PyPI duckdb-cli), in-memory database.
-- A template: run.sh replaces @NYT@, @JHU@ and @OUT@ and runs `duckdb -no-init -f FILE`.
-- read_csv_auto needs quote='"' on the JHU file, or it aborts at "Korea, South".
COPY (
    SELECT n.date, n.cases, n.deaths, j.Recovered AS recovered
    FROM read_csv('@NYT@', header = true, types = {'date': 'VARCHAR'}) AS n
    JOIN (
        SELECT "Date", "Recovered"
        FROM read_csv_auto('@JHU@', header = true, quote = '"',
                           types = {'Date': 'VARCHAR', 'Country/Region': 'VARCHAR',
                                    'Province/State': 'VARCHAR', 'Recovered': 'BIGINT'})
        WHERE "Country/Region" = 'US' AND "Province/State" IS NULL
    ) AS j ON n.date = j."Date"
    ORDER BY n.date
) TO '@OUT@' (HEADER, DELIMITER ',');
