"""manifests.store: the local mirror of a store's prefix, against a real S3 API on loopback (moto's server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pyarrow as pa
import pytest

from manifests import store
from manifests.io import read_json, write_json_atomic, write_parquet_atomic
from manifests.lock import FolderBusy, folder_lock
from manifests.store import StoreError


def test_uris_and_paths():
    assert store.is_uri("s3://bucket/run") and store.is_uri("gs://b/p") and not store.is_uri("data/pairgen")
    assert not store.is_uri("http://example.com/x") and not store.is_uri(None)
    assert store.location("s3://bucket/run/") == "s3://bucket/run"
    assert str(store.location("data/pairgen")) == "data/pairgen"


def _put(s3, key: str, body: bytes) -> None:
    s3.client().put_object(Bucket=s3.name, Key=key, Body=body)


def test_a_mount_lists_without_bytes_and_fetches_on_read(s3):
    _put(s3, "run/views.manifest.json", b'{"a": 1}')
    _put(s3, "run/views/synthetic/x.parquet", b"P" * 10_000)
    mirror = store.mount(s3.uri("run"))
    stub = mirror / "views" / "synthetic" / "x.parquet"
    assert stub.stat().st_size == 10_000 and store.is_stub(stub)  # listed: size and mtime, no bytes
    assert sorted(p.name for p in mirror.rglob("*.parquet")) == ["x.parquet"]
    assert store.local(stub).read_bytes() == b"P" * 10_000 and not store.is_stub(stub)
    assert read_json(mirror / "views.manifest.json") == {"a": 1}  # readers fetch through local()
    assert store.mount(s3.uri("run/views")) == mirror / "views"  # a URI inside a mount: its subfolder


def test_writes_reach_the_store_before_the_mirror_and_listing_again_keeps_them(s3):
    mirror = store.mount(s3.uri("out"))
    write_json_atomic(mirror / "pairs.manifest.json", {"x": 2})
    table = pa.table({"a": list(range(100))})
    write_parquet_atomic(mirror / "pairs" / "shard-00000.parquet", table, tmp_dir=mirror / "_pairgen" / "pairs.tmp")
    assert s3.keys("out") == ["out/pairs.manifest.json", "out/pairs/shard-00000.parquet"]  # no temporary, no marker
    body = s3.client().get_object(Bucket=s3.name, Key="out/pairs.manifest.json")["Body"].read()
    assert json.loads(body) == {"x": 2}
    before = (mirror / "pairs.manifest.json").stat()
    store.mount(s3.uri("out"), generation="again")  # the same objects: the written files stay as they are
    assert (mirror / "pairs.manifest.json").stat().st_mtime_ns == before.st_mtime_ns
    assert not store.is_stub(mirror / "pairs" / "shard-00000.parquet")


def test_what_changed_or_went_in_the_store_changes_in_the_mirror(s3):
    _put(s3, "run/a.json", b'{"v": 1}')
    _put(s3, "run/b.json", b'{"v": 1}')
    mirror = store.mount(s3.uri("run"))
    assert read_json(mirror / "a.json") == {"v": 1}
    time.sleep(1.1)  # the store's mtimes are to the second
    _put(s3, "run/a.json", b'{"v": 22}')
    s3.client().delete_object(Bucket=s3.name, Key="run/b.json")
    store.mount(s3.uri("run"), generation="later")  # at once: read a moment ago, gone from the store all the same
    assert read_json(mirror / "a.json") == {"v": 22}
    assert not (mirror / "b.json").exists()


def test_a_stub_stays_a_stub_when_a_copy_fills_its_hole_and_tiny_objects_are_fetched(s3, tmp_path):
    _put(s3, "run/big.bin", b"B" * 50_000)
    _put(s3, "run/tiny.txt", b"ok")
    mirror = store.mount(s3.uri("run"))
    assert (mirror / "tiny.txt").read_bytes() == b"ok"  # smaller than a stub's magic: its bytes at once
    copy = tmp_path / "copy.bin"
    copy.write_bytes((mirror / "big.bin").read_bytes())  # as cp --sparse=never, tar or rsync without -S
    assert copy.stat().st_blocks > 0 and store.is_stub(copy)
    assert store.local(mirror / "big.bin").read_bytes() == b"B" * 50_000


def test_remove_deletes_the_object_too(s3):
    mirror = store.mount(s3.uri("run"))
    write_json_atomic(mirror / "a.json", {})
    store.remove(mirror / "a.json")
    assert s3.keys("run") == [] and not (mirror / "a.json").exists()


def test_trim_turns_the_least_recently_read_back_into_stubs(s3, monkeypatch):
    for name in ("old", "new"):
        _put(s3, f"run/{name}.bin", os.urandom(200_000))
    mirror = store.mount(s3.uri("run"))
    store.local(mirror / "old.bin")
    time.sleep(0.05)
    store.local(mirror / "new.bin")
    monkeypatch.setattr(store, "RECENT_S", 0.0)
    freed = store.trim(limit=250_000)  # room for one of the two
    assert freed >= 200_000 - store.STUB_BYTES
    assert store.is_stub(mirror / "old.bin") and not store.is_stub(mirror / "new.bin")
    assert len(store.local(mirror / "old.bin").read_bytes()) == 200_000  # fetched again when read


def test_a_store_that_cannot_be_reached_is_one_message(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("PAIRGEN_CACHE", str(tmp_path))
    with pytest.raises(StoreError, match=r"s3://nowhere/run: cannot"):
        store.mount("s3://nowhere/run")


def _foreign_lease(s3, key: str, heartbeat: float) -> None:
    record = {"holder": "other", "host": "node-b", "pid": 4242, "command": "pairgen render --out s3://x",
              "since": heartbeat, "heartbeat": heartbeat}  # fmt: skip
    _put(s3, key, json.dumps(record).encode())


def test_a_live_lease_refuses_a_second_run_naming_its_holder(s3):
    mirror = store.mount(s3.uri("run"))
    _foreign_lease(s3, "run/_pairgen/views.lease.json", time.time())
    with pytest.raises(FolderBusy, match=r"PID 4242 on node-b, `pairgen render --out s3://x`"):
        with folder_lock(mirror / "views", at=mirror / "_pairgen"):
            pass


def test_a_lease_is_conditional_renewed_and_released(s3):
    mirror = store.mount(s3.uri("run"))
    with folder_lock(mirror / "views", at=mirror / "_pairgen"):
        assert s3.keys("run/_pairgen") == ["run/_pairgen/views.lease.json"]
        held = json.loads(s3.client().get_object(Bucket=s3.name, Key="run/_pairgen/views.lease.json")["Body"].read())
        assert held["pid"] == os.getpid()
        with pytest.raises(FolderBusy, match=f"PID {os.getpid()}"):  # the same process, as a second run would
            with store.lease(mirror / "_pairgen" / "views.lease.json"):
                pass
    assert s3.keys("run") == []  # released: nothing left


def test_a_stale_lease_is_taken_over(s3, caplog, monkeypatch):
    """Stale by the store's clock: its Date less the lease object's Last-Modified, not the holder's own clock."""
    mirror = store.mount(s3.uri("run"))
    _foreign_lease(s3, "run/_pairgen/views.lease.json", time.time() + 3600)  # a holder whose clock runs an hour fast
    monkeypatch.setattr(store, "LEASE_TTL_S", 1.0)
    time.sleep(2.1)
    with folder_lock(mirror / "views", at=mirror / "_pairgen"):
        held = json.loads(s3.client().get_object(Bucket=s3.name, Key="run/_pairgen/views.lease.json")["Body"].read())
        assert held["pid"] == os.getpid()
    assert "took over the lease of PID 4242 on node-b" in caplog.text and "no heartbeat for over 1 s" in caplog.text


