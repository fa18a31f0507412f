"""Writes the 100x JHU input: the real file, then 99 copies of its rows that are not
country-level US rows, with `Country/Region` prefixed ("C01 Afghanistan", and for a quoted
name the prefix goes inside the quotes: "C01 Korea, South").

usage: python gen_100x.py JHU_CSV OUT_CSV [COPIES=99]
"""
import sys


def main(src, dst, copies=99):
    with open(src, "rb") as f:
        data = f.read()
    lines = data.splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    if not body[-1].endswith(b"\n"):
        body[-1] += b"\n"
    cols = header.rstrip(b"\r\n").split(b",")
    if cols[:3] != [b"Date", b"Country/Region", b"Province/State"]:
        sys.exit(f"unexpected header {header!r}")
    others = []
    for line in body:
        date, rest = line.split(b",", 1)
        if rest.startswith(b"US,,"):
            continue  # country-level US: kept once, in the original
        others.append((date + b",", rest))
    with open(dst, "wb") as out:
        out.write(header)
        out.writelines(body)
        for k in range(1, copies + 1):
            prefix = b"C%02d " % k
            out.write(b"".join(
                d + (b'"' + prefix + r[1:] if r.startswith(b'"') else prefix + r) for d, r in others
            ))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 99)
