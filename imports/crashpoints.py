"""Named crash points for the crash drills (tests only).

IMPORT_CRASH_AT="before_commit:3" makes the importer SIGKILL itself the 3rd time
it reaches that point. The variable is read once at start; unset (production)
every call is a no-op.
"""

from __future__ import annotations

import os
import signal

POINTS = ("mid_copy", "before_commit", "after_commit")
_CRASH_AT = os.environ.get("IMPORT_CRASH_AT", "")
_counts: dict[str, int] = {}


def crashpoint(name: str) -> None:
    if not _CRASH_AT:
        return
    point, _, nth = _CRASH_AT.partition(":")
    if point != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
