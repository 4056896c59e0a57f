"""This process' memory as Linux reports it in ``/proc/self/status`` (stdlib only: the bench's
child processes import it before anything heavy)."""

from __future__ import annotations

import resource


def _status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    ``VmHWM`` from /proc (the high-water mark of this process' own memory, fresh after exec);
    ``ru_maxrss`` would also count the parent's memory at the fork on Linux.
    """
    peak = _status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float | None:
    """Resident set size of this process now, in MiB (None where /proc is missing)."""
    return _status_mib("VmRSS")
