"""privsynth's Prefect flows: thin tasks over :mod:`privsynth_core` (imported as privsynth_flows).

- :func:`privsynth_flows.synthesize.synthesize`: one run, load to publish;
- :func:`privsynth_flows.synthesize.evaluate`: re-score a published run;
- :func:`privsynth_flows.synthesize.generate`: draw rows from a saved model (post-processing);
- :func:`privsynth_flows.sweep.sweep`: generators x epsilons x seeds, budget checked up front;
- :func:`privsynth_flows.audit.audit`: empirical privacy audit, training runs fanned out;
- :mod:`privsynth_flows.deploy`: scheduled deployments (``privsynth deploy``);
- :mod:`privsynth_flows.runtime`: the Prefect API and the task runner (threads or Dask);
- :mod:`privsynth_flows.served`: the flows served to an application (the web app) by a Prefect
  runner in a subprocess, and its client: submit, follow, cancel;
- :mod:`privsynth_flows.progress`: a fit's live progress in Prefect (never its losses).

Importing this package imports no Prefect; the submodules do.
"""
