"""How an error reaches a user: as one line (the command line and the web app both print it so)."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """The message of an exception on one line; OSErrors name their file as `file: reason`."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def shown(value: object, most: int = 40) -> str:
    """A value a user typed or sent, as a message quotes it: repr, cut to about `most` characters so that a
    megabyte field does not come back whole."""
    text = repr(value)
    return text if len(text) <= most else f"{text[:most - 1]}…' ({len(str(value)):,} characters)"
