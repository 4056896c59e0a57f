"""Atomic outputs: a file or directory appears whole, or not at all; and the clean-up of what a
killed writer left behind.

Everything privsynth writes goes through these helpers: the content is written next to its target
under a temporary name and renamed into place in one step, so an error or a kill midway never
leaves a half-written schema, table, model or report behind.

A kill can still leave the *temporary* sibling (a hidden ``.partial`` file or folder, or the
``.old`` copy of a replaced directory). Their names carry the writer's host and process id
(``.<target>.owner-<host>-<pid>.<random>.partial``), so :func:`remove_stale_siblings` can tell a
sibling whose writer is gone (removed) from one a live process is still writing (kept). Runs
call it for their run directory and the model store for its entries, before they write.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputFileError

#: A temporary sibling in the naming of an older privsynth (no owner recorded) is removed only
#: when it has not changed for this long: its writer cannot be asked whether it is alive.
LEGACY_STALE_SECONDS = 24 * 3600
_OWNED = re.compile(r"owner-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+\.(partial|old)")
_LEGACY = re.compile(r"[A-Za-z0-9_]+\.partial|old-\d+")


def host_tag() -> str:
    """This machine's name as it appears in temporary names (letters, digits, ``_``)."""
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:40] or "host"


def _owner_prefix(target: Path) -> str:
    return f".{target.name}.owner-{host_tag()}-{os.getpid()}."


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a process of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(sibling: Path, name: str) -> bool:
    rest = sibling.name[len(name) + 2 :]
    owned = _OWNED.fullmatch(rest)
    if owned is not None:
        # Another host's writer cannot be checked from here: left alone.
        return owned["host"] == host_tag() and not pid_alive(int(owned["pid"]))
    if _LEGACY.fullmatch(rest) is None:
        return False
    try:
        return time.time() - sibling.lstat().st_mtime > LEGACY_STALE_SECONDS
    except OSError:
        return False


def remove_stale_siblings(target: str | Path) -> list[Path]:
    """Remove the temporary siblings of ``target`` whose writer is gone; return them.

    A sibling is ``.<target>.owner-<host>-<pid>.<random>.partial`` (or ``.old``): it is stale
    when ``<host>`` is this machine and no process ``<pid>`` runs here. Siblings of live
    processes, and of other hosts, are kept; so is anything else in the folder.
    """
    target = Path(target)
    prefix = f".{target.name}."
    removed: list[Path] = []
    try:
        siblings = [p for p in target.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for sibling in siblings:
        if not _stale(sibling, target.name):
            continue
        if sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)
        removed.append(sibling)
    return removed


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it onto ``target`` if the block succeeds.

    The temporary file is removed if the block raises.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=_owner_prefix(target), suffix=".partial", dir=target.parent
    )
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
    tmp = Path(tempfile.mkdtemp(prefix=_owner_prefix(target), suffix=".partial", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            backup = target.with_name(f"{_owner_prefix(target)}{uuid.uuid4().hex[:8]}.old")
            os.replace(target, backup)
            os.replace(tmp, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = [
    "atomic_directory",
    "atomic_path",
    "atomic_write",
    "atomic_write_text",
    "host_tag",
    "pid_alive",
    "remove_stale_siblings",
]


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
