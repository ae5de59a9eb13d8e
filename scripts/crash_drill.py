#!/usr/bin/env python
"""The long crash drill: a 200,000-row dirty file, 10 SIGKILLs, a PostgreSQL restart and a
dropped connection, then a comparison with an uninterrupted run.

    .venv/bin/python scripts/crash_drill.py                 # PostgreSQL (the default)
    .venv/bin/python scripts/crash_drill.py --rows 50000 --kills 5
    .venv/bin/python scripts/crash_drill.py --database-url sqlite:///var/drill.sqlite3
    .venv/bin/python scripts/crash_drill.py --embedded      # a throwaway embedded PostgreSQL

It uses its own database (created if missing), never the one the app runs on. The suite runs
a shorter variant of the same drill (imports/tests/test_crash_drills.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/customerpanel_drill"


def ensure_postgres_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="On a throwaway embedded PostgreSQL server instead of --database-url.",
    )
    parser.add_argument(
        "--no-db-faults", action="store_true", help="Skip the restart and the dropped connection."
    )
    args = parser.parse_args()
    if not args.embedded:
        return drill(args)
    sys.path.insert(0, str(BASE_DIR))
    from customerpanel import embedded_pg

    cluster = embedded_pg.Cluster(Path(tempfile.mkdtemp(prefix="crash-drill-pg-")), throwaway=True)
    try:
        args.database_url = cluster.start().rsplit("/", 1)[0] + "/customerpanel_drill"
        print(f"Embedded PostgreSQL {embedded_pg.server_version()} in {cluster.data}")
        return drill(args)
    except embedded_pg.EmbeddedPostgresError as exc:
        print(f"embedded PostgreSQL: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()


def drill(args: argparse.Namespace) -> int:
    postgres = args.database_url.startswith(("postgres://", "postgresql://"))
    if postgres:
        ensure_postgres_database(args.database_url)
    workdir = Path(tempfile.mkdtemp(prefix="crash-drill-"))
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "IMPORT_DIR": str(workdir),
        "MEDIA_ROOT": str(workdir / "media"),
        "SECRET_KEY": os.environ.get("SECRET_KEY", "crash-drill-only"),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "customerpanel.settings")
    sys.path.insert(0, str(BASE_DIR))
    os.chdir(BASE_DIR)

    import django

    django.setup()
    from django.core.management import call_command

    from imports.tests import drill

    call_command("migrate", verbosity=0)
    started = time.monotonic()
    path = drill.write_dirty_file(workdir / "drill.csv", args.rows, seed=args.seed)
    size_mb = path.stat().st_size / 1e6
    print(f"{args.rows:,} dirty rows ({size_mb:.0f} MB) in {path}, batches of {args.batch_size:,}")

    t0 = time.monotonic()
    expected = drill.clean_run(env, path.name, args.batch_size)
    print(f"clean run: {time.monotonic() - t0:.1f} s, counters {expected.counters}")

    faults = postgres and not args.no_db_faults
    crashed = drill.crash_run(
        env,
        path.name,
        args.batch_size,
        kills=args.kills,
        seed=args.seed,
        restart_db=faults,
        terminate_connection=faults,
        log=lambda message: print(f"  {message}"),
    )
    same = (crashed.checksum, crashed.counters, crashed.rejections) == (
        expected.checksum,
        expected.counters,
        expected.rejections,
    )
    print(f"crashed run: {crashed.kills} kills survived, events {crashed.events or 'none'}")
    print(f"  counters {crashed.counters}")
    print(f"  table checksum {crashed.checksum[:16]}… vs clean {expected.checksum[:16]}…")
    print(f"  rejections {crashed.rejections:,} vs clean {expected.rejections:,}")
    print(f"{'PASS' if same else 'FAIL'}: drill took {time.monotonic() - started:.0f} s")
    return 0 if same and crashed.kills == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
