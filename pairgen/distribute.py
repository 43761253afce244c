"""Distributors: run one pure function over many tasks, locally or on Ray.

The unit of work is a task (a scene); ``fn(task, **common)`` turns it into a
result record and never raises (failures are records too). ``common`` holds
what every task shares (the output folder, the config); Ray ships it to the
object store once. Both distributors share
one signature and call ``on_result(task, result)`` in the driver as each
task finishes, in completion order, so the caller can update its manifest
and progress bar.

Ray: one remote task per input with ``max_retries`` retries when its worker
process dies (a segfault, the OOM killer, a lost node). A task that still
fails is turned into a failed record by ``on_error`` and the run goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from manifests.options import check, option

__all__ = ["ClusterOptions", "run_local", "run_ray"]

log = logging.getLogger(__name__)

Task = Any
Result = dict


def run_local(
    fn: Callable[[Task], Result],
    tasks: Sequence[Task],
    on_result: Callable[[Task, Result], None],
    on_error: Callable[[Task, BaseException], Result],
    common: dict | None = None,
) -> None:
    """Run every task in this process, one after the other (debugging, tiny runs)."""
    for task in tasks:
        try:
            result = fn(task, **(common or {}))
        except Exception as e:  # noqa: BLE001  (fn should not raise; if it does, the run goes on)
            result = on_error(task, e)
        on_result(task, result)


def _init_ray(address: str | None, workers: int | None) -> bool:
    """Connect to ``address`` or start a local Ray; return whether we started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_ACCEPT_LOCAL_ADDRESS", "1")
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=True, configure_logging=False)
    if address:
        log.info("joining the Ray cluster at %s", address)
        ray.init(address=address, **kwargs)
    else:
        cpus = workers or os.cpu_count() or 1
        log.info("starting a local Ray with %d CPUs", cpus)
        ray.init(num_cpus=cpus, **kwargs)
    return True


def run_ray(
    fn: Callable[[Task], Result],
    tasks: Sequence[Task],
    on_result: Callable[[Task, Result], None],
    on_error: Callable[[Task, BaseException], Result],
    common: dict | None = None,
    *,
    address: str | None = None,
    workers: int | None = None,
    retries: int = 2,
    cpus_per_task: float = 1.0,
) -> None:
    """Run every task as a Ray task; results come back as they finish."""
    import ray

    started = _init_ray(address, workers)
    try:
        remote = ray.remote(num_cpus=cpus_per_task, max_retries=retries, retry_exceptions=False)(fn)
        shared = {k: ray.put(v) for k, v in (common or {}).items()}
        pending = {remote.remote(task, **shared): task for task in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:  # worker died past its retries, or fn raised
                    log.debug("task failed", exc_info=True)
                    result = on_error(task, e)
                on_result(task, result)
    finally:
        if started:
            ray.shutdown()


@dataclass(frozen=True)
class ClusterOptions:
    """Where a stage's units of work run: a local or joined Ray cluster, or this process."""

    workers: int | None = option(None, min=1, metavar="N",
                                 help="CPUs of the local Ray started when --ray-address is not given (None: all of them)")
    ray_address: str | None = option(None, metavar="ADDR",
                                     help="join this Ray cluster ('auto' for the one `ray start` began here) "
                                     "instead of starting one")
    retries: int = option(2, min=0, max=100, metavar="N", help="times a scene is retried when its worker process dies")
    no_ray: bool = option(False, help="run every scene in this process, one after the other (debugging)")

    def __post_init__(self) -> None:
        check(self)

    def distributor(self) -> Callable[..., None]:
        """:func:`run_local`, or :func:`run_ray` with these options bound."""
        if self.no_ray:
            return run_local
        return partial(run_ray, address=self.ray_address, workers=self.workers, retries=self.retries)
