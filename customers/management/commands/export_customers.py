"""export_customers: write customers as CSV in the import format.

    manage.py export_customers OUT [--q WORDS] [--country NAME] [--edited true|false] [--bom]

The same CSV as the customers page's "Export CSV" button and `GET /api/v1/customers/export/`
(`customers.services.customer_export_lines`): streamed in keyset chunks, so memory stays
flat whatever the table's size. OUT is a file, written under a temporary name and renamed
when complete (an interrupted export leaves no half file behind), or `-` for standard
output; progress then goes to standard error.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from customers import services
from customers.models import Customer


class Command(BaseCommand):
    help = "Export customers (all, or those matching the filters) as CSV in the import format."

    def add_arguments(self, parser):
        parser.add_argument("out", help="File to write, or '-' for standard output.")
        parser.add_argument("--q", help="Search words (name, email, company or customer id).")
        parser.add_argument("--country", help="Only customers of this country.")
        parser.add_argument(
            "--edited",
            choices=["true", "false"],
            help="Only customers edited by hand (true) or never edited by hand (false).",
        )
        parser.add_argument(
            "--bom", action="store_true", help="Start with a UTF-8 byte order mark (for Excel)."
        )
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=services.EXPORT_CHUNK,
            help="Rows per database query.",
        )

    def handle(self, *args, **options):
        if options["chunk_size"] < 1:
            raise CommandError("--chunk-size must be at least 1.")
        customers = Customer.objects.all()
        if options["q"]:
            customers = customers.search(options["q"])
        if options["country"]:
            customers = customers.in_country(options["country"])
        if options["edited"]:
            customers = customers.edited(options["edited"] == "true")
        to_stdout = options["out"] == "-"
        # With the CSV on standard output, the progress lines must not mix into it.
        self.report = self.stderr if to_stdout else self.stdout
        self.verbosity = options["verbosity"]
        self.started = self.last_report = time.monotonic()
        lines = services.customer_export_lines(
            customers,
            bom=options["bom"],
            chunk_size=options["chunk_size"],
            progress=self.progress,
        )
        self.written = 0
        if to_stdout:
            try:
                for text in lines:
                    self.stdout.write(text, ending="")
                self.stdout.flush()
            except BrokenPipeError:
                # The reader went away (`| head`): stop quietly, as command-line tools do.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return
        else:
            self.write_file(Path(options["out"]), lines)
        if self.verbosity:
            target = "standard output" if to_stdout else options["out"]
            self.report.write(
                self.style.SUCCESS(
                    f"Exported {self.written:,} customer{'' if self.written == 1 else 's'} "
                    f"to {target} in {time.monotonic() - self.started:.1f} s."
                )
            )

    def write_file(self, path: Path, lines) -> None:
        partial = path.with_name(f".{path.name}.partial")
        try:
            with partial.open("w", encoding="utf-8", newline="") as out:
                out.writelines(lines)
            os.replace(partial, path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise CommandError(f"Cannot write {path}: {exc.strerror}.") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def progress(self, written: int) -> None:
        self.written = written
        now = time.monotonic()
        # One line every few seconds: enough to see it move, little enough for a log.
        if self.verbosity >= 2 or (self.verbosity and now - self.last_report >= 5):
            self.last_report = now
            rate = written / max(now - self.started, 1e-9)
            self.report.write(f"  {written:,} customers exported ({rate:,.0f}/s)…")
            self.report.flush()
