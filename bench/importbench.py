"""Import benchmark: reference files, the bench databases, the COPY floor and timed imports.

Every import runs `manage.py run_import` as a separate process, the way people run it, and is
reaped with os.wait4() so that its peak RSS (ru_maxrss) is that one process's, not ours.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "manage.py"
PYTHON = sys.executable
DATA_DIR = ROOT / "bench" / "data"
RESULTS_DIR = ROOT / "bench" / "results"
LOG_DIR = RESULTS_DIR / "logs"

# The CSV's 13 columns, in file order, as columns of floor_customer.
CSV_COLUMNS = (
    "csv_index",
    "customer_id",
    "first_name",
    "last_name",
    "company",
    "city",
    "country",
    "phone_1",
    "phone_2",
    "email",
    "subscription_date",
    "website",
    "about",
)
# Empty text fields load as '' (as the importer stores them), not NULL.
NOT_NULL_TEXT = tuple(c for c in CSV_COLUMNS if c not in ("csv_index", "subscription_date"))

IMPORT_COUNTERS = (
    "rows_created",
    "rows_updated",
    "rows_unchanged",
    "rows_skipped_manual",
    "rows_rejected",
)


# --- Environment ----------------------------------------------------------------
def django_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of every manage.py / gunicorn child: the bench DB, never the .env one."""
    env = dict(os.environ)
    env.update(
        ENV_FILE=os.devnull,  # ignore the developer's .env (DATABASE_URL, batch size, ...)
        DATABASE_URL=database_url,
        SECRET_KEY=env.get("BENCH_SECRET_KEY") or secrets.token_urlsafe(50),
        DEBUG="False",
        LOG_LEVEL="WARNING",
        STATIC_MANIFEST="false",
        WHITENOISE_USE_FINDERS="true",
        PYTHONUNBUFFERED="1",
        # The bench measures latency with clients that never pause: no API rate limit.
        API_THROTTLE_USER="1000000/minute",
    )
    env.update(extra)
    return env


