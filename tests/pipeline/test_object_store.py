"""The pipeline on an object store (``s3://`` URIs), against a real S3 API on loopback (moto's server).

render, filter, inspect, export and ``pretrain run`` with every folder a URI;
a scene data root in the store; a two-node Ray cluster whose output exists
only in the store; a run killed in the middle of an upload; two runs into one
prefix. Between commands the local mirrors are deleted, so each command reads
what the store holds and nothing else.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tests.commands import PRETRAIN_TINY, pairgen, pretrain
from tests.rooms import scannet_room

RENDER = ["render", "--scenes", "synthetic", "--synthetic-preset", "small", "--synthetic-count", "2",
          "--views-per-scene", "24", "--resolution", "64"]  # fmt: skip
FILTER = ["filter", "--min-covis", "0.3", "--max-covis", "0.9", "--shard-size", "40"]


def _forget_mirrors(s3) -> None:
    """Delete every local mirror: what the next command reads comes from the store."""
    shutil.rmtree(s3.cache, ignore_errors=True)


def _read_from_store(s3, key: str):
    fs, _ = pafs.FileSystem.from_uri(s3.uri())
    with fs.open_input_file(f"{s3.name}/{key}") as f:
        return pq.read_table(f)


def test_render_filter_inspect_export_and_pretrain_on_s3(s3, tmp_path):
    out = s3.uri("run")
    ran = pairgen(*RENDER, "--no-ray", "--out", out)
    assert ran.code == 0, ran.err
    assert f"views: {out}/views" in ran.err  # the URI, not the mirror, in what the user reads
    views = [k for k in s3.keys("run/views/") if k.endswith(".parquet")]
    assert views == ["run/views/synthetic/apartment_0000.parquet", "run/views/synthetic/apartment_0001.parquet"]
    assert {"run/views.manifest.json", "run/README.md"} <= set(s3.keys("run"))
    assert not [k for k in s3.keys("run") if ".tmp" in k or k.endswith((".lease.json", "/"))]  # nothing else left
    assert _read_from_store(s3, views[0]).num_rows == 24

    _forget_mirrors(s3)
    ran = pairgen(*FILTER, "--no-ray", "--out", out)
    assert ran.code == 0, ran.err
    shards = [k for k in s3.keys("run/pairs/")]
    assert shards and all(k.endswith(".parquet") for k in shards)
    manifest = json.loads(s3.client().get_object(Bucket=s3.name, Key="run/pairs.manifest.json")["Body"].read())
    assert sum(s["pairs"] for s in manifest["shards"]) == sum(_read_from_store(s3, k).num_rows for k in shards)

    _forget_mirrors(s3)
    ran = pairgen("inspect", "--out", out, "--sheet", tmp_path / "sheet.png")
    assert ran.code == 0, ran.err
    assert f"{out}/pairs  (config" in ran.out and (tmp_path / "sheet.png").is_file()
    ran = pairgen("inspect", "--out", out, "--sheet", s3.uri("sheets/pairs.png"))  # the sheet into the store too
    assert ran.code == 0 and s3.keys("sheets/") == ["sheets/pairs.png"], ran.err

    _forget_mirrors(s3)
    dest = s3.uri("croco")
    ran = pairgen("export", "--format", "croco", dest, "--out", out)
    assert ran.code == 0, ran.err
    exported = s3.keys("croco/")
    assert any(k.endswith(".jpeg") or k.endswith(".jpg") for k in exported), exported[:5]

    _forget_mirrors(s3)
    ran = pretrain("run", "--shards", f"{out}/pairs", "--runs", tmp_path / "runs", *PRETRAIN_TINY)
    assert ran.code == 0, ran.err
    checkpoint = next((tmp_path / "runs").rglob("checkpoint-last.pt"))
    from pretrain.checkpoint import load_checkpoint

    assert load_checkpoint(checkpoint)["config"]["shards"] == f"{out}/pairs"  # by URI: resumable from any cache
    ran = pretrain("run", "--shards", f"{out}/pairs", "--runs", s3.uri("runs"), *PRETRAIN_TINY)
    assert ran.code == 2 and "takes a path on this machine, not a store's URI" in ran.err, ran.err  # written in place
    single = s3.keys("run/pairs/")[0]  # one shard, alone at the bucket's root
    s3.client().copy_object(Bucket=s3.name, Key="shard-00000.parquet", CopySource={"Bucket": s3.name, "Key": single})
    ran = pretrain("run", "--shards", s3.uri("shard-00000.parquet"), "--runs", tmp_path / "one", *PRETRAIN_TINY)
    assert ran.code == 0, ran.err

    _forget_mirrors(s3)
    ran = pretrain("probe", "--checkpoint", checkpoint, "--views", f"{out}/views", "--views-per-scene", "8",
                   "--head-steps", "20", "--cvc-pairs", "8", "--out", tmp_path / "probe")  # fmt: skip
    assert ran.code == 0, ran.err


def test_a_rerun_reads_no_bytes_it_does_not_need(s3):
    out = s3.uri("run")
    assert pairgen(*RENDER, "--no-ray", "--out", out).code == 0
    _forget_mirrors(s3)
    ran = pairgen(*RENDER, "--no-ray", "--out", out)
    assert ran.code == 0 and "0 scenes rendered, 2 already done" in ran.err, ran.err
    from manifests import store

    mirrored = list(s3.cache.rglob("apartment_*.parquet"))
    assert len(mirrored) == 2 and all(store.is_stub(p) for p in mirrored)  # checked by size and mtime, not fetched


def test_a_scene_data_root_in_the_store(s3, tmp_path):
    scan = tmp_path / "data" / "scannet" / "scans" / "scene0000_00" / "scene0000_00_vh_clean_2.ply"
    scan.parent.mkdir(parents=True)
    scannet_room(scan)
    s3.client().upload_file(str(scan), s3.name, "datasets/scannet/scans/scene0000_00/scene0000_00_vh_clean_2.ply")
    ran = pairgen("scenes", "--scenes", "scannet", "--data-root", s3.uri("datasets"), "--json")
    assert ran.code == 0, ran.err
    assert json.loads(ran.out)["mesh"] == s3.uri("datasets/scannet/scans/scene0000_00/scene0000_00_vh_clean_2.ply")
    ran = pairgen("render", "--scenes", "scannet", "--data-root", s3.uri("datasets"), "--out", s3.uri("run"),
                  "--no-ray", "--views-per-scene", "8", "--resolution", "48")  # fmt: skip
    assert ran.code == 0, ran.err
    assert "run/views/scannet/scene0000_00.parquet" in s3.keys("run/views/")


def test_two_runs_into_one_prefix(s3):
    record = {"holder": "x", "host": "node-b", "pid": 4242, "command": "pairgen render --out s3://elsewhere",
              "since": time.time(), "heartbeat": time.time()}  # fmt: skip
    s3.client().put_object(Bucket=s3.name, Key="run/_pairgen/views.lease.json", Body=json.dumps(record).encode())
    ran = pairgen(*RENDER, "--no-ray", "--out", s3.uri("run"))
    assert ran.code == 2, ran.err
    assert len(ran.errors) == 1
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["since"]))
    assert re.fullmatch(f"pairgen: error: {re.escape(s3.uri('run'))}/_pairgen/views.lease.json: in use by another "
                        f"run \\(PID 4242 on node-b, `pairgen render --out s3://elsewhere`, since {since}, last "
                        "heartbeat [0-9] s ago\\); wait for it to finish, or use another output prefix \\(a lease not "
                        "renewed for 120 s is taken over\\)", ran.errors[0]), ran.errors[0]  # fmt: skip
    assert not [k for k in s3.keys("run") if "views/" in k]


def _unfinished(s3) -> list[str]:
    return [u["Key"] for u in s3.client().list_multipart_uploads(Bucket=s3.name).get("Uploads", [])]


def test_a_run_killed_mid_upload_leaves_no_object_and_a_rerun_finishes(s3, tmp_path):
    """A views file big enough for a multipart upload (boto3's above 8 MiB); the run is killed (-9) while
    its parts go up."""
    out = s3.uri("run")
    argv = ["render", "--scenes", "synthetic", "--synthetic-preset", "small", "--synthetic-count", "1",
            "--views-per-scene", "220", "--resolution", "320", "--no-ray", "--out", out]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-m", "pairgen", *argv], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not _unfinished(s3):
            assert proc.poll() is None, f"finished before it was killed: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no multipart upload began"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    final = "run/views/synthetic/apartment_0000.parquet"
    assert final not in s3.keys("run")  # an unfinished upload is no object
    assert _unfinished(s3) == [final]

    ran = pairgen(*argv)  # the killed run's lease: its process on this host has ended, so it is taken over
    assert ran.code == 0, ran.err
    assert pq.read_table(io.BytesIO(s3.client().get_object(Bucket=s3.name, Key=final)["Body"].read())).num_rows > 0
    assert _unfinished(s3) == []  # the killed run's parts are cleared


def test_a_two_node_ray_cluster_writes_only_to_the_store(s3):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})  # started here: the workers get S3's env
    try:
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        out = s3.uri("run")
        ran = pairgen(*RENDER, "--synthetic-count", "3", "--ray-address", cluster.address, "--out", out)
        assert ran.code == 0, ran.err
        _forget_mirrors(s3)
        ran = pairgen(*FILTER, "--ray-address", cluster.address, "--out", out)
        assert ran.code == 0, ran.err
    finally:
        ray.shutdown()
        cluster.shutdown()
    _forget_mirrors(s3)  # what the cluster wrote, read back from the store alone
    assert len([k for k in s3.keys("run/views/") if k.endswith(".parquet")]) == 3
    ran = pairgen("inspect", "--out", out, "--json")
    assert ran.code == 0, ran.err
    stats = json.loads(ran.out)
    assert stats["totals"]["scenes"] == 3 and stats["totals"]["pairs"] > 0


def test_pretrain_loader_workers_mount_the_store_themselves(s3, tmp_path):
    """Referenced samples: a DataLoader worker (a forkserver process, not a fork) opens the views files they
    name; with --no-verify nothing fetched them before, so the worker reads them from the store itself."""
    out = s3.uri("run")
    assert pairgen(*RENDER, "--no-ray", "--out", out).code == 0
    assert pairgen(*FILTER, "--views", "3", "--shape", "star", "--no-ray", "--out", out).code == 0
    _forget_mirrors(s3)
    tiny = ["--model", "tiny", "--img-size", "48", "--batch-size", "4", "--workers", "1", "--steps", "2"]
    ran = pretrain("run", "--shards", f"{out}/star3", "--views", f"{out}/views", "--runs", tmp_path / "runs",
                   "--no-verify", *tiny)  # fmt: skip
    assert ran.code == 0, ran.err


@pytest.mark.parametrize("argv", [RENDER + ["--no-ray"], ["inspect"], FILTER + ["--no-ray"]], ids=["render", "inspect",
                                                                                                  "filter"])
def test_a_missing_bucket_is_one_message(s3, argv):
    ran = pairgen(*argv, "--out", "s3://no-such-bucket-here/run")
    assert ran.code == 1 and "Traceback" not in ran.err
    assert ran.errors == ["pairgen: error: s3://no-such-bucket-here/run: the bucket 'no-such-bucket-here' does not "
                          "exist (pairgen makes none: create it, or check the URI and the endpoint, "
                          "AWS_ENDPOINT_URL)"]  # fmt: skip


def test_a_views_object_deleted_in_the_store_is_rendered_again_at_once(s3):
    out = s3.uri("run")
    assert pairgen(*RENDER, "--no-ray", "--out", out).code == 0
    s3.client().delete_object(Bucket=s3.name, Key="run/views/synthetic/apartment_0001.parquet")
    ran = pairgen(*RENDER, "--no-ray", "--out", out)  # the same mirror, a moment later
    assert ran.code == 0 and "1 scenes rendered, 1 already done" in ran.err, ran.err
    assert "run/views/synthetic/apartment_0001.parquet" in s3.keys("run/views/")


def test_an_export_into_the_stored_output_is_refused(s3):
    out = s3.uri("run")
    assert pairgen(*RENDER, "--no-ray", "--out", out).code == 0
    assert pairgen(*FILTER, "--no-ray", "--out", out).code == 0
    ran = pairgen("export", "--format", "croco", s3.uri("run/croco"), "--out", out)
    assert ran.code == 1 and len(ran.errors) == 1 and s3.uri("run/croco") in ran.errors[0], ran.err
    assert not s3.keys("run/croco")


@pytest.mark.parametrize("out, why", [("s3://", "names no bucket"), ("ftp://host/run", "not ftp://")])
def test_a_uri_pairgen_cannot_read_is_a_usage_error(out, why, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ran = pairgen("inspect", "--out", out)
    assert ran.code == 2 and why in ran.err and "Traceback" not in ran.err
    assert not list(tmp_path.iterdir())  # nothing made as a local folder of that name
