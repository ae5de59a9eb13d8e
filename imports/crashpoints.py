"""Named crash points for the crash drills (tests only).

IMPORT_CRASH_AT="before_commit:3" makes the importer SIGKILL itself the 3rd time
it reaches that point. The variable is read once at start; unset (production)
every call is a no-op. IMPORT_PAUSE_AFTER_BATCH="0.05" makes the importer sleep
that many seconds after each committed batch, so that browser tests can watch an
import mid-way on any machine, however fast.
"""

from __future__ import annotations

import os
import signal
import time

POINTS = (
    "mid_copy",
    "before_commit",
    "after_commit",
    "undo_before_commit",
    "undo_after_commit",
    "export_after_write",  # a chunk is in the export's file, its checkpoint not yet committed
    "export_after_commit",
)
_CRASH_AT = os.environ.get("IMPORT_CRASH_AT", "")
_counts: dict[str, int] = {}
_PAUSE = float(os.environ.get("IMPORT_PAUSE_AFTER_BATCH") or 0)


def crashpoint(name: str) -> None:
    if not _CRASH_AT:
        return
    point, _, nth = _CRASH_AT.partition(":")
    if point != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def batch_pause() -> None:
    if _PAUSE:
        time.sleep(_PAUSE)
