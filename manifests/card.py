"""The dataset card: ``OUT/README.md``, so the output folder is a Hugging Face dataset as it is.

Written by ``pairgen render`` and ``pairgen filter`` (whichever runs; each
keeps it current) from the two manifests beside the data folders
(:mod:`manifests.layout`). Its YAML front matter declares one config per data
folder (``configs:``, the Hub's and ``datasets``' way to name the files of a
config), so that::

    datasets.load_dataset("data/pairgen", "pairs")   # pairs/shard-*.parquet, the default config
    datasets.load_dataset("data/pairgen", "views")   # views/*/*.parquet

each read one schema (the two folders' schemas differ: loaded together they
fail). ``dataset_info`` gives each config's features in ``datasets``' YAML
form (4.0 and later: ``list:`` with ``length`` for the fixed-size matrices,
``dtype: image`` for the encoded images and depth PNGs); its ``splits`` are
left out (``datasets`` wants ``num_bytes`` there, the in-memory size, which
pairgen does not know: the row counts are in the statistics).
The body says how to read the folders with each tool, then the features,
the generation config, statistics, the files' SHA-256 (as the manifests
record them) and the source datasets' licences, per dataset and per scene.

The front matter is written with PyYAML (``safe_dump``, keys in the order
given, as the Hub's own cards are). The card is rewritten only when its text changes: the same command again
leaves it untouched.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pyarrow as pa
import yaml

from manifests.io import atomic_path
from manifests.layout import CARD_NAME

__all__ = ["card_text", "features_yaml", "write_card"]

log = logging.getLogger(__name__)

VIEWS_GLOB = "views/*/*.parquet"
PAIRS_GLOB = "pairs/shard-*.parquet"
_DTYPES = {pa.int32(): "int32", pa.int64(): "int64", pa.float32(): "float32", pa.float64(): "float64",
           pa.string(): "string", pa.bool_(): "bool"}  # fmt: skip


def features_yaml(schema: pa.Schema, image_columns: tuple[str, ...]) -> list[dict]:
    """The features of ``schema`` in ``datasets``' YAML form (``Features._to_yaml_list`` of datasets 4+).

    ``image_columns`` (the ``{bytes, path}`` structs) are ``image``;
    dictionary-encoded strings are ``string``; fixed-size lists are
    ``list: <dtype>`` with their ``length``.
    """
    out = []
    for field in schema:
        t = field.type
        if field.name in image_columns:
            out.append({"name": field.name, "dtype": "image"})
        elif pa.types.is_dictionary(t):
            out.append({"name": field.name, "dtype": _DTYPES[t.value_type]})
        elif pa.types.is_fixed_size_list(t):
            out.append({"name": field.name, "list": _DTYPES[t.value_type], "length": t.list_size})
        else:
            out.append({"name": field.name, "dtype": _DTYPES[t]})
    return out


def _read(manifest_cls, folder: Path):
    """The folder's manifest, or None (absent or unreadable: the card says less, the stage goes on)."""
    from manifests.manifest import ManifestError

    if not manifest_cls.exists(folder):
        return None
    try:
        return manifest_cls.read(folder)
    except ManifestError as e:
        log.warning("dataset card: %s", e)
        return None


def _licence(dataset: str):
    from manifests.datasets import UNKNOWN_LICENCE, DatasetError, get_dataset

    try:
        return get_dataset(dataset).licence
    except DatasetError:
        return UNKNOWN_LICENCE


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):  # fmt: skip
        if n < limit:
            return name
    return "100M<n<1B"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |",
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]  # fmt: skip


