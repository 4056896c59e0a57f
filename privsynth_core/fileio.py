"""Atomic outputs: a file or directory appears whole, or not at all.

Everything privsynth writes goes through these helpers: the content is written next to its target
under a temporary name and renamed into place in one step, so an error or a kill midway never
leaves a half-written schema, table, model or report behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputFileError


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it onto ``target`` if the block succeeds.

    The temporary file is removed if the block raises.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(target: str | Path, text: str) -> None:
    """Write ``text`` to ``target`` atomically (UTF-8)."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


@contextmanager
def atomic_directory(target: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory; it replaces ``target`` if the block succeeds.

    Raises:
        InputFileError: ``target`` exists and is not empty, and ``overwrite`` is False.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise InputFileError(f"{target} exists and is not a directory; choose another output path")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise InputFileError(
            f"output directory {target} already exists and is not empty; choose another path or "
            f"pass --overwrite"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            backup = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, backup)
            os.replace(tmp, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
