"""Writing files so that a crash never leaves a half-written file under the real name, and reading JSON that
cannot crash the reader."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


JSON_DEPTH = 100  # no file we read nests deeper than a few levels
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def read_json(path: str | Path):
    """The JSON content of a file. Nesting past JSON_DEPTH is refused before parsing, so that every reader meets one
    error type for every bad file: the parser's RecursionError is no ValueError, and how deep it gets first
    depends on the thread's stack. Raises ValueError (JSONDecodeError for bad syntax, UnicodeDecodeError) and
    OSError."""
    text = Path(path).read_text()
    depth = 0
    for bracket in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > JSON_DEPTH:
            raise ValueError(f"nested deeper than {JSON_DEPTH} levels")
    return json.loads(text)


def atomic_write(path: str | Path, write) -> None:
    """Call write(tmp_path), then rename tmp_path to path (same folder, so the rename is atomic)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file private; give it the permissions an ordinary open() would.
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def check_output_folder(out: Path, overwrite: bool, what: str) -> None:
    """An output folder may be new, empty, or replaced with overwrite; its parent must exist."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: holds files (use --overwrite to replace them)")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: no such folder for the {what}")


def replace_folder(tmp: Path, out: Path) -> None:
    """Put the finished folder tmp (beside out) in out's place. An old out is moved aside first and removed
    last, so out is at every moment either the old folder or the new one."""
    tmp.chmod(0o777 & ~umask())  # mkdtemp makes folders private
    if not out.exists():
        tmp.rename(out)
        return
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old)


def refuse_overlap(outputs: list[tuple[str, str | Path | None]], inputs: list[tuple[str, str | Path | None]]) -> None:
    """Refuse an output that is an input, lies inside one or holds one, with or without --overwrite: writing,
    replacing or clearing it would destroy the input. outputs and inputs are (what, path) pairs; a None path is
    skipped. Paths are compared resolved, so a symlink or `..` does not hide an overlap."""
    for out_what, out in outputs:
        if out is None:
            continue
        out_real = Path(os.path.realpath(out))
        for in_what, source in inputs:
            if source is None:
                continue
            source_real = Path(os.path.realpath(source))
            if out_real == source_real:
                where = f"is the {in_what}"
            elif source_real in out_real.parents:
                where = f"lies inside the {in_what} {source}"
            elif out_real in source_real.parents:
                where = f"holds the {in_what} {source}"
            else:
                continue
            raise ValueError(f"{out}: the {out_what} {where}; an input is never written over (choose another "
                             "place for the output)")
