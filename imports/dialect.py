"""How a file is read: its delimiter, text encoding and compression.

Detected when an import is created (see `detect`), shown and changeable in the
review step, then stored on the import so that every run and resume reads the
file the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


@dataclass(frozen=True, slots=True)
class Dialect:
    delimiter: str = ","
    encoding: str = "utf-8"
    compression: str = ""  # "", "gzip" or "zip"
