"""A full disk (issue 23): every writer ends with one message naming the file and the space left, exit 1.

Each case fills a tmpfs of its own (``small_disk``, tests/conftest.py; the
tests skip where mounting one is not allowed) until a few KiB are left, runs
one command that writes there, and checks what docs/design.md promises: exit
status 1, no traceback, one error message naming a file on that disk and
the free space, nothing under a final name that is not whole, no temporary
left behind; then, with the space freed, the same command finishes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.commands import assert_no_temporaries, copy_views, pairgen, parquet_is_whole, pretrain
from tests.conftest import FILTER_SMALL, RENDER_SMALL, copy_stage

LEFT = 24 << 10  # bytes left free: room for a lock and a manifest or two, not for a views file or a shard


def assert_full_disk_message(ran, disk) -> None:
    assert "Traceback" not in ran.err, ran.err
    assert ran.code == 1, (ran.code, ran.err)
    assert len(ran.errors) == 1, ran.err
    message = ran.errors[0]
    assert f": error: {disk.path}/" in message, message  # the file being written, on that disk
    assert "no space left on the device (" in message and f" free on {disk.path} now)" in message, message


def assert_whole(folder: Path) -> None:
    """Every Parquet file under ``folder`` is whole and no temporary is left."""
    assert_no_temporaries(folder)
    for path in folder.rglob("*.parquet"):
        assert parquet_is_whole(path), path


def test_render(small_disk):
    out = small_disk.path / "out"
    small_disk.leave(LEFT)
    ran = pairgen(*RENDER_SMALL[:6], "1", *RENDER_SMALL[7:], "--out", out)
    assert_full_disk_message(ran, small_disk)
    assert not list((out / "views").rglob("*.parquet")) and "views" in ran.errors[0]
    assert_whole(out)
    small_disk.free_up()
    assert pairgen(*RENDER_SMALL[:6], "1", *RENDER_SMALL[7:], "--out", out).code == 0


def test_filter(small_pairs, small_disk):
    out = copy_views(small_pairs, small_disk.path / "out")
    small_disk.leave(LEFT)
    ran = pairgen(*FILTER_SMALL, "--out", out)
    assert_full_disk_message(ran, small_disk)
    assert_whole(out)
    small_disk.free_up()
    assert pairgen(*FILTER_SMALL, "--out", out).code == 0
    assert pairgen("inspect", "--out", out, "--sheet", small_disk.path / "sheet.png").code == 0


@pytest.mark.parametrize("fmt", ["croco", "dust3r"])
def test_export(fmt, small_pairs, small_samples, small_disk):
    source = small_pairs if fmt == "croco" else small_samples
    dest = small_disk.path / "dest"
    small_disk.leave(LEFT)
    ran = pairgen("export", "--format", fmt, dest, "--out", source)
    assert_full_disk_message(ran, small_disk)
    assert_no_temporaries(dest)
    small_disk.free_up()
    assert pairgen("export", "--format", fmt, dest, "--out", source).code == 0


def test_inspect_sheet(small_pairs, small_disk):
    sheet = small_disk.path / "sheet.png"
    small_disk.leave(8 << 10)
    ran = pairgen("inspect", "--out", small_pairs, "--sheet", sheet)
    # inspect prints its statistics, then its problems (on stderr), the sheet last: exit 1, no traceback
    assert ran.code == 1 and "Traceback" not in ran.err
    assert f"PROBLEM contact sheet not drawn: {sheet}: no space left on the device (" in ran.err
    assert "contact sheet: not drawn (the last problem below says why)" in ran.out
    assert not sheet.exists()


TINY = ["--model", "tiny", "--img-size", "48", "--batch-size", "4", "--workers", "0", "--steps", "2",
        "--image-every", "0", "--no-verify", "--name", "t"]  # fmt: skip


def test_pretrain_checkpoint(small_pairs, small_disk):
    runs = small_disk.path / "runs"
    small_disk.leave(LEFT)
    ran = pretrain("run", "--shards", small_pairs / "pairs", *TINY, "--runs", runs)
    assert_full_disk_message(ran, small_disk)
    assert not (runs / "t" / "checkpoint-last.pt").exists()
    assert_no_temporaries(runs)
    small_disk.free_up()
    assert pretrain("run", "--shards", small_pairs / "pairs", *TINY, "--runs", runs).code == 0
    assert (runs / "t" / "checkpoint-last.pt").is_file()


def test_probe_outputs(small_pairs, small_disk, tmp_path):
    runs = tmp_path / "runs"
    assert pretrain("run", "--shards", small_pairs / "pairs", *TINY, "--runs", runs).code == 0
    probe = ["probe", "--checkpoint", runs / "t" / "checkpoint-last.pt", "--views", small_pairs / "views",
             "--views-per-scene", "8", "--head-steps", "2", "--cvc-pairs", "4"]  # fmt: skip
    out = small_disk.path / "probe"
    small_disk.leave(4 << 10)
    ran = pretrain(*probe, "--out", out)
    assert_full_disk_message(ran, small_disk)
    assert_no_temporaries(out)
    small_disk.free_up()
    assert pretrain(*probe, "--out", out).code == 0


def test_the_views_of_a_copied_folder_are_not_touched(small_pairs, small_disk):
    """What a failed filter leaves: the views it read, as they were (a full disk never damages inputs)."""
    out = small_disk.path / "out"
    copy_stage(small_pairs, out, "views")
    before = {p: p.read_bytes() for p in (out / "views").rglob("*.parquet")}
    small_disk.leave(LEFT)
    assert pairgen(*FILTER_SMALL, "--out", out).code == 1
    assert {p: p.read_bytes() for p in (out / "views").rglob("*.parquet")} == before
