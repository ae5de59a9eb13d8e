"""import_errors: write an import's error report (its rejected rows) as CSV.

    manage.py import_errors ID [-o FILE]

The same CSV as the "Download error report" button and the API's errors.csv
(`imports.services.error_report_lines`: line, reason, then the file's own
columns, with formula cells neutralised), streamed to FILE or to standard
output. Fix its bad cells and import it as it is.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from imports import services
from imports.models import ImportState


class Command(BaseCommand):
    help = "Write the rejected rows of an import (its error report) as CSV."

    def add_arguments(self, parser):
        parser.add_argument("import_id", type=int, help="The import's number (#ID).")
        parser.add_argument(
            "-o", "--output", help="File to write (default: standard output); '-' for stdout."
        )

    def handle(self, *args, **options):
        state = ImportState.objects.filter(pk=options["import_id"]).first()
        if state is None:
            raise CommandError(f"There is no import #{options['import_id']}.")
        output = options["output"]
        lines = services.error_report_lines(state)
        if not output or output == "-":
            for line in lines:
                self.stdout.write(line, ending="")
            return
        path = Path(output)
        try:
            with path.open("w", encoding="utf-8", newline="") as out:
                out.writelines(lines)
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc.strerror}.") from None
        if options["verbosity"]:
            self.stdout.write(
                f"Wrote {state.rows_rejected:,} rejected row"
                f"{'' if state.rows_rejected == 1 else 's'} of import #{state.pk} to {path}."
            )
