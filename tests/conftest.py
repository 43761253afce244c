"""Shared test helpers: the real third-party fixtures in ../shared/fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """The ../shared/fixtures folder; tests that need it skip cleanly without it."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {SHARED_FIXTURES} (../shared is not part of the project)")
    return SHARED_FIXTURES


# A small rendered-and-filtered set, built once a session (filter and inspect tests read it).
RENDER_SMALL = ["render", "--scenes", "synthetic", "--synthetic-preset", "small", "--synthetic-count", "3",
                "--views-per-scene", "24", "--resolution", "64", "--no-ray"]  # fmt: skip
FILTER_SMALL = ["filter", "--min-covis", "0.3", "--max-covis", "0.9", "--shard-size", "40", "--no-ray"]


def copy_stage(src_out: Path, dest_out: Path, folder: str) -> Path:
    """Copy the data folder ``src_out/<folder>`` and its manifest (``<folder>.manifest.json``, beside it)."""
    import shutil

    shutil.copytree(src_out / folder, dest_out / folder)
    manifest = src_out / f"{folder}.manifest.json"
    if manifest.is_file():
        shutil.copy(manifest, dest_out / manifest.name)
    return dest_out / folder


@pytest.fixture(scope="session")
def small_pairs(tmp_path_factory) -> Path:
    """OUT folder holding views/ and pairs/ of three small synthetic apartments (64 px, 24 views each)."""
    from pairgen.cli import main

    out = tmp_path_factory.mktemp("pg")
    assert main([*RENDER_SMALL, "--out", str(out)]) == 0
    assert main([*FILTER_SMALL, "--out", str(out)]) == 0
    return out


# Samples of the same small views, in a folder of their own: 5-view stars (OUT/star5), embedded and referenced.
SAMPLES_SMALL = [*FILTER_SMALL, "--views", "5", "--shape", "star", "--pairs-per-scene", "20"]


@pytest.fixture(scope="session")
def small_samples(small_pairs, tmp_path_factory) -> Path:
    """OUT folder holding views/ (of :func:`small_pairs`) and star5/: 20 stars of 5 views a scene, by reference."""
    from pairgen.cli import main

    out = tmp_path_factory.mktemp("pg-samples")
    copy_stage(small_pairs, out, "views")
    assert main([*SAMPLES_SMALL, "--out", str(out)]) == 0
    return out



class SmallDisk:
    """A tmpfs of its own (``path``), to fill: what every writer does on a full disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / ".filler"

    def leave(self, free: int) -> None:
        """Fill the disk until about ``free`` bytes are left (tmpfs counts whole 4 KiB pages)."""
        import shutil

        self.filler.unlink(missing_ok=True)
        size = shutil.disk_usage(self.path).free - free
        if size > 0:
            with open(self.filler, "wb") as f:
                f.truncate(0)
                chunk = b"\0" * (1 << 20)
                while size > 0:
                    size -= f.write(chunk[: min(size, len(chunk))])

    def free_up(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path) -> SmallDisk:
    """A 64 MiB tmpfs mounted for this test; skipped where this process may not mount one (not root, no tmpfs)."""
    import os
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("a full disk needs a tmpfs of its own: mount -t tmpfs is not allowed here")
    try:
        yield SmallDisk(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on loopback for the session (``tests/s3.py``), stopped at the end."""
    pytest.importorskip("moto", reason="moto (the dev extra) runs the tests' S3 server")
    from tests.s3 import S3Server

    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, tmp_path):
    """A fresh bucket; the server's variables and a fresh mirror cache (``tmp_path/cache``) set for the test.

    ``s3.uri(prefix)`` is ``s3://<bucket>/<prefix>``; ``s3.keys(prefix)`` the objects under it."""
    from manifests import store
    from tests.s3 import s3_env

    class Bucket:
        server = s3_server
        name = s3_server.bucket()
        cache = tmp_path / "cache"

        def uri(self, prefix: str = "") -> str:
            return f"s3://{self.name}/{prefix}".rstrip("/")

        def keys(self, prefix: str = "") -> list[str]:
            return s3_server.keys(self.name, prefix)

        def client(self):
            return s3_server.client()

    with s3_env(s3_server, str(Bucket.cache)):
        yield Bucket()
    store.unmount_all()
