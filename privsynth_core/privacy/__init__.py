"""privsynth's privacy model: the mechanisms, the release rules, and what enforces each rule.

This package grows as the privacy modules move in (see CONTRIBUTING / docs/privacy.md); today it
holds the pieces written for the end-to-end release guarantee:

- :mod:`.noise`: exact discrete Laplace and Gaussian noise for integer counts (OpenDP, from a
  cryptographic source); the OS-seeded generator for the mechanisms that are not counts.
"""
