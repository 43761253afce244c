"""One run per output folder (manifests/lock.py) and temporaries named per run (manifests/io.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manifests.io import atomic_path, remove_stale_temporaries
from manifests.lock import FolderBusy, folder_lock
from pairgen.cli import main
from tests.conftest import RENDER_SMALL

ROOT = Path(__file__).resolve().parents[2]
HOLD = "import sys, time; from manifests.lock import folder_lock; from manifests.layout import state_dir\n" \
       "with folder_lock(sys.argv[1], 'the holder', at=state_dir(sys.argv[1])):\n" \
       "    print('held', flush=True); time.sleep(60)"  # fmt: skip  (as a stage holds its data folder)


def _holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_into_a_held_folder_is_refused_naming_the_holder(tmp_path, capsys):
    proc = _holder(tmp_path / "views")
    try:
        code = main([*RENDER_SMALL, "--out", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 2 and f"PID {proc.pid}" in err and "`the holder`" in err and "in use by another run" in err
        assert [line for line in err.splitlines() if line.strip()] == [line for line in err.splitlines() if "error" in line]
        assert not (tmp_path / "views.manifest.json").exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path, capsys):
    proc = _holder(tmp_path / "views")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert main([*RENDER_SMALL, "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "_pairgen" / "views.lock").exists()  # gone with the run that held it
    assert sorted(p.name for p in (tmp_path / "views").rglob("*")) == ["apartment_0000.parquet", "apartment_0001.parquet",
                                                                       "apartment_0002.parquet", "synthetic"]


def test_the_python_api_refuses_too(tmp_path):
    with folder_lock(tmp_path / "f", "first"):
        proc = subprocess.run([sys.executable, "-c", "import sys; from manifests.lock import folder_lock\n"
                               "with folder_lock(sys.argv[1]): pass", str(tmp_path / "f")],
                              cwd=ROOT, capture_output=True, text=True)  # fmt: skip
        assert proc.returncode != 0 and "FolderBusy" in proc.stderr and "`first`" in proc.stderr
    with folder_lock(tmp_path / "f"):  # released: taken again
        pass
    assert not (tmp_path / "f").exists()  # created by the lock, nothing written: no trace


def test_a_refused_run_leaves_no_folder_behind(tmp_path):
    with pytest.raises(FolderBusy):
        with folder_lock(tmp_path / "a"):
            with folder_lock(tmp_path / "a"):  # the same process, a second handle: refused as well
                pass
    assert not (tmp_path / "a").exists()


def test_only_temporaries_of_dead_processes_are_removed(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        host = os.uname().nodename.replace("-", "_")
        mine_live = tmp_path / f".tmp-{host}-{live.pid}-shard-00000.parquet.abc"
        mine_dead = tmp_path / f".tmp-{host}-{dead.pid}-shard-00001.parquet.abc"
        old_style = tmp_path / ".tmp-shard-00002.parquet.abc"  # an older pairgen's: no owner to wait for
        for p in (mine_live, mine_dead, old_style):
            p.write_bytes(b"partial")
        with atomic_path(tmp_path / "ours.json") as ours:
            ours.write_text("{}")
            assert remove_stale_temporaries(tmp_path) == 2
            assert ours.exists() and mine_live.exists() and not mine_dead.exists() and not old_style.exists()
        assert (tmp_path / "ours.json").read_text() == "{}"
    finally:
        live.kill()
        live.wait()


def test_temporaries_name_their_run(tmp_path):
    with atomic_path(tmp_path / "x.json") as tmp:
        assert tmp.name.startswith(f".tmp-{os.uname().nodename.replace('-', '_')}-{os.getpid()}-x.json.")
        tmp.write_text("1")
    time.sleep(0)  # nothing left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_temporaries_bound_for_a_data_folder_stay_out_of_it(tmp_path):
    from manifests.layout import temporaries_dir

    data, state = tmp_path / "pairs", temporaries_dir(tmp_path / "pairs")
    with atomic_path(data / "shard-00000.parquet", state) as tmp:
        assert tmp.parent == state and data.is_dir() and list(data.iterdir()) == []
        tmp.write_bytes(b"PAR1")
    assert [p.name for p in data.iterdir()] == ["shard-00000.parquet"] and list(state.iterdir()) == []
    with pytest.raises(RuntimeError):  # a write that fails leaves nothing, in either folder
        with atomic_path(data / "shard-00001.parquet", state) as tmp:
            tmp.write_bytes(b"PA")
            raise RuntimeError("interrupted")
    assert [p.name for p in data.iterdir()] == ["shard-00000.parquet"] and list(state.iterdir()) == []
