"""The dataset card: ``OUT/README.md``, so the output folder is a Hugging Face dataset as it is.

Written by ``pairgen render`` and ``pairgen filter`` (whichever runs; each
keeps it current, ``filter --views N --shape S`` too) from the manifests
beside the data folders: views, pairs and each samples folder's
(:mod:`manifests.layout`). Its YAML front matter declares one config per data
folder (``configs:``, the Hub's and ``datasets``' way to name the files of a
config), so that::

    datasets.load_dataset("data/pairgen", "pairs")   # pairs/shard-*.parquet, the default config
    datasets.load_dataset("data/pairgen", "views")   # views/*/*.parquet
    datasets.load_dataset("data/pairgen", "star5")   # star5/shard-*.parquet: samples of 5 views

each read one schema (the folders' schemas differ: loaded together they
fail). Every samples folder (``OUT/<shape><N>``, written by ``pairgen filter
--views N --shape S``; :func:`samples_folders`) whose manifest is there is a
config named after its folder. ``dataset_info`` gives each config's features
in ``datasets``' YAML form (4.0 and later: ``list:`` with ``length`` for the
fixed-size matrices, ``list:`` alone for the samples' variable lists,
``dtype: image`` for the encoded images and depth PNGs, ``list: image`` for
an embedded sample's); its ``splits`` are
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

from manifests.io import DiskFull, OutputError, atomic_path, read_json
from manifests.layout import CARD_NAME, MANIFEST_SUFFIX, is_safe_name
from manifests.store import local

__all__ = ["card_text", "features_yaml", "samples_folders", "write_card"]

log = logging.getLogger(__name__)

VIEWS_GLOB = "views/*/*.parquet"
PAIRS_GLOB = "pairs/shard-*.parquet"
SAMPLES_GLOB = "{folder}/shard-*.parquet"  # a samples folder's config
SAMPLES_MANIFEST_FORMAT = "pairgen-samples-manifest/"  # the format's name (manifests.manifest.SamplesManifest)
SAMPLES_IMAGES = ("images", "depths")  # an embedded sample's lists of encoded views
_DTYPES = {pa.int32(): "int32", pa.int64(): "int64", pa.float32(): "float32", pa.float64(): "float64",
           pa.string(): "string", pa.bool_(): "bool"}  # fmt: skip


def _feature(t: pa.DataType, image: bool) -> dict:
    """One type's feature in ``datasets``' YAML form: ``{dtype: ...}`` or ``{list: ..., length: ...}``."""
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t):
        inner = _feature(t.value_type, image)
        feature = {"list": inner["dtype"] if list(inner) == ["dtype"] else inner}  # as datasets simplifies it
        if pa.types.is_fixed_size_list(t):
            feature["length"] = t.list_size
        return feature
    if image:
        return {"dtype": "image"}
    if pa.types.is_dictionary(t):
        return {"dtype": _DTYPES[t.value_type]}
    return {"dtype": _DTYPES[t]}


def features_yaml(schema: pa.Schema, image_columns: tuple[str, ...]) -> list[dict]:
    """The features of ``schema`` in ``datasets``' YAML form (``Features._to_yaml_list`` of datasets 4+).

    ``image_columns`` (the ``{bytes, path}`` structs, or lists of them) are
    ``image`` (``list: image``); dictionary-encoded strings are ``string``;
    fixed-size lists are ``list: <dtype>`` with their ``length``, other lists
    ``list: <dtype>`` (nested: ``list: {list: float32, length: 9}``).
    """
    return [{"name": field.name, **_feature(field.type, field.name in image_columns)} for field in schema]


def _kind(feature: dict) -> str:
    """A feature as the card's tables show it: ``int32``, ``image``, ``list<float32>[9]``, ``list<image>``."""
    if "dtype" in feature:
        return feature["dtype"]
    inner = feature["list"]
    text = f"list<{inner if isinstance(inner, str) else _kind(inner)}>"
    return text + (f"[{feature['length']}]" if "length" in feature else "")


def samples_folders(out_dir: str | Path) -> list[str]:
    """The samples folders of ``out_dir`` (``star5``, ``tree12``, ``pair2``): each ``X`` whose ``X.manifest.json``
    beside it is a samples manifest (by its format name; damaged ones are left to :func:`card_text`), sorted."""
    out_dir = Path(out_dir)
    found = []
    if not out_dir.is_dir():
        return found
    for path in sorted(out_dir.glob("*" + MANIFEST_SUFFIX)):
        name = path.name[: -len(MANIFEST_SUFFIX)]
        if not is_safe_name(name) or name in ("views", "pairs") or not path.is_file():
            continue
        try:
            fmt = read_json(path).get("format")
        except OutputError:
            continue
        if isinstance(fmt, str) and fmt.startswith(SAMPLES_MANIFEST_FORMAT):
            found.append(name)
    return found


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


