"""kill -9 at a random moment, then the same command again: it finishes, and nothing is lost or doubled.

Each test runs the real command in a subprocess, kills it with SIGKILL after a
random delay, checks that every file under a final name is readable right
then, runs the same command again, and compares the result with an
uninterrupted run's.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import copy_stage

ROOT = Path(__file__).resolve().parents[2]
RENDER = ["-m", "pairgen", "render", "--scenes", "synthetic", "--synthetic-preset", "small", "--synthetic-count", "3",
          "--views-per-scene", "24", "--resolution", "64", "--no-ray"]  # fmt: skip
FILTER = ["-m", "pairgen", "filter", "--min-covis", "0.3", "--max-covis", "0.9", "--shard-size", "40", "--no-ray"]


def run(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def kill_midway(args: list[str], low: float, high: float) -> float:
    """Start the command, SIGKILL it after a random delay in [low, high] s; return the delay."""
    delay = random.uniform(low, high)
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return delay


def final_files_are_readable(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.name.startswith(".tmp-") or not path.is_file():
            continue
        if path.suffix == ".parquet":
            pq.read_table(path)  # raises if truncated
        elif path.suffix == ".json":
            json.loads(path.read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref")
    assert run([*RENDER, "--out", str(out)]).returncode == 0
    assert run([*FILTER, "--out", str(out)]).returncode == 0
    return out


def test_render_killed_then_rerun(reference, tmp_path):
    delay = kill_midway([*RENDER, "--out", str(tmp_path)], 1.0, 4.0)
    final_files_are_readable(tmp_path)
    again = run([*RENDER, "--out", str(tmp_path)])
    assert again.returncode == 0, f"killed after {delay:.2f} s: {again.stderr[-1500:]}"
    assert not list(tmp_path.rglob(".tmp-*"))
    for f in sorted((reference / "views").rglob("*.parquet")):
        mine = tmp_path / f.relative_to(reference)
        assert pq.read_table(mine).equals(pq.read_table(f)), f"{mine.name} differs (killed after {delay:.2f} s)"
    manifest = json.loads((tmp_path / "views.manifest.json").read_text())
    assert manifest["totals"] == json.loads((reference / "views.manifest.json").read_text())["totals"]


def test_filter_killed_then_rerun(reference, tmp_path):
    import shutil

    copy_stage(reference, tmp_path, "views")
    delay = kill_midway([*FILTER, "--out", str(tmp_path)], 0.8, 2.5)
    final_files_are_readable(tmp_path)
    again = run([*FILTER, "--out", str(tmp_path)])
    assert again.returncode == 0, f"killed after {delay:.2f} s: {again.stderr[-1500:]}"
    mine = json.loads((tmp_path / "pairs.manifest.json").read_text())
    ref = json.loads((reference / "pairs.manifest.json").read_text())
    assert mine["shards"] == ref["shards"]  # same pairs, same bytes: none lost, none doubled
    ids = [i for s in mine["shards"] for i in pq.read_table(tmp_path / "pairs" / s["file"]).column("pair_id").to_pylist()]
    assert len(ids) == len(set(ids)) == ref["totals"]["pairs"]


def test_pretrain_killed_then_rerun_resumes(reference, tmp_path):
    args = ["-m", "pretrain.cli", "run", "--shards", str(reference / "pairs"), "--model", "tiny", "--img-size", "48",
            "--batch-size", "8", "--workers", "0", "--steps", "60", "--ckpt-every", "5", "--log-every", "1",
            "--image-every", "0", "--runs", str(tmp_path), "--name", "crash"]  # fmt: skip
    run_dir = tmp_path / "crash"
    delay = random.uniform(0.0, 2.0)
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run_dir / "checkpoint-last.pt").exists() and time.time() < deadline:
        time.sleep(0.1)  # wait for a first checkpoint, then kill a random moment later
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    import torch

    ckpt = torch.load(run_dir / "checkpoint-last.pt", weights_only=True)  # complete, whatever the moment
    killed_at = ckpt["step"]
    assert 0 < killed_at < 60, f"the run was not interrupted (killed {delay:.2f} s after its first checkpoint)"
    again = run(args)
    assert again.returncode == 0, again.stderr[-1500:]
    assert "resuming from" in again.stderr
    steps = [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert steps[-1] == 60 and set(range(1, 61)) <= set(steps)  # every step logged; those after the checkpoint twice
    assert torch.load(run_dir / "checkpoint-last.pt", weights_only=True)["step"] == 60