def manage(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [PYTHON, str(MANAGE), *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise BenchError(
            f"manage.py {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}{result.stderr[-4000:]}"
        )
    return result


class BenchError(Exception):
    pass


# --- Reference files -------------------------------------------------------------
def generator_sources() -> list[Path]:
    return sorted(
        [*ROOT.glob("*/management/commands/generate_customers.py"), *ROOT.glob("*/generator.py")]
    )


def generator_available() -> bool:
    return any(ROOT.glob("*/management/commands/generate_customers.py"))


def generator_fingerprint() -> str:
    """Changes when the generator's code does: its files are then generated again."""
    digest = hashlib.sha256()
    for path in generator_sources():
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def reference_file(rows: int, *, seed: int = 42, change_percent: int = 0, log=print) -> Path:
    """bench/data/customers-<rows>-s<seed>[-c<P>].csv, generated once and then reused.

    A sidecar .json written after the generator succeeds records the file's size and the
    generator's fingerprint: a file without it, with another size (cut short, edited) or
    from another version of the generator is generated again.
    """
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    name = f"customers-{rows}-s{seed}" + (f"-c{change_percent}" if change_percent else "")
    path = DATA_DIR / f"{name}.csv"
    marker = path.with_suffix(".json")
    spec = {
        "rows": rows,
        "seed": seed,
        "change_percent": change_percent,
        "dirty_percent": 0,
        "generator": generator_fingerprint(),
    }
    if path.is_file() and marker.is_file():
        recorded = json.loads(marker.read_text())
        if recorded.get("spec") == spec and recorded.get("size") == path.stat().st_size:
            log(f"  reusing {path.relative_to(ROOT)} ({path.stat().st_size / 1e6:,.0f} MB)")
            return path
    if not generator_available():
        raise BenchError(
            "imports/management/commands/generate_customers.py is missing: "
            "cannot generate the reference files."
        )
    marker.unlink(missing_ok=True)
    log(f"  generating {path.relative_to(ROOT)} ({rows:,} rows) ...")
    started = time.perf_counter()
    args = [
        "generate_customers",
        str(path),
        "--rows",
        str(rows),
        "--seed",
        str(seed),
        "--dirty-percent",
        "0",
        "--quiet",
        "--force",
    ]
    if change_percent:
        args += ["--change-percent", str(change_percent)]
    manage(*args, env=django_env("sqlite:///:memory:"))
    marker.write_text(json.dumps({"spec": spec, "size": path.stat().st_size}))
    log(f"    {path.stat().st_size / 1e6:,.0f} MB in {time.perf_counter() - started:.0f} s")
    return path


# --- Databases ---------------------------------------------------------------------
def with_dbname(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def dbname(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def pg_connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, connect_timeout=10)


def pg_recreate(url: str) -> None:
    """Drop and create the bench database; refuses any name without "bench" in it."""
    name = dbname(url)
    if "bench" not in name:
        raise BenchError(
            f"Refusing to drop {name!r}: the bench database name must contain 'bench'."
        )
    with pg_connect(with_dbname(url, "postgres")) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def pg_drop(url: str) -> None:
    name = dbname(url)
    if "bench" in name:
        with pg_connect(with_dbname(url, "postgres")) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_checkpoint(url: str) -> None:
    """Flush dirty buffers so one step's writes are not paid for during the next one."""
    with pg_connect(url) as conn:
        conn.execute("CHECKPOINT")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def sqlite_remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# --- Measured processes ----------------------------------------------------------------
@dataclass
class Measured:
    step: str
    wall: float
    max_rss_kb: int
    returncode: int
    cpu_seconds: float = 0.0  # the child's user + system time (not the database server's)
    file_bytes: int = 0
    rows: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    engine_seconds: float | None = None  # ImportState finished_at - started_at: no start-up

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.wall if self.wall else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.file_bytes / 2**20 / self.wall if self.wall else 0.0

    @property
    def peak_rss_mb(self) -> float:
        return self.max_rss_kb / 1024


class Child:
    """A child process whose wall time and peak RSS we measure (reaped with os.wait4)."""

    def __init__(self, args: list[str], *, env: dict[str, str], log_name: str):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{log_name}.log"
        self._log = self.log_path.open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.wall: float | None = None
        self.max_rss_kb = 0
        self.cpu_seconds = 0.0
        self.returncode: int | None = None

    def _reaped(self, status: int, usage) -> None:
        self.wall = time.perf_counter() - self.started
        self.max_rss_kb = usage.ru_maxrss  # kilobytes on Linux
        self.cpu_seconds = usage.ru_utime + usage.ru_stime
        self.returncode = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.returncode  # we reaped it; keep Popen from trying
        self._log.close()

    def poll(self) -> bool:
        """True once the process has exited."""
        if self.returncode is None:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self._reaped(status, usage)
        return self.returncode is not None

    def wait(self) -> Child:
        if self.returncode is None:
            _, status, usage = os.wait4(self.proc.pid, 0)
            self._reaped(status, usage)
        return self

    def kill(self) -> None:
        if self.returncode is None:
            self.proc.terminate()
            self.wait()

    def output_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def check(self, what: str) -> Child:
        self.wait()
        if self.returncode != 0:
            raise BenchError(f"{what} failed ({self.returncode}):\n{self.output_tail()}")
        return self


def import_args(path: Path, *extra: str) -> list[str]:
    return [PYTHON, str(MANAGE), "run_import", str(path), "--verbosity", "0", *extra]


def latest_import(url: str) -> dict:
    with pg_connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id, status, rows_processed, bytes_processed, started_at, finished_at, "
            + ", ".join(IMPORT_COUNTERS)
            + " FROM imports_importstate ORDER BY id DESC LIMIT 1"
        )
        row = cur.fetchone()
        if row is None:
            return {}
        return dict(zip([d.name for d in cur.description], row, strict=True))


def sqlite_latest_import(path: Path) -> dict:
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute(
            "SELECT id, status, rows_processed, bytes_processed, started_at, finished_at, "
            + ", ".join(IMPORT_COUNTERS)
            + " FROM imports_importstate ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return dict(row) if row else {}


def engine_seconds(state: dict) -> float | None:
    started, finished = state.get("started_at"), state.get("finished_at")
    if not started or not finished:
        return None
    if isinstance(started, str):  # SQLite
        started, finished = datetime.fromisoformat(started), datetime.fromisoformat(finished)
    return (finished - started).total_seconds()


def timed_import(
    step: str, path: Path, *, env: dict[str, str], latest, extra: tuple[str, ...] = ()
) -> Measured:
    """Run one foreground import to the end; its counters come from its ImportState row."""
    child = Child(
        import_args(path, *extra),
        env=env,
        log_name=re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-"),
    ).check(step)
    state = latest()
    if state.get("status") != "completed":
        raise BenchError(f"{step}: import ended {state.get('status')!r}:\n{child.output_tail()}")
    return Measured(
        step=step,
        wall=child.wall,
        max_rss_kb=child.max_rss_kb,
        returncode=child.returncode,
        cpu_seconds=child.cpu_seconds,
        file_bytes=path.stat().st_size,
        rows=state["rows_processed"],
        counters={name: state[name] for name in IMPORT_COUNTERS},
        engine_seconds=engine_seconds(state),
    )


# --- The COPY floor ------------------------------------------------------------------------
FLOOR_SQL = """
DROP TABLE IF EXISTS floor_customer;
CREATE TABLE floor_customer (LIKE customers_customer INCLUDING ALL);
ALTER TABLE floor_customer
    ADD COLUMN csv_index bigint,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET DEFAULT now();
TRUNCATE floor_customer;
"""


# The raw floor: the file's columns as text, no index, no constraint: what reading and
# sending the bytes costs, whatever the table.
RAW_FLOOR_SQL = f"""
DROP TABLE IF EXISTS floor_customer;
CREATE TABLE floor_customer ({", ".join(f"{c} text" for c in CSV_COLUMNS)});
"""


def copy_floor(url: str, path: Path, psql_binary: str = "psql", *, raw: bool = False) -> Measured:
    """`psql \\copy` of the file into a twin of customers_customer (same indexes, constraints).

    The fastest a client can put this file into that table: no parsing in Python, no
    upsert, no checkpoint. The import's time is reported as a ratio to this. `raw`:
    into an all-text table without any index instead.
    """
    psql = [psql_binary, "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-q", url]
    setup = RAW_FLOOR_SQL if raw else FLOOR_SQL
    subprocess.run([*psql, "-c", setup], check=True, capture_output=True)
    pg_checkpoint(url)
    quoted = str(path).replace("'", "''")
    command = (
        f"\\copy floor_customer ({', '.join(CSV_COLUMNS)}) FROM '{quoted}' "
        f"WITH (FORMAT csv, HEADER true, FORCE_NOT_NULL ({', '.join(NOT_NULL_TEXT)}))"
    )
    child = Child([*psql, "-c", command], env=dict(os.environ), log_name="floor-copy")
    child.check("psql \\copy")
    with pg_connect(url) as conn:
        rows = conn.execute("SELECT count(*) FROM floor_customer").fetchone()[0]
        conn.execute("DROP TABLE floor_customer")
    return Measured(
        step="COPY raw floor (all-text table, no index)" if raw else "COPY floor (psql \\copy)",
        wall=child.wall,
        max_rss_kb=child.max_rss_kb,
        returncode=child.returncode,
        cpu_seconds=child.cpu_seconds,
        file_bytes=path.stat().st_size,
        rows=rows,
    )


def mark_manual_edits(url: str) -> int:
    """1 % of customers edited by hand, as the changed re-import must leave them alone."""
    with pg_connect(url) as conn:
        cur = conn.execute(
            "UPDATE customers_customer SET manually_edited_at = now() WHERE id % 100 = 0"
        )
        return cur.rowcount
