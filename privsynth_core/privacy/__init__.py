"""privsynth's privacy model: the mechanisms, the release rules, and what enforces each rule.

This package grows as the privacy modules move in (see CONTRIBUTING / docs/privacy.md); today it
holds the pieces written for the end-to-end release guarantee:

- :mod:`.noise`: exact noise from OpenDP, from a cryptographic source: discrete Laplace and
  Gaussian noise for integer counts (``discrete_laplace``, ``discrete_gaussian``, with
  ``dominated_sigma`` where a continuous-Gaussian accountant must dominate them), exact
  noisy-max choices (``exponential_choice``) and quantiles (``private_quantile``).
- :mod:`.count`: the released row count n̂, the only size any plan or default may use.
- :mod:`.histograms`: the exact counts count-based mechanisms noise, one frame at a time (so
  a partitioned table's are the sum of its parts', noised once, centrally).
- :mod:`.release`: what a release may hold, its end-to-end statement (``SpentPart``,
  ``statement``), and ``RELEASE_FIELDS``, the one list of what may differ between neighbours.
- :mod:`.coupling` and :mod:`.neighbours`: the neighbour check (release for D and for D plus
  one adversarial row, coupled, and diff the two folders).

docs/privacy.md maps every rule of the privacy model to the module that enforces it.
"""
