"""generate_customers: write a synthetic customers CSV file for benchmarks and tests.

    manage.py generate_customers OUT_PATH --rows N [--seed 42] [--change-percent P]
                                 [--dirty-percent D] [--dirty] [--force] [--quiet]

The same arguments always give a byte-identical file. `--change-percent P` gives
the same file with another City and About Customer on P % of the rows (same ids,
same order): the "re-import with changes" case. `--dirty-percent D` makes D % of
the rows invalid in varied ways, each one rejected by the import with its line
number. `--dirty` makes a messy file like real exports: bad rows (2 % unless
--dirty-percent says otherwise), duplicated Customer Ids (the later row wins) and
About texts with quoted line breaks. The design lives in imports/generator.py;
this command only parses and reports. It touches no database.
"""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from imports.generator import generate

DIRTY_DEFAULT_PERCENT = 2


class Command(BaseCommand):
    help = "Write a synthetic customers CSV file (deterministic for a given --seed)."

    def add_arguments(self, parser):
        parser.add_argument("path", help="The CSV file to write (parent folders are created).")
        parser.add_argument("--rows", type=int, required=True, help="Data rows to write.")
        parser.add_argument("--seed", type=int, default=42, help="Random seed (default 42).")
        parser.add_argument(
            "--change-percent",
            type=float,
            default=0,
            help="Percent of rows with another City and About Customer (same ids and order).",
        )
        parser.add_argument(
            "--dirty-percent",
            type=float,
            default=0,
            help="Percent of rows the import must reject (bad email, date, id, field count).",
        )
        parser.add_argument(
            "--dirty",
            action="store_true",
            help="A messy file, like real exports: 2 %% bad rows (unless --dirty-percent says "
            "otherwise), duplicated Customer Ids and About texts with quoted line breaks.",
        )
        parser.add_argument("--force", action="store_true", help="Overwrite an existing file.")
        parser.add_argument("--quiet", action="store_true", help="Print nothing on success.")

    def handle(self, *args, **options):
        path = Path(options["path"])
        if path.is_dir():
            raise CommandError(f"{path} is a folder; give the path of the CSV file to write.")
        if path.exists() and path.stat().st_size > 0 and not options["force"]:
            raise CommandError(f"{path} already exists; use --force to overwrite it.")
        started = time.perf_counter()
        try:
            result = generate(
                path,
                options["rows"],
                seed=options["seed"],
                change_percent=options["change_percent"],
                dirty_percent=options["dirty_percent"]
                or (DIRTY_DEFAULT_PERCENT if options["dirty"] else 0),
                messy=options["dirty"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc.strerror or exc}.") from None
        seconds = time.perf_counter() - started
        if options["quiet"] or not options["verbosity"]:
            return
        details = [f"{result.bad_rows:,} bad"] if result.bad_rows else []
        if result.duplicate_rows:
            details.append(f"{result.duplicate_rows:,} duplicate ids")
        if result.changed_rows:
            details.append(f"{result.changed_rows:,} changed")
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {result.rows:,} rows"
                + (f" ({', '.join(details)})" if details else "")
                + f" to {path}: {result.bytes:,} bytes in {seconds:.1f} s "
                f"({result.rows / seconds:,.0f} rows/s, {result.bytes / seconds / 1e6:,.1f} MB/s)."
            )
        )
