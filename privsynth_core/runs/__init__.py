"""A run of the pipeline, from a configuration to a published run directory.

- :mod:`.config`: ``RunConfig``, a run's configuration (``privsynth run CONFIG``), unknown keys
  refused, and the hash that names a run's cache.
- :mod:`.pipeline`: the steps (load, validate, domain, fit, sample, evaluate, publish), one
  function each; the Prefect flows' tasks call one of these, and nothing else.
- :mod:`.rundir`: the run directory (``release/`` for what may leave, ``custodian/`` for what
  must not) and ``run_pipeline``, the same steps without Prefect.
- :mod:`.sweep`: a grid of runs over generators and epsilons on one shared budget.

Importing this package loads none of its modules; import the one you need.
"""