def card_text(out_dir: str | Path) -> str | None:
    """The card of ``out_dir`` from its manifests, or None when neither views nor pairs are there."""
    from manifests.manifest import PairsManifest, ViewsManifest
    from manifests.pairs import PAIRS_SCHEMA
    from manifests.version import VERSION
    from manifests.views import VIEWS_SCHEMA

    out_dir = Path(out_dir)
    views = _read(ViewsManifest, out_dir / "views")
    pairs = _read(PairsManifest, out_dir / "pairs")
    if views is None and pairs is None:
        return None
    view_scenes = views.ok_scenes() if views else {}
    n_views = sum(int(e.get("views", 0)) for e in view_scenes.values())
    shards = pairs.shards if pairs else []
    n_pairs = sum(int(s.get("pairs", 0)) for s in shards)
    scene_keys = sorted(set(view_scenes) | ({k for k, e in pairs.scenes.items() if e.get("pairs")} if pairs else set()))
    datasets = sorted({k.split("/", 1)[0] for k in scene_keys})
    licences = {d: _licence(d) for d in datasets}
    hf_ids = sorted({lic.hf_id for lic in licences.values()}) or ["other"]

    configs, infos = [], []
    if pairs is not None:
        configs.append({"config_name": "pairs", "data_files": [{"split": "train", "path": PAIRS_GLOB}], "default": True})
        infos.append({"config_name": "pairs", "features": features_yaml(PAIRS_SCHEMA, ("image1", "image2", "depth1", "depth2"))})
    if views is not None:
        configs.append({"config_name": "views", "data_files": [{"split": "train", "path": VIEWS_GLOB}],
                        **({} if pairs is not None else {"default": True})})  # fmt: skip
        infos.append({"config_name": "views", "features": features_yaml(VIEWS_SCHEMA, ("image", "depth"))})
    front = {"pretty_name": f"pairgen: {', '.join(datasets) or 'no'} scenes, views and covisible pairs",
             "license": hf_ids[0] if len(hf_ids) == 1 else hf_ids}  # fmt: skip
    if "other" in hf_ids:
        others = [lic for lic in licences.values() if lic.hf_id == "other"]
        front["license_name"] = "; ".join(dict.fromkeys(lic.name for lic in others))
        front["license_link"] = others[0].url if len(others) == 1 else "README.md#licences"
    front.update({"tags": ["pairgen", "croco", "cross-view-completion", "multi-view", "depth", "indoor"],
                  "size_categories": [_size_category(max(n_pairs, n_views))], "configs": configs,
                  "dataset_info": infos})  # fmt: skip

    lines = ["---", *yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1000).splitlines(), "---", "", f"# {front['pretty_name']}", "",
             f"Made by pairgen {VERSION}: views rendered from indoor scenes (RGB, depth, "
             "camera) and pairs of views that overlap, for cross-view completion pre-training (CroCo). "
             "This card is written by `pairgen render` and `pairgen filter`; edits are overwritten.", "",
             "## Reading it", "",
             "Each data folder holds Parquet files only, so every reader opens it by name (paths relative to this "
             "folder):", "",
             "```python",
             "import datasets",
             'pairs = datasets.load_dataset("path/to/this/folder", "pairs", split="train")  # or "views"',
             'pairs = datasets.load_dataset("parquet", data_dir="pairs", split="train")',
             "import pyarrow.dataset as ds; ds.dataset(\"pairs\")",
             "import polars as pl; pl.scan_parquet(\"pairs\")",
             "import duckdb; duckdb.sql(\"select * from read_parquet('pairs/*.parquet')\")",
             "import ray; ray.data.read_parquet(\"pairs\")",
             "",
             "from manifests.codecs import depth_metres  # depth PNGs (uint16 millimetres) as float32 metres",
             'metres = depth_metres(pairs.with_format("torch")[0]["depth1"])  # (1, H, W), 0 = invalid',
             "```", "",
             "| path | holds |", "| --- | --- |",
             f"| `{PAIRS_GLOB}` | one row a pair (config `pairs`) |",
             f"| `{VIEWS_GLOB}` | one row a rendered view, one file a scene (config `views`) |",
             "| `views.manifest.json`, `pairs.manifest.json` | the stages' manifests: config, per-scene status, "
             "checksums, statistics |",
             "| `_pairgen/` | pairgen's working state (locks, temporaries, the filter's per-scene cache); not data |", ""]  # fmt: skip

    lines += ["## Features", ""]
    meaning = {
        "dataset": "source dataset", "scene_id": "scene within it", "view_id": "view index within the scene",
        "pair_id": "`<dataset>/<scene_id>/<view1>-<view2>`, unique and stable",
        "image": "encoded RGB (JPEG by default)", "depth": "16-bit PNG, millimetres, 0 = invalid (`depth_metres`)",
        "K": "3x3 pinhole intrinsics, row-major; pixel centres at integer coordinates",
        "cam2world": "4x4 pose, row-major; OpenCV camera (x right, y down, z forward), Y-up world, metres",
        "covis_1in2": "share of view 1's pixels seen in view 2", "covis_2in1": "share of view 2's pixels seen in view 1",
        "covisibility": "min(covis_1in2, covis_2in1)", "width": "pixels", "height": "pixels",
        "valid_fraction": "share of pixels with valid depth", "view1_id": "view 1 (CroCo's masked target)",
        "view2_id": "view 2 (the context)",
    }  # fmt: skip
    for info in infos:
        rows = []
        for f in info["features"]:
            kind = f.get("dtype") or f"list<{f['list']}>[{f['length']}]"
            base = f["name"].rstrip("12") if f["name"] not in meaning else f["name"]
            rows.append([f"`{f['name']}`", kind, meaning.get(f["name"], meaning.get(base, ""))])
        lines += [f"Config `{info['config_name']}`:", "", *_table(["column", "type", "meaning"], rows), ""]

    lines += ["## Generation config", ""]
    if views is not None:
        lines += [f"`pairgen render` (config hash `{views.config_hash}`):", "", "```json",
                  json.dumps(views.config, indent=2, sort_keys=True), "```", ""]  # fmt: skip
    if pairs is not None:
        lines += [f"`pairgen filter` (config hash `{pairs.config_hash}`, over the views of config "
                  f"`{pairs.body.get('identity', {}).get('views_config_hash', '?')}`):", "", "```json",
                  json.dumps(pairs.config, indent=2, sort_keys=True), "```", ""]  # fmt: skip

    lines += ["## Statistics", ""]
    per: dict[str, Counter] = {d: Counter() for d in datasets}
    for key, e in view_scenes.items():
        per[key.split("/", 1)[0]].update(scenes=1, views=int(e.get("views", 0)))
    if pairs is not None:
        for key, e in pairs.scenes.items():
            if e.get("pairs") and key.split("/", 1)[0] in per:
                per[key.split("/", 1)[0]].update(paired_scenes=1, pairs=int(e["pairs"]))
    lines += _table(["dataset", "scenes rendered", "views", "scenes paired", "pairs"],
                    [[d, c["scenes"], c["views"], c["paired_scenes"], c["pairs"]] for d, c in per.items()])  # fmt: skip
    failed = sum(1 for e in views.scenes.values() if e.get("status") == "failed") if views else 0
    lines += ["", f"{len(view_scenes)} scenes rendered ({failed} failed), {n_views} views; "
              f"{n_pairs} pairs in {len(shards)} shards."]  # fmt: skip
    hist = pairs.body.get("histogram") if pairs is not None else None
    if hist and hist.get("counts"):
        bins, counts = hist["bins"], hist["counts"]
        lines += ["", "Covisibility of the pairs:", "",
                  *_table(["covisibility", "pairs"], [[f"{bins[i]:.2f}-{bins[i + 1]:.2f}", c]
                                                      for i, c in enumerate(counts) if c])]  # fmt: skip
    lines += [""]

    lines += ["## Checksums", "",
              "SHA-256 of every file, as the manifests record them (`views.manifest.json`: per scene `sha256`; "
              "`pairs.manifest.json`: per shard `sha256`); `pairgen filter` and `pretrain run` check them.", "",
              "<details><summary>files</summary>", "",
              *_table(["file", "rows", "sha256"],
                      [*([f"`pairs/{s['file']}`", s.get("pairs", ""), f"`{s.get('sha256', '')}`"] for s in shards),
                       *([f"`views/{e['file']}`", e.get("views", ""), f"`{e.get('sha256', '')}`"]
                         for _, e in sorted(view_scenes.items()))]),
              "", "</details>", ""]  # fmt: skip

    lines += ["## Licences", "",
              "Every view is rendered from a scene of a source dataset, and the views and pairs of a scene are "
              "derived from it: they are bound by that dataset's terms.", "",
              *_table(["dataset", "scenes", "licence"],
                      [[d, sum(1 for k in scene_keys if k.startswith(d + "/")),
                        f"[{licences[d].name}]({licences[d].url})" if licences[d].url else licences[d].name]
                       for d in datasets]),
              "", "<details><summary>per scene</summary>", "",
              *_table(["scene", "licence"], [[f"`{k}`", licences[k.split("/", 1)[0]].name] for k in scene_keys]),
              "", "</details>", ""]  # fmt: skip
    return "\n".join(lines)


def write_card(out_dir: str | Path) -> Path | None:
    """Write ``out_dir/README.md`` atomically when its text changes; its path, or None when there is nothing to describe.

    A card that cannot be written is logged, never raised: the outputs it describes are complete without it.
    """
    out_dir = Path(out_dir)
    text = card_text(out_dir)
    if text is None:
        return None
    path = out_dir / CARD_NAME
    try:
        if path.is_file() and path.read_text() == text:
            return path
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    except (OSError, UnicodeDecodeError) as e:
        log.warning("%s: dataset card not written (%s)", path, e)
        return None
    return path