def test_a_lease_of_an_ended_process_on_this_machine_is_taken_over_at_once(s3, caplog):
    mirror = store.mount(s3.uri("run"))
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"holder": "x", "host": "anything", "pid": int(ended.stdout), "space": store.process_space(),
              "command": "pairgen render", "since": time.time(), "heartbeat": time.time()}  # fmt: skip
    _put(s3, "run/_pairgen/views.lease.json", json.dumps(record).encode())
    with folder_lock(mirror / "views", at=mirror / "_pairgen"):
        pass
    assert f"its process {record['pid']} on this machine has ended" in caplog.text


def test_a_run_that_lost_its_lease_writes_nothing_more(s3, monkeypatch):
    mirror = store.mount(s3.uri("run"))
    monkeypatch.setattr(store, "HEARTBEAT_S", 0.2)
    with folder_lock(mirror / "views", at=mirror / "_pairgen"):
        _foreign_lease(s3, "run/_pairgen/views.lease.json", time.time())  # another run took it over
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                write_json_atomic(mirror / "views" / "x.json", {})
            except StoreError as e:
                assert "not written" in str(e) and "PID 4242 on node-b" in str(e)
                break
            time.sleep(0.2)
        else:
            raise AssertionError("still writing after losing its lease")


def test_unfinished_uploads_are_aborted(s3):
    mirror = store.mount(s3.uri("run"))
    client = s3.client()
    client.create_multipart_upload(Bucket=s3.name, Key="run/views/synthetic/x.parquet")
    client.create_multipart_upload(Bucket=s3.name, Key="run/pairs/shard-00000.parquet")
    assert store.abort_uploads(mirror / "views") == 1
    left = client.list_multipart_uploads(Bucket=s3.name).get("Uploads", [])
    assert [u["Key"] for u in left] == ["run/pairs/shard-00000.parquet"]


