"""A worker node lost in the middle of a render and of a filter, on Ray's own multi-node cluster on one machine.

``ray.cluster_utils.Cluster`` starts a head and a worker node (two raylets)
here; the worker node is removed while its scenes run. The run finishes,
every scene appears once in the manifest with its status, every file under a
final name is readable, and the same command again does nothing.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from manifests import SyntheticOptions, discover, get_dataset
from pairgen.distribute import run_ray
from pairgen.filter import FilterConfig, FilterStage
from pairgen.render import RenderConfig, RenderStage
from renderers.viewpoints import ViewConfig

SCENES = 4
RENDER = RenderConfig(sampling=ViewConfig(views_per_scene=120, resolution=(64, 64)))
FILTER = FilterConfig(min_covis=0.3, max_covis=0.9, shard_size=50)


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=2)
    ray.init(address=c.address, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def _lose_a_node_after(cluster, seconds: float) -> threading.Thread:
    """Remove the worker node after ``seconds`` (while scenes run there), then add a fresh one."""

    def lose() -> None:
        time.sleep(seconds)
        workers = [n for n in cluster.list_all_nodes() if n is not cluster.head_node]
        if workers:
            cluster.remove_node(workers[0], allow_graceful=False)

    thread = threading.Thread(target=lose, daemon=True)
    thread.start()
    return thread


def _readable(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            if path.suffix == ".parquet":
                pq.read_table(path)
            elif path.suffix == ".json":
                json.loads(path.read_text())


def _distributor(**kw):
    return lambda *a, **k: run_ray(*a, retries=3, **{**k, **kw})


def test_a_lost_node_during_render_and_filter(cluster, tmp_path):
    records = discover(get_dataset("synthetic"), None, None, SyntheticOptions(count=SCENES, preset="small"))
    lost = _lose_a_node_after(cluster, 2.0)
    summary = RenderStage(records, tmp_path, RENDER, distributor=_distributor()).run()
    lost.join()
    assert summary.counts["retries"] >= 1  # the lost node's scenes ran again on the head
    views = json.loads((tmp_path / "views.manifest.json").read_text())
    assert sorted(views["scenes"]) == sorted(r.key for r in records)  # every scene once, with its status
    assert summary.ok + summary.failed == SCENES and summary.failed == 0, summary.failures
    _readable(tmp_path / "views")
    again = RenderStage(records, tmp_path, RENDER, distributor=_distributor()).run()
    assert (again.ok, again.skipped, again.failed) == (0, SCENES, 0)

    cluster.add_node(num_cpus=2)
    lost = _lose_a_node_after(cluster, 1.0)
    summary = FilterStage(tmp_path, FILTER, distributor=_distributor()).run()
    lost.join()
    pairs = json.loads((tmp_path / "pairs.manifest.json").read_text())
    assert sorted(pairs["scenes"]) == sorted(r.key for r in records) and pairs["complete"]
    assert summary.failed == 0, summary.failures
    _readable(tmp_path / "pairs")
    assert FilterStage(tmp_path, FILTER, distributor=_distributor()).run().up_to_date
