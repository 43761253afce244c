"""manifests/io.py: every writer's full disk is one message naming the file and the space left, nothing half-written.

The tests with a real full disk mount a tmpfs of their own (``small_disk``,
tests/conftest.py) and skip where that is not allowed; the ones that raise
the error by hand run everywhere.
"""

from __future__ import annotations

import errno
import os

import numpy as np
import pyarrow as pa
import pytest

from manifests.io import DiskFull, OutputError, atomic_path, output_error, write_json_atomic, write_parquet_atomic


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_or_quota_names_the_file_and_the_space_left(tmp_path, code):
    target = tmp_path / "out" / "shard-00000.parquet"
    with pytest.raises(DiskFull) as caught, atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise OSError(code, os.strerror(code))
    message = str(caught.value)
    assert message.startswith(f"{target}: no space left on the device (")
    assert " free on " in message and "run the command again" in message
    assert os.listdir(target.parent) == []  # neither the final name nor the temporary


def test_the_cause_chain_is_followed(tmp_path):
    """pyarrow and PIL raise OSError(28) themselves; a wrapper may hide it in its cause."""
    with pytest.raises(DiskFull), atomic_path(tmp_path / "x.png") as tmp:
        tmp.write_bytes(b"x")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise ValueError("encoder failed") from e


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(ZeroDivisionError), atomic_path(tmp_path / "x.json"):
        raise ZeroDivisionError
    with pytest.raises(PermissionError), atomic_path(tmp_path / "y.json"):
        raise PermissionError(errno.EACCES, "denied")
    assert os.listdir(tmp_path) == []


def test_an_unwritable_folder_is_not_a_full_disk(tmp_path):
    error = output_error(tmp_path / "a" / "b.json", OSError(errno.EROFS, "Read-only file system"))
    assert type(error) is OutputError and str(error) == f"{tmp_path / 'a'}: cannot write here (Read-only file system)"


def _fill_and_expect(small_disk, write, name):
    small_disk.leave(16 << 10)
    target = small_disk.path / "out" / name
    with pytest.raises(DiskFull, match=rf"^{target}: no space left on the device \(.* free on {small_disk.path} now\)"):
        write(target)
    assert not target.exists() and not any(p.name.startswith(".tmp-") for p in target.parent.iterdir())
    small_disk.free_up()
    write(target)  # with space, the same write finishes
    assert target.is_file()


def test_pyarrow_on_a_real_full_disk(small_disk):
    table = pa.table({"image": [os.urandom(256 << 10) for _ in range(4)]})
    _fill_and_expect(small_disk, lambda p: write_parquet_atomic(p, table), "shard-00000.parquet")


def test_json_on_a_real_full_disk(small_disk):
    doc = {"scenes": {f"s{i}": "x" * 100 for i in range(2000)}}
    _fill_and_expect(small_disk, lambda p: write_json_atomic(p, doc), "pairs.manifest.json")


def test_torch_save_on_a_real_full_disk(small_disk):
    """torch.save loses the errno (a RuntimeError from its zip writer): the disk is found full by its free space."""
    torch = pytest.importorskip("torch")
    weights = {"w": torch.from_numpy(np.ones(1 << 18, np.float32))}

    def save(path):
        with atomic_path(path) as tmp:
            torch.save(weights, tmp)

    _fill_and_expect(small_disk, save, "checkpoint-last.pt")


def test_a_folder_under_the_final_name_is_named(tmp_path):
    (tmp_path / "pairs.manifest.json").mkdir()
    with pytest.raises(OutputError, match=r"pairs\.manifest\.json: is a folder, where this file goes"):
        write_json_atomic(tmp_path / "pairs.manifest.json", {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.manifest.json"]  # no temporary left
