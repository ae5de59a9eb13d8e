"""Is a worker process (named host:pid) still there? Shared by the import and export jobs."""

from __future__ import annotations

import os
import socket


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped is a zombie: dead for our purposes
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def worker_process_alive(worker: str) -> bool:
    """False when `worker` (host:pid) ran on this machine and its process is gone.

    Same machine: a dead process is known at once, no need to wait for a stale
    heartbeat. Another machine's worker is assumed alive; its heartbeat decides.
    """
    host, _, pid = worker.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return int(pid) == os.getpid() or pid_alive(int(pid))
    return True
