"""Free text from callers: what may be stored, and what may be logged."""

from __future__ import annotations

import unicodedata


def printable(value: str, multiline: bool = False) -> bool:
    """Single-line values (they are logged): nothing unprintable. Multi-line free text: no
    control characters (C0, DEL, C1) other than tab, CR and LF."""
    if multiline:
        return all(ch in "\t\n\r" or unicodedata.category(ch) != "Cc" for ch in value)
    return value.isprintable()
