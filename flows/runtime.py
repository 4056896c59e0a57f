"""Where flows run: the Prefect API they talk to, and the task runner that executes their tasks.

- With ``PREFECT_API_URL`` set, flows report to that server (``prefect server start``, or
  Prefect Cloud). Without it, Prefect starts a temporary local server for the process (≈6-9 s
  once); flow-run heartbeats are switched off there, since nothing outlives the process to
  watch them and they cost about a second per flow run, and so is its usage telemetry.
- Task runners: ``thread`` (the default: a thread pool in this process) or ``dask`` (Prefect's
  Dask integration, ``prefect-dask``): a new local cluster, or an existing one given by its
  scheduler address (``--dask-address`` / ``PRIVSYNTH_DASK_ADDRESS``).
- A partitioned input (a directory or glob of Parquet/CSV parts) is read one partition per
  task on the cluster at the run's ``dask_address`` (:func:`partition_executor`): loading,
  validation, the fit's counts and the evaluation's sample. A flow whose tasks run on a Dask
  cluster reads them there whatever named it (``--dask-address``, or
  ``$PRIVSYNTH_DASK_ADDRESS`` with ``--task-runner dask``) or started it
  (:func:`flow_cluster_address`); with no cluster named the flow starts a local one for the
  run (:func:`partition_reading`: 2 worker processes, 2 GiB each). Only without
  dask.distributed are its partitions read one after another in the task's own process (one
  partition in memory at a time).
- A flow run started for an application (the web app, :mod:`privsynth_flows.served`) names
  the privsynth home whose ledger and model store it uses as a parameter: :func:`using_home`
  points ``PRIVSYNTH_HOME`` there for the run (its process is the run's own).
- A flow run whose configuration names a cluster (``dask_address``) but started on threads (a
  served flow run reads its configuration file once it runs) submits its tasks there for the
  rest of the run (:func:`tasks_on`), as ``privsynth run --dask-address`` does from the start.
- No runner reruns a fit. The local cluster privsynth starts has
  ``distributed.scheduler.allowed-failures`` 0: a task whose worker dies fails at once
  (``KilledWorker``) instead of being rescheduled. An existing cluster keeps its own setting
  (Dask's default reschedules a task up to 3 times), which privsynth cannot change from a
  client; there a rescheduled fit reaches the model store, finds its own open reservation and
  refuses (:mod:`privsynth_core.store`), so it is still never trained or paid twice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from privsynth_core.errors import ConfigError, PrivsynthError

if TYPE_CHECKING:
    from privsynth_core.runs.config import RunConfig

DASK_ADDRESS_ENV = "PRIVSYNTH_DASK_ADDRESS"
TASK_RUNNERS = ("thread", "dask")
#: ``distributed.scheduler.allowed-failures`` of the clusters privsynth starts: a task whose
#: worker died is failed, not run again elsewhere (it may have reserved budget).
ALLOWED_FAILURES = 0


_PREFECT_LOGGERS = (
    "prefect.task_runs",
    "prefect.flow_runs",
    "prefect.engine",
    "prefect.task_engine",
    "prefect.flow_engine",
)


class UserErrorFilter(logging.Filter):
    """Log a :class:`PrivsynthError` as its one-line message, without Prefect's traceback.

    Such errors are the user's to fix (a wrong schema, an exhausted budget) and their message
    says how; a traceback through Prefect's engine only hides it. Other exceptions keep theirs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PrivsynthError):
            record.exc_info = None
            record.exc_text = None
        return True


