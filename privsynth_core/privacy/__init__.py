"""privsynth's privacy model: the mechanisms, the release rules, and what enforces each rule.

Every read of the private table happens in a mechanism of this package, or in a generator's
mechanism that charges the ledger through it. docs/privacy.md states the model; its module map
is this list, rule by rule.

The rows and their neighbours:

- :mod:`.count`: the released row count n̂, the only size any plan or default may use
  (add/remove-one neighbours: the exact size is never released).
- :mod:`.histograms`: the exact counts that count-based mechanisms noise, one frame at a time
  (a partitioned table's are the sum of its parts', noised once, centrally).
- :mod:`.domain`: a domain is declared public by a person (reviewed) or learned with DP,
  column by column, charged before the first mechanism runs.

Noise and mechanisms:

- :mod:`.noise`: exact noise from OpenDP, from a cryptographic source, never from a user
  seed: discrete Laplace and Gaussian noise for integer counts, exact noisy-max choices and
  quantiles.
- :mod:`.cells`: numeric cells that follow the data, learned from a charged noisy tree over a
  grid cut from the public bounds alone.
- :mod:`.dpsgd`, :mod:`.dpsgd_loop`, :mod:`.dpsgd_generator`: DP-SGD, once for every
  generator: Poisson batches at the plan's public rate, clipping and noise through Opacus,
  accounting every step, stopping before a step would pass the target, checkpoints that resume
  under the original reservation.

Accounting:

- :mod:`.accountant`: the accountant contract (history of subsampled-Gaussian steps, epsilon
  at a delta, state that a resumed run continues).
- :mod:`.calibration`: the noise or the number of steps that meets a target, for any
  accountant, never overshooting.
- :mod:`.ledger` (with :mod:`.ledger_store`, :mod:`.ledger_log`, :mod:`.ledger_backup`,
  :mod:`.ledger_types`): one budget per data source, reservations settled by an upper-bound
  accountant, a hash-chained event log, never silently started anew.

Releases:

- :mod:`.release`: what a release may hold, its end-to-end statement, and
  ``RELEASE_FIELDS``, the one list of what may differ between neighbours.
- :mod:`.guarantee`: the guarantee a report shows comes from the ledger, not an editable file.
- :mod:`.checkpoint`: the checkpoint store a resumed DP-SGD fit reads back.

Checking it:

- :mod:`.coupling` and :mod:`.neighbours`: the neighbour check (release for D and for D plus
  one adversarial row, coupled, and diff the two folders).
- :mod:`.audit` and :mod:`.audit_bounds`: membership-inference audits and the empirical
  epsilon lower bound they give, compared with the claim.

Importing this package loads none of its modules; import the one you need.
"""