def _samples_kind(manifest) -> dict:
    """What a samples manifest's config says its rows are: ``shape``, ``views`` a sample, ``embed``."""
    config = manifest.config
    return {"shape": str(config.get("shape", "?")), "views": config.get("views", "?"), "embed": config.get("embed") is True}


def card_text(out_dir: str | Path) -> str | None:
    """The card of ``out_dir`` from its manifests, or None when no views, pairs or samples are there."""
    from manifests.manifest import PairsManifest, SamplesManifest, ViewsManifest
    from manifests.pairs import PAIRS_SCHEMA
    from manifests.samples import samples_schema
    from manifests.version import VERSION
    from manifests.views import VIEWS_SCHEMA

    out_dir = Path(out_dir)
    views = _read(ViewsManifest, out_dir / "views")
    pairs = _read(PairsManifest, out_dir / "pairs")
    samples = [(name, m) for name in samples_folders(out_dir) if (m := _read(SamplesManifest, out_dir / name))]
    if views is None and pairs is None and not samples:
        return None
    view_scenes = views.ok_scenes() if views else {}
    n_views = sum(int(e.get("views", 0)) for e in view_scenes.values())
    shards = pairs.shards if pairs else []
    n_pairs = sum(int(s.get("pairs", 0)) for s in shards)
    n_samples = {name: sum(int(s.get("samples", 0)) for s in m.shards) for name, m in samples}
    scene_keys = sorted(set(view_scenes) | ({k for k, e in pairs.scenes.items() if e.get("pairs")} if pairs else set())
                        | {k for _, m in samples for k, e in m.scenes.items() if e.get("samples")})  # fmt: skip
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
    for i, (name, m) in enumerate(samples):  # one config a samples folder, named after it
        configs.append({"config_name": name, "data_files": [{"split": "train", "path": SAMPLES_GLOB.format(folder=name)}],
                        **({"default": True} if i == 0 and pairs is None and views is None else {})})  # fmt: skip
        infos.append({"config_name": name,
                      "features": features_yaml(samples_schema(_samples_kind(m)["embed"]), SAMPLES_IMAGES)})  # fmt: skip
    front = {"pretty_name": f"pairgen: {', '.join(datasets) or 'no'} scenes, views and covisible pairs",
             "license": hf_ids[0] if len(hf_ids) == 1 else hf_ids}  # fmt: skip
    if "other" in hf_ids:
        others = [lic for lic in licences.values() if lic.hf_id == "other"]
        front["license_name"] = "; ".join(dict.fromkeys(lic.name for lic in others))
        front["license_link"] = others[0].url if len(others) == 1 else "README.md#licences"
    front.update({"tags": ["pairgen", "croco", "cross-view-completion", "multi-view", "depth", "indoor"],
                  "size_categories": [_size_category(max(n_pairs, n_views, *n_samples.values()))], "configs": configs,
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
             *([f'samples = datasets.load_dataset("path/to/this/folder", "{samples[0][0]}", split="train")  '
                "# samples of N views: rows name their views (or carry them)",
                "from manifests.samples import read_samples  # each sample with its N views decoded, "
                "from the views files it names",
                f'for sample in read_samples("{samples[0][0]}"): sample.rgb, sample.depth, sample.covis  '
                "# (N, H, W, 3), (N, H, W) metres, (N, N)"] if samples else []),
             "",
             "from manifests.codecs import depth_metres  # depth PNGs (uint16 millimetres) as float32 metres",
             'metres = depth_metres(pairs.with_format("torch")[0]["depth1"])  # (1, H, W), 0 = invalid',
             "```", "",
             "| path | holds |", "| --- | --- |",
             f"| `{PAIRS_GLOB}` | one row a pair (config `pairs`) |",
             f"| `{VIEWS_GLOB}` | one row a rendered view, one file a scene (config `views`) |",
             *(f"| `{SAMPLES_GLOB.format(folder=name)}` | one row a sample: a {k['shape']} of {k['views']} views of "
               f"one scene with their covisibility matrix, "
               f"{'carrying its views' if k['embed'] else 'naming its views (rows of `views/`)'} (config `{name}`) |"
               for name, k in ((name, _samples_kind(m)) for name, m in samples)),
             "| `views.manifest.json`, `pairs.manifest.json`"
             + "".join(f", `{name}.manifest.json`" for name, _ in samples)
             + " | the stages' manifests: config, per-scene status, checksums, statistics |",
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
    for_samples = {
        "sample_id": "`<dataset>/<scene_id>/<v1>-<v2>-...`, unique and stable", "shape": "pair, star, chain or tree",
        "view_ids": "the views, view 1 first (the star's reference, the chain's or tree's root): rows of "
                    "`views/<dataset>/<scene_id>.parquet`",
        "parents": "each view's parent: its position in `view_ids` (0-based), -1 for view 1",
        "covis": "N x N row-major: `covis[i * N + j]` the share of view i's pixels seen in view j; the diagonal "
                 "each view's valid fraction",
        "width": "pixels (every view)", "height": "pixels (every view)",
        "views_sha256": "SHA-256 of the views file the sample was drawn from",
        "images": "the views' encoded RGB, in `view_ids` order", "depths": "the views' 16-bit PNG depths, millimetres",
        "K": "each view's 3x3 intrinsics, row-major", "cam2world": "each view's 4x4 pose, row-major (OpenCV camera)",
    }  # fmt: skip
    sample_configs = {name for name, _ in samples}
    for info in infos:
        rows = []
        for f in info["features"]:
            kind = _kind(f)
            base = f["name"].rstrip("12") if f["name"] not in meaning else f["name"]
            said = meaning.get(f["name"], meaning.get(base, ""))
            if info["config_name"] in sample_configs:
                said = for_samples.get(f["name"], said)
            rows.append([f"`{f['name']}`", kind, said])
        lines += [f"Config `{info['config_name']}`:", "", *_table(["column", "type", "meaning"], rows), ""]

    lines += ["## Generation config", ""]
    if views is not None:
        lines += [f"`pairgen render` (config hash `{views.config_hash}`):", "", "```json",
                  json.dumps(views.config, indent=2, sort_keys=True), "```", ""]  # fmt: skip
    if pairs is not None:
        lines += [f"`pairgen filter` (config hash `{pairs.config_hash}`, over the views of config "
                  f"`{pairs.body.get('identity', {}).get('views_config_hash', '?')}`):", "", "```json",
                  json.dumps(pairs.config, indent=2, sort_keys=True), "```", ""]  # fmt: skip
    for name, m in samples:
        k = _samples_kind(m)
        lines += [f"`pairgen filter --views {k['views']} --shape {k['shape']}{' --embed' if k['embed'] else ''}`, "
                  f"config `{name}` (config hash `{m.config_hash}`, over the views of config "
                  f"`{m.body.get('identity', {}).get('views_config_hash', '?')}`):", "", "```json",
                  json.dumps(m.config, indent=2, sort_keys=True), "```", ""]  # fmt: skip

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
    if samples:
        rows = []
        for name, m in samples:
            k = _samples_kind(m)
            per_set: dict[str, Counter] = {}
            for key, e in sorted(m.scenes.items()):
                if e.get("samples"):
                    per_set.setdefault(key.split("/", 1)[0], Counter()).update(scenes=1, samples=int(e["samples"]))
            rows += [[f"`{name}`", k["shape"], k["views"], "embedded" if k["embed"] else "referenced", d,
                      c["scenes"], c["samples"]] for d, c in per_set.items()]  # fmt: skip
        lines += ["", "Samples of N views (one config a folder):", "",
                  *_table(["config", "shape", "views a sample", "views stored", "dataset", "scenes", "samples"], rows)]
        for name, m in samples:
            k = _samples_kind(m)
            lines += ["", f"`{name}`: {n_samples[name]} samples ({k['shape']} of {k['views']} views) in "
                          f"{len(m.shards)} shards."]  # fmt: skip
            hist = m.body.get("histogram")
            if hist and hist.get("counts"):
                bins, counts = hist["bins"], hist["counts"]
                lines += ["", f"Covisibility of the edges of `{name}` (each view with its parent):", "",
                          *_table(["covisibility", "edges"], [[f"{bins[i]:.2f}-{bins[i + 1]:.2f}", c]
                                                              for i, c in enumerate(counts) if c])]  # fmt: skip
    lines += [""]

    lines += ["## Checksums", "",
              "SHA-256 of every file, as the manifests record them (`views.manifest.json`: per scene `sha256`; "
              "`pairs.manifest.json`"
              + "".join(f", `{name}.manifest.json`" for name, _ in samples)
              + ": per shard `sha256`); `pairgen filter` and `pretrain run` check them.", "",
              "<details><summary>files</summary>", "",
              *_table(["file", "rows", "sha256"],
                      [*([f"`pairs/{s['file']}`", s.get("pairs", ""), f"`{s.get('sha256', '')}`"] for s in shards),
                       *([f"`{name}/{s['file']}`", s.get("samples", ""), f"`{s.get('sha256', '')}`"]
                         for name, m in samples for s in m.shards),
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

    A card that cannot be written is logged, not raised: the outputs it describes are complete without it; but
    a full disk is raised (:class:`~manifests.io.DiskFull`), as by every writer: the next write would fail too.
    """
    out_dir = Path(out_dir)
    text = card_text(out_dir)
    if text is None:
        return None
    path = out_dir / CARD_NAME
    try:
        if path.is_file() and local(path).read_text() == text:
            return path
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    except DiskFull:
        raise
    except OutputError as e:  # names the file
        log.warning("dataset card not written: %s", e)
        return None
    except (OSError, UnicodeDecodeError) as e:
        log.warning("%s: dataset card not written (%s)", path, e)
        return None
    return path
