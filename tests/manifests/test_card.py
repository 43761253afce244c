"""manifests/card.py: the dataset card on a full disk (raised, as by every writer) and where it cannot be written."""

from __future__ import annotations

import shutil

import pytest

from manifests.card import write_card
from manifests.io import DiskFull
from tests.conftest import copy_stage


def test_a_full_disk_is_raised_naming_the_card(small_pairs, small_disk):
    out = small_disk.path / "out"
    for folder in ("views", "pairs"):
        copy_stage(small_pairs, out, folder)
    small_disk.leave(0)
    with pytest.raises(DiskFull, match=rf"^{out / 'README.md'}: no space left on the device"):
        write_card(out)
    assert not (out / "README.md").exists()
    small_disk.free_up()
    assert write_card(out) == out / "README.md"


def test_another_write_error_is_a_warning(small_pairs, tmp_path, caplog):
    out = tmp_path / "out"
    shutil.copytree(small_pairs, out)
    (out / "README.md").unlink()
    (out / "README.md").mkdir()  # cannot be replaced: logged, the outputs are complete without it
    assert write_card(out) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"dataset card not written: {out / 'README.md'}: is a folder, where this file goes; move it away and run again"]
