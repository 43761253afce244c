"""Distributors: results in completion order, worker deaths retried, then recorded."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pairgen.distribute import run_local, run_ray


def _crashy(task: str, marker_dir: str) -> dict:
    """Kills its own process the first time for 'flaky', every time for 'doomed'."""
    marker = Path(marker_dir) / f"{task}.attempts"
    attempts = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempts))
    if task == "doomed" or (task == "flaky" and attempts == 1):
        os._exit(1)  # what a segfault or the OOM killer looks like to Ray
    if task == "raises":
        raise RuntimeError("fn broke its promise")
    return {"status": "ok", "task": task, "attempts": attempts}


def _sleepy(task: float) -> dict:
    import time

    time.sleep(task)
    return {"status": "ok", "task": task}


def _on_error(task, error) -> dict:
    return {"status": "failed", "task": task, "reason": f"{type(error).__name__}"}


def test_local_runs_all_and_turns_exceptions_into_records(tmp_path):
    results = {}
    run_local(_crashy, ["fine", "raises"], lambda t, r: results.setdefault(t, r), _on_error,
              {"marker_dir": str(tmp_path)})  # fmt: skip
    assert results["fine"]["status"] == "ok"
    assert results["raises"] == {"status": "failed", "task": "raises", "reason": "RuntimeError"}


def test_ray_retries_dead_workers_then_records_the_scene(tmp_path):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    results = {}
    run_ray(_crashy, ["fine", "flaky", "doomed"], lambda t, r: results.setdefault(t, r), _on_error,
            {"marker_dir": str(tmp_path)}, workers=2, retries=1)  # fmt: skip
    assert results["fine"] == {"status": "ok", "task": "fine", "attempts": 1}
    assert results["flaky"] == {"status": "ok", "task": "flaky", "attempts": 2}  # died once, retried
    assert results["doomed"]["status"] == "failed"
    assert int((tmp_path / "doomed.attempts").read_text()) == 2  # tried 1 + 1 retry, then given up


def test_local_time_limit_fails_the_task_and_goes_on():
    results = {}
    run_local(_sleepy, [5.0, 0.0], lambda t, r: results.setdefault(t, r), _on_error, timeout=0.5)
    assert results[5.0] == {"status": "failed", "task": 5.0, "reason": "TaskTimeout"}
    assert results[0.0]["status"] == "ok"


def test_ray_time_limit_cancels_retries_then_records_and_ticks(tmp_path):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    results, ticks = {}, []
    retried = run_ray(_sleepy, [60.0, 0.0], lambda t, r: results.setdefault(t, r),
                      lambda t, e: {"status": "failed", "reason": str(e)}, workers=2, retries=1, timeout=2.0,
                      on_tick=lambda running, retried: ticks.append((running, retried)))  # fmt: skip
    assert results[60.0] == {"status": "failed", "reason": "timed out after 2 s"} and results[0.0]["status"] == "ok"
    assert retried == 1  # the slow one: cancelled, tried once more, cancelled again
    assert ticks and ticks[-1][1] == 1


@pytest.mark.parametrize("workers", [0, -1])
def test_bad_worker_count(workers, capsys):
    from pairgen.cli import main

    assert main(["render", "--workers", str(workers), "--views-per-scene", "1", "--out", "/nonexistent/x"]) == 2
    assert "argument --workers: must be at least 1" in capsys.readouterr().err