def test_a_relative_cache_is_made_absolute(s3, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAIRGEN_CACHE", "relcache")
    mirror = store.mount(s3.uri("run"))
    assert mirror.is_absolute() and mirror.is_relative_to(tmp_path / "relcache")
    write_json_atomic(mirror / "a.json", {})
    assert s3.keys("run") == ["run/a.json"]  # in a mount, so uploaded


def test_a_key_out_of_the_prefix_writes_nothing_outside_the_mirror(s3, tmp_path, caplog):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    escape = os.path.relpath(victim, s3.cache / "store" / "x")  # ../../.. up to tmp_path, from inside a mirror
    _put(s3, f"run/{escape}", b"Z" * 5000)
    _put(s3, "run/ok.json", b"{}")
    mirror = store.mount(s3.uri("run"))
    assert victim.read_text() == "mine"
    assert [p.name for p in mirror.rglob("*") if p.is_file()] == ["ok.json"]
    assert "a key that names no file inside the mirror" in caplog.text


def test_a_folder_emptied_in_the_store_goes_from_the_mirror(s3):
    _put(s3, "data/scannet/scans/scene0000_00/mesh.ply", b"P" * 100)
    _put(s3, "data/scannet/scans/scene0001_00/mesh.ply", b"P" * 100)
    mirror = store.mount(s3.uri("data"))
    store.local(mirror / "scannet/scans/scene0001_00/mesh.ply")
    s3.client().delete_object(Bucket=s3.name, Key="data/scannet/scans/scene0001_00/mesh.ply")
    store.mount(s3.uri("data"), generation="again")
    assert sorted(p.name for p in (mirror / "scannet" / "scans").iterdir()) == ["scene0000_00"]


def test_uploads_stop_when_the_heartbeats_do_not_get_through(s3, monkeypatch):
    """No renewal for longer than the lease's life less a beat: another run may take it over, so no upload."""
    mirror = store.mount(s3.uri("run"))
    monkeypatch.setattr(store, "HEARTBEAT_S", 3600.0)  # no beat gets through during the test
    monkeypatch.setattr(store, "LEASE_TTL_S", 3600.5)  # uploads stop 0.5 s after the last renewal
    with folder_lock(mirror / "views", at=mirror / "_pairgen"):
        time.sleep(0.6)
        with pytest.raises(StoreError, match="the lease was not renewed for"):
            write_json_atomic(mirror / "views" / "b.json", {})
    assert "run/views/b.json" not in s3.keys("run")


def test_a_heartbeat_whose_answer_was_lost_keeps_the_lease(s3, monkeypatch, caplog):
    from botocore.client import BaseClient

    mirror = store.mount(s3.uri("run"))
    call = BaseClient._make_api_call
    lost = []

    def answer_lost_once(client, operation, params):
        answer = call(client, operation, params)
        if operation == "PutObject" and params.get("IfMatch") and not lost:
            lost.append(time.monotonic())
            raise ConnectionError("the answer was lost on the way")
        return answer

    monkeypatch.setattr(BaseClient, "_make_api_call", answer_lost_once)
    monkeypatch.setattr(store, "HEARTBEAT_S", 0.2)
    with folder_lock(mirror / "views", at=mirror / "_pairgen"):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (not lost or time.monotonic() - lost[0] < 0.6):
            time.sleep(0.1)
        assert lost
        write_json_atomic(mirror / "views" / "a.json", {})  # still its lease: it writes
    assert "run/views/a.json" in s3.keys("run")
    assert "taken over" not in caplog.text


def test_a_stub_the_listing_lacks_goes_without_a_lookup(s3, monkeypatch):
    _put(s3, "run/a.bin", b"A" * 1000)
    mirror = store.mount(s3.uri("run"))
    s3.client().delete_object(Bucket=s3.name, Key="run/a.bin")
    looked_up = []
    monkeypatch.setattr(store, "_exists", lambda m, p: looked_up.append(p) or False)
    store.mount(s3.uri("run"), generation="again")
    assert not (mirror / "a.bin").exists() and looked_up == []
