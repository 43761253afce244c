"""The stage lifecycle (pairgen/stage.py) and the typed manifests (manifests/manifest.py), on a toy stage.

The toy stage writes one text file a unit; a unit whose name starts with
``bad`` fails. It is all a new stage needs: a config, a result dataclass, the
unit of work and a Stage subclass.
"""

from __future__ import annotations

import errno
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from manifests.io import DiskFull, output_error, write_json_atomic
from manifests.manifest import ManifestError, PairsManifest, StageManifest, ViewsManifest
from manifests.options import check, option
from pairgen.distribute import run_local
from pairgen.stage import ConfigMismatch, Stage, StageSummary, UnitResult, report, run_unit


@dataclass(frozen=True)
class EchoConfig:
    repeat: int = option(1, min=1, help="times each name is written")

    def __post_init__(self) -> None:
        check(self)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Echoed(UnitResult):
    file: str | None = None


@dataclass
class EchoManifest(StageManifest):
    KIND = "echo"


def echo(name: str, folder: Path, config: EchoConfig) -> Echoed:
    def body(result: Echoed) -> None:
        if name.startswith("bad"):
            raise ValueError(f"{name}: refuses to be echoed")  # unexpected: reported with its type
        if name.startswith("full"):
            raise output_error(folder / f"{name}.txt", OSError(errno.ENOSPC, "No space left on device"))
        result.file = f"{name}.txt"
        (folder / result.file).write_text(name * config.repeat)
        result.status = "ok"

    return run_unit(Echoed(), body)


class EchoStage(Stage):
    name, folder_name, what, progress_desc = "echo", "echo", "echoes", "echoing"
    manifest_cls, result_cls = EchoManifest, Echoed
    work = staticmethod(echo)

    def __init__(self, names, out_dir, config, **kw):
        super().__init__(out_dir, config, distributor=run_local, **kw)
        self.names = names

    def key(self, name):
        return name

    def common(self):
        return {"folder": self.folder, "config": self.config}

    def plan(self):
        todo, decided = [], []
        for name in self.names:
            if self.manifest.scenes.get(name, {}).get("status") == "ok" and (self.folder / f"{name}.txt").is_file():
                decided.append((name, Echoed(status="skipped", file=f"{name}.txt")))
            else:
                todo.append(name)
        return todo, decided

    def line(self, summary: StageSummary) -> str:
        return f"{summary.ok} echoed, {summary.skipped} already done, {summary.failed} failed"


def run(tmp_path, names, config=EchoConfig(), **kw) -> tuple[StageSummary, str, int]:
    stage = EchoStage(names, tmp_path, config, **kw)
    summary = stage.run()
    out = io.StringIO()
    code = report(stage, summary, out)
    return summary, out.getvalue(), code


def test_units_run_fail_alone_and_are_recorded(tmp_path):
    summary, out, code = run(tmp_path, ["a", "bad1", "b"])
    assert (summary.ok, summary.skipped, summary.failed) == (2, 0, 1) and code == 1
    assert "FAILED bad1: ValueError: bad1: refuses to be echoed" in out and "2 echoed, 0 already done, 1 failed" in out
    manifest = EchoManifest.read(tmp_path / "echo")
    assert manifest.scenes["a"]["status"] == "ok" and manifest.scenes["a"]["file"] == "a.txt"
    assert manifest.scenes["bad1"] == {"status": "failed", "reason": "ValueError: bad1: refuses to be echoed",
                                       "seconds": manifest.scenes["bad1"]["seconds"]}  # fmt: skip
    assert manifest.body["last_run"]["failed"] == 1


def test_rerun_skips_what_is_done_and_retries_what_failed(tmp_path):
    run(tmp_path, ["a", "bad1"])
    (tmp_path / "echo" / "a.txt").write_text("kept")
    summary, out, code = run(tmp_path, ["a", "bad1", "c"])
    assert (summary.ok, summary.skipped, summary.failed) == (1, 1, 1)
    assert (tmp_path / "echo" / "a.txt").read_text() == "kept"  # not redone


def test_complete_exactly_when_no_unit_failed(tmp_path):
    run(tmp_path, ["a", "bad1"])
    assert EchoManifest.read(tmp_path / "echo").body["complete"] is False
    run(tmp_path, ["a", "b"])  # the failed one is no longer asked for
    assert EchoManifest.read(tmp_path / "echo").body["complete"] is True


