"""Reading speed of the CSV reader, and what a resume costs in a compressed file.

    .venv/bin/python bench/dialects.py FILE [--runs N]

Reads every record of FILE (plain, .gz or .zip; its dialect detected) with
imports.reader.CsvSource, as the engine does but without the database, and
prints the best of N runs in wall and CPU seconds. For a compressed file it
also times seeking to the end of the decompressed stream: what resuming at a
checkpoint near the end costs, since gzip and zip can only be decompressed
again from the start.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "customerpanel.settings")

import django

django.setup()

from imports.dialect import decompressed, detect  # noqa: E402
from imports.files import open_recorded  # noqa: E402
from imports.reader import READ_CHUNK, CsvSource  # noqa: E402

ROW_LIMIT = 1024 * 1024


def read_all(path: Path, dialect) -> tuple[int, int, float, float]:
    size = path.stat().st_size
    with (
        open_recorded(path, size) as stored,
        decompressed(stored, dialect.compression, window=ROW_LIMIT + 4 * READ_CHUNK) as fp,
    ):
        source = CsvSource(fp, max_row_bytes=ROW_LIMIT, dialect=dialect)
        header = source.read_header()
        wall, cpu, records, end = time.perf_counter(), time.process_time(), 0, 0
        for record in source.records(header.data_offset, header.data_line):
            records += 1
            end = record.end_offset
        return records, end, time.perf_counter() - wall, time.process_time() - cpu


def seek_to_end(path: Path, dialect) -> tuple[int, float, float]:
    with (
        open_recorded(path, path.stat().st_size) as stored,
        decompressed(stored, dialect.compression) as fp,
    ):
        wall, cpu = time.perf_counter(), time.process_time()
        end = fp.seek(2**62)
        return end, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    detection = detect(args.file)
    print(f"{args.file} ({args.file.stat().st_size:,} bytes): {'; '.join(detection.notes)}")
    runs = [read_all(args.file, detection.dialect) for _ in range(args.runs)]
    records, end = runs[0][:2]
    wall, cpu = min(r[2] for r in runs), min(r[3] for r in runs)
    print(
        f"read {records:,} records ({end:,} bytes of CSV): best of {args.runs}: "
        f"{wall:.2f} s wall, {cpu:.2f} s CPU = {end / cpu / 1e6:.1f} MB/s, "
        f"{records / cpu:,.0f} records/s of CPU"
    )
    if detection.dialect.compression:
        end, wall, cpu = seek_to_end(args.file, detection.dialect)
        print(
            f"resume at the end: decompressing {end:,} bytes again takes {wall:.2f} s wall, "
            f"{cpu:.2f} s CPU ({end / cpu / 1e6:.0f} MB/s; {2e9 / (end / cpu):.0f} s CPU for 2 GB)"
        )


if __name__ == "__main__":
    main()
