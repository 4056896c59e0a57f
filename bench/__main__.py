"""``python -m bench {peers,scale,scale-partitioned,faults,tables,aim-wide}``: one entry point
for the benchmarks and the fault-injection loop."""

from __future__ import annotations

import argparse
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse the sub-command and run it."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    from . import aim_wide, faults, partitioned, peers, scale, tables

    peers.register(sub)
    scale.register(sub)
    partitioned.register(sub)
    faults.register(sub)
    tables.register(sub)
    aim_wide.register(sub)
    args = parser.parse_args(argv)
    # SIGTERM becomes SystemExit, so subprocess.run kills the running child instead of orphaning it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