def test_a_full_disk_stops_the_run_with_its_message(tmp_path):
    with pytest.raises(DiskFull, match=r"full1\.txt: no space left on the device \(.* free on "):
        run(tmp_path, ["a", "full1", "b"])
    manifest = EchoManifest.read(tmp_path / "echo")
    assert manifest.body["complete"] is False and "b" not in manifest.scenes  # stopped at the full disk
    assert "disk_full" not in manifest.scenes["full1"] and manifest.scenes["full1"]["status"] == "failed"
    summary, _, code = run(tmp_path, ["a", "b"])  # with space: finishes, "a" kept
    assert code == 0 and (summary.ok, summary.skipped) == (1, 1)


def test_another_config_refuses_then_overwrite_replaces(tmp_path):
    run(tmp_path, ["a"])
    with pytest.raises(ConfigMismatch, match=r"repeat: 1 -> 2.*--overwrite"):
        run(tmp_path, ["b"], EchoConfig(repeat=2))
    summary, _, code = run(tmp_path, ["b"], EchoConfig(repeat=2), overwrite=True)
    assert code == 0 and not (tmp_path / "echo" / "a.txt").exists()  # the old outputs went
    assert (tmp_path / "echo" / "b.txt").read_text() == "bb"
    assert EchoManifest.read(tmp_path / "echo").config == {"repeat": 2}


def test_overwrite_never_deletes_outside_the_folder(tmp_path):
    run(tmp_path, ["a"])
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    path = tmp_path / "echo.manifest.json"
    doc = json.loads(path.read_text())
    doc["scenes"]["a"]["file"] = "../victim.txt"
    path.write_text(json.dumps(doc))
    run(tmp_path, ["a"], EchoConfig(repeat=2), overwrite=True)
    assert victim.read_text() == "precious"


# -- the typed manifests ------------------------------------------------------------------


def _doc(**changes) -> dict:
    return {"format": "pairgen-views-manifest/1", "pairgen_version": "0", "config_hash": "h", "config": {},
            "scenes": {}, **changes}  # fmt: skip


@pytest.mark.parametrize(
    "doc, phrase",
    [
        (_doc(format="pairgen-pairs-manifest/1"), "is not a views manifest"),
        (_doc(format="pairgen-views-manifest/9"), "newer than this pairgen reads"),
        (_doc(format=None), "is not a views manifest"),
        (_doc(config_hash=3), "'config_hash' is missing or not a str"),
        (_doc(scenes=[]), "'scenes' is missing or not a dict"),
        (_doc(scenes={"a": 1}), "entry 'a' is not an object"),
    ],
)
def test_manifest_read_refuses_with_the_file(tmp_path, doc, phrase):
    write_json_atomic(tmp_path / "manifest.json", doc)
    with pytest.raises(ManifestError, match=phrase) as info:
        ViewsManifest.read(tmp_path)
    assert str(tmp_path / "manifest.json") in str(info.value)


@pytest.mark.parametrize("name", ["../x.parquet", "/etc/passwd", "sub/../../x.parquet"])
def test_manifest_files_stay_inside_the_folder(tmp_path, name):
    manifest = PairsManifest(tmp_path, "h", {}, body={"shards": [{"file": name}]})
    with pytest.raises(ManifestError, match="points outside"):
        list(manifest.shard_paths())


def test_manifest_round_trip_and_checksums(tmp_path):
    shard = tmp_path / "shard-00000.parquet"
    shard.write_bytes(b"0123")
    from manifests.manifest import sha256_file

    PairsManifest(tmp_path, "h", {"a": 1}, {"k": {"status": "ok"}},
                  {"complete": True, "shards": [{"file": shard.name, "sha256": sha256_file(shard)}]}).write()  # fmt: skip
    manifest = PairsManifest.read(tmp_path)
    assert manifest.complete and manifest.config == {"a": 1} and manifest.scenes == {"k": {"status": "ok"}}
    (entry, path), = manifest.shard_paths()
    assert manifest.verify_shard(entry, path) is None
    shard.write_bytes(b"0124")
    assert "SHA-256 differs" in manifest.verify_shard(entry, path)
    shard.unlink()
    assert "missing" in manifest.verify_shard(entry, path)
