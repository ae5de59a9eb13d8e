"""Profile `manage.py run_import` under cProfile and print where the time goes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/customerpanel_bench \\
        .venv/bin/python bench/profile_import.py FILE.csv [run_import options] [--top 30]

Since Python 3.12 cProfile rides on sys.monitoring and sees every thread, so the
reader thread's parsing and validating show up next to the writer's database calls:
time the main thread spends waiting on the database is under the psycopg calls
(`execute`, `copy`, `fetchall`), time it waits for the reader under `queue.get`.
The import really runs: DATABASE_URL must name a bench database.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    top = 30
    if "--top" in argv:
        at = argv.index("--top")
        top = int(argv[at + 1])
        del argv[at : at + 2]
    if "bench" not in os.environ.get("DATABASE_URL", ""):
        sys.exit("Set DATABASE_URL to a bench database (its name must contain 'bench').")
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "customerpanel.settings")
    os.environ.setdefault("SECRET_KEY", "bench-profile-only")

    from django.core.management import execute_from_command_line

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        execute_from_command_line(["manage.py", "run_import", *argv])
    finally:
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
