"""Starting (or joining) Ray quietly, and turning :class:`RayOptions` into a concrete plan.

Ray prints a lot when it starts (token notices, worker logs forwarded to the driver, a
summary per dataset); none of it reaches the terminal unless ``RayOptions(verbose=True)``.

>>> plan = plan_resources(RayOptions(), {"CPU": 2.0}, spec_batch_size=16)
>>> (plan.actors, plan.gpus_per_actor, plan.batch_size, plan.torch_threads, plan.read_tasks)
(1, 0.0, 16, 1, 2)
>>> plan_resources(RayOptions(), {"CPU": 64.0, "GPU": 8.0}, spec_batch_size=64).actors
8
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from percep_rag.distributed.options import RayOptions
from percep_rag.errors import ConfigError

# Loggers that print at WARNING or INFO on every start; quiet unless verbose.
_NOISY_LOGGERS = ("ray", "ray.data", "ray._private", "ray.util")


@dataclass(frozen=True)
class ResourcePlan:
    """How many embedding actors run, with which resources, on batches of what size."""

    actors: int
    gpus_per_actor: float
    cpus_per_actor: float
    batch_size: int
    read_cpus: float
    read_tasks: int
    writers: int
    max_restarts: int
    max_task_retries: int

    def for_rows(self, rows: int) -> ResourcePlan:
        """This plan with no more actors or writers than ``rows`` make batches (idle ones cost a start).

        >>> ResourcePlan(4, 0.0, 1.0, 8, 0.5, 8, 2, 3, 3).for_rows(10).actors
        2
        """
        batches = max(1, math.ceil(rows / self.batch_size))
        return replace(
            self,
            actors=min(self.actors, batches),
            read_tasks=min(self.read_tasks, batches),
            writers=min(self.writers, batches),
        )

    @property
    def torch_threads(self) -> int:
        """Threads each actor gives torch: its CPUs, rounded up."""
        return max(1, math.ceil(self.cpus_per_actor))


def plan_resources(options: RayOptions, cluster: Mapping[str, float], *, spec_batch_size: int) -> ResourcePlan:
    """Fill in the options left to their defaults from the cluster's resources.

    >>> plan_resources(RayOptions(gpus_per_actor=1), {"CPU": 8.0}, spec_batch_size=8)
    Traceback (most recent call last):
    ...
    percep_rag.errors.ConfigError: each embedding actor asks for 1.0 GPU(s) but the Ray cluster has 0
    >>> plan_resources(RayOptions(actors=2), {"CPU": 2.0}, spec_batch_size=8)
    Traceback (most recent call last):
    ...
    percep_rag.errors.ConfigError: 2 embedding actor(s) x 1 CPUs + 0.25 for reading need 2.25 CPUs ...
    """
    gpus = float(cluster.get("GPU", 0.0))
    cpus = float(cluster.get("CPU", 0.0))
    per_actor = options.gpus_per_actor if options.gpus_per_actor is not None else (1.0 if gpus >= 1 else 0.0)
    if per_actor > gpus:
        raise ConfigError(f"each embedding actor asks for {per_actor} GPU(s) but the Ray cluster has {gpus:g}")
    actors = options.actors or (max(1, int(gpus // per_actor)) if per_actor else 1)
    # Actors that hold every CPU (or GPU) would leave the read tasks waiting for ever.
    if actors * per_actor > gpus + 1e-9:
        raise ConfigError(f"{actors} embedding actors x {per_actor:g} GPU(s) need more than the cluster's {gpus:g}")
    needed = actors * options.cpus_per_actor + options.read_cpus
    if needed > cpus + 1e-9:
        raise ConfigError(
            f"{actors} embedding actor(s) x {options.cpus_per_actor:g} CPUs + {options.read_cpus:g} for reading "
            f"need {needed:g} CPUs but the Ray cluster has {cpus:g}: lower the actors or the CPUs per actor"
        )
    return ResourcePlan(
        actors=actors,
        gpus_per_actor=per_actor,
        cpus_per_actor=options.cpus_per_actor,
        batch_size=options.batch_size or spec_batch_size,
        read_cpus=options.read_cpus,
        read_tasks=options.read_tasks or 2 * actors,
        writers=options.writers,
        max_restarts=options.max_restarts,
        max_task_retries=options.max_task_retries,
    )


@contextlib.contextmanager
def ray_session(options: RayOptions, *, progress: bool = True) -> Iterator[dict[str, float]]:
    """Use the Ray already initialised here, or start/join one for the ``with`` block.

    Yields the cluster's resources. A Ray this function started is shut down on exit; one
    that was running before is left running.

    Example (starts a local Ray, so not run here): ``with ray_session(RayOptions(num_cpus=2)) as resources: ...``
    """
    import ray

    _quiet_ray_loggers(options.verbose)
    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage-stats notice or upload
        if not options.verbose:
            # Ray's C++ side logs to stderr, e.g. an error-level notice for every actor pool
            # with restarts enabled (ray-project/ray#53727); Python exceptions still surface.
            os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        kwargs: dict[str, object] = {
            "log_to_driver": options.verbose,
            "logging_level": logging.INFO if options.verbose else logging.ERROR,
            "configure_logging": True,
        }
        if options.starts_local_ray:
            kwargs.update(include_dashboard=False, num_cpus=options.num_cpus)
        try:
            with contextlib.nullcontext() if options.verbose else _stderr_to_devnull():
                ray.init(address=options.address, **kwargs)
        except ConnectionError as error:
            where = options.address or os.environ.get("RAY_ADDRESS")
            raise ConfigError(f"cannot reach the Ray cluster at {where}: {error}") from error
        started = True
    _configure_data_context(progress, options.verbose)
    _quiet_ray_loggers(options.verbose)  # again: importing ray.data configures its loggers
    try:
        yield dict(ray.cluster_resources())
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """Ray's native start-up notices are written to file descriptor 2 directly, past ``sys.stderr``."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _quiet_ray_loggers(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.ERROR
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(level)


def _configure_data_context(progress: bool, verbose: bool) -> None:
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = progress
    context.enable_operator_progress_bars = progress
    context.use_ray_tqdm = False  # plain tqdm bars in this process: Ray's go through the worker logs
    context.enable_auto_log_stats = verbose
    context.print_on_execution_start = verbose
    context.verbose_stats_logs = verbose