@contextmanager
def prefect_session() -> Iterator[None]:
    """Settings for a flow run started from the command line (see the module docstring)."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )

    quiet = UserErrorFilter()
    loggers = [logging.getLogger(name) for name in _PREFECT_LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        if PREFECT_API_URL.value():
            yield
        else:
            # The temporary server sends no usage telemetry: privsynth runs next to private
            # data, often on machines with no way out.
            with temporary_settings(
                {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_SERVER_ANALYTICS_ENABLED: False}
            ):
                yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


@contextmanager
def using_home(home: str | os.PathLike[str] | None) -> Iterator[None]:
    """Run the block with ``PRIVSYNTH_HOME`` set to ``home`` (the ledger, the model store and
    the DP domains there); nothing changes when ``home`` is None.

    The variable is process-wide: it is meant for a flow run in a process of its own (a served
    deployment's run), whose tasks (threads too) then all use that home.
    """
    from privsynth_core.privacy.ledger import HOME_ENV

    if home is None:
        yield
        return
    saved = os.environ.get(HOME_ENV)
    os.environ[HOME_ENV] = str(home)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(HOME_ENV, None)
        else:
            os.environ[HOME_ENV] = saved


def make_task_runner(
    kind: str | None,
    *,
    address: str | None = None,
    n_workers: int = 2,
    processes: bool = True,
) -> Any:
    """A Prefect task runner, or None for the flow's default (a thread pool).

    Args:
        kind: ``thread``, ``dask`` or None.
        address: scheduler address of an existing Dask cluster (``tcp://host:8786``); default
            ``$PRIVSYNTH_DASK_ADDRESS``; without one a local cluster is started for the flow.
        n_workers: workers of the local cluster.
        processes: local workers are processes (True) or threads of this process (False).

    Raises:
        ConfigError: an unknown runner, or prefect-dask is not installed.
    """
    if kind in (None, "thread"):
        return None
    if kind != "dask":
        raise ConfigError(f"unknown task runner {kind!r}; choose one of {', '.join(TASK_RUNNERS)}")
    try:
        from prefect_dask.task_runners import DaskTaskRunner
    except ImportError:
        raise ConfigError(
            "the dask task runner needs prefect-dask: pip install prefect-dask"
        ) from None
    address = address or os.environ.get(DASK_ADDRESS_ENV) or None
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": n_workers,
            "processes": processes,
            "threads_per_worker": 1,
            "dashboard_address": None,
            "scheduler_kwargs": {"allowed_failures": ALLOWED_FAILURES},
        },
    )


#: Seconds :func:`reach_cluster` waits for a Dask scheduler to answer.
CLUSTER_TIMEOUT = 10.0


def reach_cluster(address: str, *, timeout: float | None = None) -> None:
    """Check that a Dask scheduler answers at ``address`` (a client connects, then leaves).

    Called before anything of a run is written, so a cluster that is down or misnamed is one
    clear message, not a run that fails half-way or distributed's retries and tracebacks.

    Raises:
        ConfigError: dask.distributed is missing, or no scheduler answered within ``timeout``
            (default :data:`CLUSTER_TIMEOUT`).
    """
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(
            "running on a Dask cluster needs dask.distributed: pip install distributed"
        ) from None
    # Its retries and connection errors are logged by distributed; the message below says it.
    chatter = logging.getLogger("distributed")
    level = chatter.level
    chatter.setLevel(logging.CRITICAL)
    try:
        client = Client(  # type: ignore[no-untyped-call]
            address, timeout=timeout or CLUSTER_TIMEOUT, set_as_default=False
        )
    except Exception as exc:  # OSError, TimeoutError, a bad address's ValueError: all one answer
        raise ConfigError(
            f"cannot reach the Dask scheduler at {address} ({type(exc).__name__}); check the "
            f"address (tcp://HOST:8786) and that the scheduler is running"
        ) from None
    else:
        client.close()  # type: ignore[no-untyped-call]
    finally:
        chatter.setLevel(level)


@contextmanager
def tasks_on(address: str | None) -> Iterator[None]:
    """Submit the running flow's tasks to the Dask cluster at ``address`` for the block.

    For a flow run whose configuration names the cluster (a served flow run reads it from its
    configuration file, after Prefect chose the flow's task runner: threads): the block gets a
    ``DaskTaskRunner`` on ``address`` in place of the flow run's, in the same flow run (its
    task runs stay the flow run's own, so an application reading their states sees them), as
    ``privsynth run --dask-address`` gives the flow from the start. The scheduler is checked
    first (:func:`reach_cluster`), so an unreachable cluster fails the run before it writes
    anything. Nothing changes when ``address`` is empty, outside a flow run, or when the flow
    run's tasks already run on Dask (``privsynth run --dask-address`` or
    ``--task-runner dask``).

    Raises:
        ConfigError: prefect-dask is missing, or the scheduler cannot be reached.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if not address or context is None:
        yield
        return
    runner = make_task_runner("dask", address=address)
    if isinstance(context.task_runner, type(runner)):
        yield
        return
    reach_cluster(address)
    with runner, context.model_copy(update={"task_runner": runner}):
        yield


def flow_cluster_address() -> str | None:
    """The scheduler address of the Dask cluster the running flow's tasks run on, or None.

    None outside a flow run, or when its task runner is not Dask (threads). For a Dask runner
    this is the cluster it connected to or started (its client is made on first use, as the
    first task would make it), so the flow can read partitions where its tasks run: the run's
    ``dask_address`` alone misses a cluster named by ``$PRIVSYNTH_DASK_ADDRESS`` or a local
    one the runner started.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    runner = getattr(context, "task_runner", None)
    try:
        from prefect_dask.task_runners import DaskTaskRunner
    except ImportError:
        return None
    if not isinstance(runner, DaskTaskRunner):
        return None
    scheduler = runner.client.scheduler
    return None if scheduler is None else str(scheduler.address)


#: The local cluster a flow starts to read a partitioned input when no cluster is named:
#: worker processes, one thread each, and each worker's memory limit (Dask's nanny restarts a
#: worker past it). A partition must fit in one worker's limit.
LOCAL_PARTITION_CLUSTER: dict[str, Any] = {
    "n_workers": 2,
    "threads_per_worker": 1,
    "memory_limit": "2GiB",
    "processes": True,
}


@contextmanager
def partition_reading(config: RunConfig) -> Iterator[RunConfig]:
    """``config`` with the cluster where the flow's tasks read a partitioned input.

    The run's ``dask_address`` when it names one; else the cluster the flow's tasks run on
    (:func:`flow_cluster_address`: ``$PRIVSYNTH_DASK_ADDRESS`` with ``--task-runner dask``, or
    the local cluster that runner started); else a local cluster started for the block
    (:data:`LOCAL_PARTITION_CLUSTER`: 2 worker processes of one thread, 2 GiB each), so a
    partitioned input is read in parallel, one partition per worker, by default. ``config``
    itself when the input is a single file (nothing is read by partitions), and when
    dask.distributed is not installed (the partitions are then read in turn). The address is
    left out of every hash of the run, so the run stays the same run.
    """
    from privsynth_core.partitions import is_partitioned

    if config.dask_address or not is_partitioned(config.input):
        yield config
        return
    address = flow_cluster_address()
    if address:
        yield config.model_copy(update={"dask_address": address})
        return
    with local_partition_cluster() as local:
        yield config if local is None else config.model_copy(update={"dask_address": local})


@contextmanager
def local_partition_cluster() -> Iterator[str | None]:
    """A local cluster (:data:`LOCAL_PARTITION_CLUSTER`) for the block; its scheduler address,
    or None when dask.distributed is not installed (the partitions are then read in turn)."""
    try:
        from distributed import LocalCluster
    except ImportError:
        yield None
        return
    # The cluster's own chatter (its scheduler runs in this process: clients and workers
    # coming and going, a closed connection's traceback at shutdown) is not the run's to show.
    chatter = logging.getLogger("distributed")
    level = chatter.level
    chatter.setLevel(logging.ERROR)
    try:
        with LocalCluster(  # type: ignore[no-untyped-call]
            **LOCAL_PARTITION_CLUSTER,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            scheduler_kwargs={"allowed_failures": ALLOWED_FAILURES},
        ) as cluster:
            yield str(cluster.scheduler_address)
    finally:
        chatter.setLevel(level)


@contextmanager
def partition_cluster(address: str | None) -> Iterator[Executor | None]:
    """An executor that reads partitions outside a flow run (an application's own passes,
    such as the web app adding a partitioned dataset or fixing its domain): on the cluster at
    ``address`` when one is named, else on a local cluster started for the block, as a flow
    run would (:func:`partition_reading`). None only without dask.distributed.

    Raises:
        ConfigError: the scheduler at ``address`` cannot be reached.
    """
    if address:
        with partition_executor(address) as executor:
            yield executor
        return
    with local_partition_cluster() as local, partition_executor(local) as executor:
        yield executor


@contextmanager
def partition_executor(address: str | None, *, timeout: float = 30) -> Iterator[Executor | None]:
    """An executor on the Dask cluster at ``address`` for reading partitions, or None.

    The partitions' tasks (:mod:`privsynth_core.partitions`) are plain functions; a
    ``distributed.Client``'s executor runs them on the cluster's workers, and only their small
    results (counts, a sample) come back. None when ``address`` is empty: the caller reads the
    partitions in turn. ``timeout``: seconds to wait for the scheduler. Called inside a task on
    a worker, it uses that worker's cluster through ``distributed.worker_client`` (which
    secedes from the worker's threads while waiting: no deadlock when every thread runs a task
    that waits for partitions).

    Raises:
        ConfigError: dask.distributed is missing, or the scheduler cannot be reached.
    """
    if not address:
        yield None
        return
    try:
        from distributed import Client, get_worker, worker_client
    except ImportError:
        raise ConfigError(
            "reading partitions on a Dask cluster needs dask.distributed: pip install distributed"
        ) from None
    try:
        get_worker()
    except ValueError:
        pass  # not inside a Dask task: connect to the scheduler below
    else:
        # Inside a task on a worker (the flow's tasks run on the cluster): a client of the
        # worker's own cluster that secedes from the worker's thread pool while it waits, so
        # tasks waiting for their partitions cannot hold every thread the partitions need.
        with worker_client() as inner:
            yield inner.get_executor(pure=False)
        return
    try:
        client = Client(address, timeout=timeout, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"cannot reach the Dask scheduler at {address} ({type(exc).__name__}); check the "
            f"address (tcp://HOST:8786) and that the scheduler is running"
        ) from None
    try:
        yield client.get_executor(pure=False)  # type: ignore[no-untyped-call]
    finally:
        client.close()  # type: ignore[no-untyped-call]
