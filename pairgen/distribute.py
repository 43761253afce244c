"""Distributors: run one pure function over many tasks, locally or on Ray.

The unit of work is a task (a scene); ``fn(task, **common)`` turns it into a
result record and never raises (failures are records too). ``common`` holds
what every task shares (the output folder, the config); Ray ships it to the
object store once. Both distributors share one signature and call
``on_result(task, result)`` in the driver as each task finishes, in
completion order, so the caller can update its manifest and progress.

Faults, on Ray (:func:`run_ray`):

* **in flight**: at most as many tasks as the cluster has CPUs for
  (``cpus_per_task`` each) are submitted at once, so a submitted task is a
  running one and its age is its running time;
* **worker death** (a segfault, the OOM killer, a lost node): the task is
  submitted again, up to ``retries`` times, then ``on_error`` turns it into
  a failed record and the run goes on. These retries are ours, not Ray's
  (``max_retries=0``), so each one is counted and reported;
* **time limit**: a task running longer than ``timeout`` seconds is
  cancelled (``ray.cancel(force=True)`` kills its worker) and retried the
  same way; past its retries it fails with ``timed out after N s``;
* **heartbeat**: ``on_tick(running, retried)`` is called at least every
  ``TICK`` seconds even when nothing finishes, so a hang is visible in the
  progress lines of a log file.

:func:`run_local` runs the tasks in this process, one after the other, with
the same time limit where a signal can deliver it (the main thread), and
BLAS on one thread as in a Ray worker (``OMP_NUM_THREADS=1``): the pair
search's many small matrix products run 10-30 times slower when OpenBLAS
spreads each over the cores.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from manifests.commands import shorten
from manifests.io import one_line
from manifests.options import check, option

__all__ = ["ClusterOptions", "TaskTimeout", "run_local", "run_ray", "time_limit"]

log = logging.getLogger(__name__)

Task = Any
Result = Any
TICK = 5.0  # seconds between heartbeats while tasks run


class TaskTimeout(RuntimeError):
    """A task ran past the time limit."""


def _short(error: BaseException) -> BaseException:
    """The error with its message cut to one line (:func:`manifests.commands.shorten`: Ray's are long and repeat)."""
    short = RuntimeError(shorten(one_line(error)))
    short.kind = type(error).__name__  # type: ignore[attr-defined]
    return short


@contextlib.contextmanager
def time_limit(seconds: float | None, error: Callable[[str], BaseException] = TaskTimeout) -> Iterator[None]:
    """Raise ``error(message)`` in this thread after ``seconds`` (main thread only; elsewhere no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum, frame):
        raise error(f"timed out after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_local(
    fn: Callable[..., Result],
    tasks: Sequence[Task],
    on_result: Callable[[Task, Result], None],
    on_error: Callable[[Task, BaseException], Result],
    common: dict | None = None,
    *,
    timeout: float | None = None,
    on_tick: Callable[[int, int], None] | None = None,
) -> int:
    """Run every task in this process, one after the other (debugging, tiny runs); return 0 retries."""
    from threadpoolctl import threadpool_limits

    for task in tasks:
        try:
            with time_limit(timeout), threadpool_limits(limits=1, user_api="blas"):  # as a Ray worker (OMP_NUM_THREADS=1)
                result = fn(task, **(common or {}))
        except Exception as e:  # noqa: BLE001  (fn should not raise; if it does, the run goes on)
            result = on_error(task, e)
        on_result(task, result)
    return 0


def _apply(fn: Callable[..., Result], task: Task, **common) -> Result:
    """``fn(task, **common)``: the Ray task, so that ``fn`` may be any callable (``ray.remote`` takes functions)."""
    return fn(task, **common)


def _task_name(fn: Callable) -> str:
    """The name Ray shows for ``fn``'s tasks: the unit of work's (``render_scene``), through the partials that
    wrap it (``manifests.store.in_mounts``)."""
    while isinstance(fn, partial):
        fn = next((a for a in fn.args if callable(a)), fn.func)
    return getattr(fn, "__name__", "task")


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
    fn: Callable[..., Result],
    tasks: Sequence[Task],
    on_result: Callable[[Task, Result], None],
    on_error: Callable[[Task, BaseException], Result],
    common: dict | None = None,
    *,
    address: str | None = None,
    workers: int | None = None,
    retries: int = 2,
    cpus_per_task: float = 1.0,
    timeout: float | None = None,
    on_tick: Callable[[int, int], None] | None = None,
) -> int:
    """Run every task as a Ray task; results come back as they finish. Return the number of retries."""
    import ray

    started = _init_ray(address, workers)
    retried = 0
    try:
        remote = ray.remote(num_cpus=cpus_per_task, max_retries=0, retry_exceptions=False)(_apply).options(
            name=_task_name(fn))
        function = ray.put(fn)  # any callable (a partial too), shipped once
        shared = {k: ray.put(v) for k, v in (common or {}).items()}
        queue = list(enumerate(tasks))[::-1]  # popped from the end: in order
        attempts: dict[int, int] = {}
        running: dict[Any, tuple[int, Task, float]] = {}  # ref -> (index, task, submitted at)

        def capacity() -> int:
            cpus = ray.cluster_resources().get("CPU", 1.0)
            return max(1, int(cpus // cpus_per_task))

        def submit(index: int, task: Task) -> None:
            attempts[index] = attempts.get(index, 0) + 1
            running[remote.remote(function, task, **shared)] = (index, task, time.monotonic())

        def again_or_fail(index: int, task: Task, error: BaseException) -> None:
            nonlocal retried
            if attempts[index] <= retries:
                retried += 1
                log.info("retrying task %d (attempt %d of %d): %s", index, attempts[index] + 1, retries + 1, error)
                queue.append((index, task))
            else:
                on_result(task, on_error(task, error))

        while queue or running:
            limit = capacity()
            while queue and len(running) < limit:
                submit(*queue.pop())
            done, _ = ray.wait(list(running), num_returns=1, timeout=TICK)
            for ref in done:
                index, task, _ = running.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:  # the worker died (or fn broke its promise): a system failure
                    log.debug("task %d failed", index, exc_info=True)
                    again_or_fail(index, task, _short(e))
                    continue
                on_result(task, result)
            if timeout:
                now = time.monotonic()
                for ref, (index, task, since) in list(running.items()):
                    if now - since > timeout:
                        ray.cancel(ref, force=True)
                        running.pop(ref)
                        again_or_fail(index, task, TaskTimeout(f"timed out after {timeout:g} s"))
            if on_tick is not None:
                on_tick(len(running), retried)
    finally:
        if started:
            ray.shutdown()
    return retried


@dataclass(frozen=True)
class ClusterOptions:
    """Where a stage's units of work run: a local or joined Ray cluster, or this process."""

    workers: int | None = option(None, min=1, max=1_000_000, metavar="N",
                                 help="CPUs of the local Ray started when --ray-address is not given (None: all of them)")
    ray_address: str | None = option(None, metavar="ADDR",
                                     help="join this Ray cluster ('auto' for the one `ray start` began here) "
                                     "instead of starting one")
    retries: int = option(2, min=0, max=100, metavar="N",
                          help="times a scene is tried again when its worker dies or it runs past --scene-timeout")
    scene_timeout: float = option(1800.0, above=0, max=7 * 86_400, metavar="SECONDS",
                                  help="a scene running longer is stopped, tried again (--retries), then recorded "
                                  "as failed")
    no_ray: bool = option(False, help="run every scene in this process, one after the other (debugging)")

    def __post_init__(self) -> None:
        check(self)

    def distributor(self) -> Callable[..., int]:
        """:func:`run_local`, or :func:`run_ray` with these options bound."""
        if self.no_ray:
            return partial(run_local, timeout=self.scene_timeout)
        return partial(run_ray, address=self.ray_address, workers=self.workers, retries=self.retries,
                       timeout=self.scene_timeout)  # fmt: skip
