"""The import engine's one error for a file it cannot read (see reader.FatalImportError)."""

from __future__ import annotations


class FatalImportError(Exception):
    """The file cannot be imported at all; the message is one line for people."""
