"""Reproducible benchmarks of privsynth: against its peers on Adult, and at scale on census KDD.

Run from the repository root::

    .venv/bin/python -m bench peers   # privsynth vs SDV and SmartNoise on Adult
    .venv/bin/python -m bench scale   # census KDD, 30k -> 300k rows

See ``bench/README.md`` for the protocol and the latest results.
"""
