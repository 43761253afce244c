"""Running ``pairgen`` and ``pretrain`` in process as a user would, and what the tests check of a run.

Shared by the tests that drive the command lines (bad inputs, fuzzing, views checks).
"""

from __future__ import annotations

import io
import traceback
import warnings
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import copy_stage

PRETRAIN_TINY = ["--model", "tiny", "--img-size", "48", "--batch-size", "4", "--workers", "0", "--steps", "1"]


@dataclass
class Ran:
    code: int | None
    out: str
    err: str

    @property
    def errors(self) -> list[str]:
        """The lines of stderr that are error messages."""
        return [line for line in self.err.splitlines() if ": error:" in line]


def run(main: Callable[[list[str]], int], argv: list[str]) -> Ran:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a real process shows these on stderr (all but the hidden kinds)
        for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", hidden)
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
        except BaseException:  # noqa: BLE001 -- what a real process would print before dying
            traceback.print_exc()
            code = None
    shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught)
    return Ran(code, out.getvalue(), shown + err.getvalue())


def pairgen(*argv: str | Path) -> Ran:
    from pairgen.cli import main

    return run(main, [str(a) for a in argv])


def pretrain(*argv: str | Path) -> Ran:
    from pretrain.cli import main

    return run(main, [str(a) for a in argv])


def assert_one_message(ran: Ran, *phrases: str, one_line: bool = True, code: int = 1) -> None:
    """Exit status ``code``, no traceback, one error message holding every phrase; alone on stderr, on one line."""
    assert "Traceback" not in ran.err, ran.err
    assert ran.code == code, (ran.code, ran.err)
    assert len(ran.errors) == 1, ran.err
    message = ran.err[ran.err.index(ran.errors[0]):]
    for phrase in phrases:
        assert phrase in message, (phrase, ran.err)
    if one_line:
        assert [line for line in ran.err.splitlines() if line.strip()] == ran.errors, ran.err


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def assert_no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob(".tmp-*")], f"temporary files left in {folder}"


def parquet_is_whole(path: Path) -> bool:
    try:
        pq.read_table(path)
    except (OSError, pa.ArrowException):
        return False
    return True


def copy_views(small_pairs: Path, dest: Path) -> Path:
    copy_stage(small_pairs, dest, "views")
    return dest


def rewrite_image(shard: Path) -> None:
    """The first row's view-1 JPEG altered by a tool that reads and rewrites the shard, keeping its schema metadata."""
    table = pq.read_table(shard)
    images = table.column("image1").to_pylist()
    data = bytearray(images[0]["bytes"])
    data[len(data) // 2] ^= 0xFF
    images[0] = {**images[0], "bytes": bytes(data)}
    column = pa.array(images, table.schema.field("image1").type)
    pq.write_table(table.set_column(table.schema.get_field_index("image1"), "image1", column), shard)
