"""``pairgen inspect``: statistics of a pairs folder, and a contact sheet of pairs.

:func:`pairs_statistics` reads ``OUT/pairs.manifest.json`` and checks it against
the shards themselves: each shard's footer (row count, row groups, the config
hash in its schema metadata; no image is read) and the small ``dataset``,
``scene_id`` and ``covisibility`` columns, from which the per-dataset and
per-scene counts and the covisibility histogram are computed. Every
disagreement (a shard missing, unreadable, with another row count or config,
or on disk but not in the manifest; totals or histogram that differ) is a
problem naming the file; the statistics describe the shards that can be read.

:func:`contact_sheet` draws ``n`` seeded random pairs, reading only their row
groups and the columns it needs, as rows of
``[view 1 | view 2 | view 1 highlighted]``: view 1's covisible pixels (in
view 2, :func:`covisibility.reference.covisible_mask` on the stored depths
and cameras) tinted green, the others darkened.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from manifests.io import OutputError, atomic_path
from manifests.manifest import PairsManifest
from manifests.options import check, option
from manifests.pairs import META_KEY, PAIRS_SCHEMA, SHARD_GLOB

__all__ = ["LABEL_HEIGHT", "MIN_PANEL", "PAD", "SheetOptions", "contact_sheet", "highlight", "pairs_statistics"]

log = logging.getLogger(__name__)

MIB = float(1 << 20)
DEFAULT_BINS = np.round(np.linspace(0.0, 1.0, 21), 2)  # filter's, when a manifest has none

# contact sheet layout, pixels
PAD = 4  # around and between panels
LABEL_HEIGHT = 14  # text strip above each row
MIN_PANEL = 128  # small images are enlarged (nearest, integer factor) to at least this size
TINT = np.array([0, 255, 0], np.float32)  # colour blended into covisible pixels
TINT_WEIGHT = 0.45  # share of the tint in a covisible pixel
DARKEN = 0.3  # brightness kept by a pixel that is not covisible

SHEET_COLUMNS = ["pair_id", "image1", "image2", "depth1", "depth2", "K1", "K2", "cam2world1", "cam2world2",
                 "covis_1in2", "covisibility", "width", "height"]  # fmt: skip


@dataclass(frozen=True)
class SheetOptions:
    """Which pairs the contact sheet shows."""

    pairs: int = option(8, min=1, max=1000, metavar="N", help="pairs (rows) on the contact sheet")
    seed: int = option(0, min=0, max=2**32 - 1, help="seed of the pairs drawn for the sheet")

    def __post_init__(self) -> None:
        check(self)


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (pyarrow's span several)."""
    return " ".join(str(error).split())


def _read_manifest(pairs_dir: Path) -> PairsManifest:
    if not PairsManifest.exists(pairs_dir):
        raise OutputError(f"{PairsManifest.path_in(pairs_dir)}: not found; run `pairgen filter --out {pairs_dir.parent}` first")
    return PairsManifest.read(pairs_dir)


def _shard_footers(pairs_dir: Path, manifest: PairsManifest) -> tuple[list[dict], list[str]]:
    """Each manifest shard with what its footer says; and the problems found.

    Returns ``[{file, pairs (manifest), rows (footer, None when unreadable),
    row_groups: [rows per group], bytes}]`` in manifest order.
    """
    problems: list[str] = []
    shards: list[dict] = []
    config_hash = manifest.config_hash
    listed = set()
    for entry in manifest.shards:
        name = Path(str(entry.get("file", ""))).name  # manifests are data: never follow a path out of the folder
        listed.add(name)
        path = pairs_dir / name
        shard = {"file": name, "pairs": int(entry.get("pairs", 0)), "rows": None, "row_groups": [], "bytes": 0}
        shards.append(shard)
        before = len(problems)
        if not path.is_file():
            problems.append(f"{name}: listed in the manifest ({shard['pairs']} pairs) but missing")
            continue
        shard["bytes"] = path.stat().st_size
        try:
            meta = pq.ParquetFile(path).metadata
        except (OSError, pa.ArrowException) as e:
            problems.append(f"{name}: not a readable Parquet file, truncated or damaged ({_one_line(e)})")
            continue
        changed = manifest.verify_shard(entry, path)
        if changed:
            problems.append(changed)
        shard["rows"] = meta.num_rows
        shard["row_groups"] = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        if meta.num_rows != shard["pairs"]:
            problems.append(f"{name}: {meta.num_rows} rows, the manifest says {shard['pairs']} pairs")
        try:
            written = json.loads((meta.metadata or {}).get(META_KEY.encode(), b"{}"))
        except ValueError:
            written = {}
        if not isinstance(written, dict):  # the footer's metadata is data too
            written = {}
        if written.get("config_hash") != config_hash:
            problems.append(f"{name}: written with config {written.get('config_hash')}, "
                            f"the manifest's is {config_hash}")  # fmt: skip
        schema = meta.schema.to_arrow_schema()
        for field in PAIRS_SCHEMA:
            if field.name not in schema.names or not schema.field(field.name).type.equals(field.type):
                problems.append(f"{name}: column {field.name!r} is missing or not {field.type}")
                break
        shard["clean"] = len(problems) == before  # the contact sheet draws from clean shards only
    for path in sorted(pairs_dir.glob(SHARD_GLOB)):
        if path.name not in listed:
            problems.append(f"{path.name}: on disk but not in the manifest (left from another run?)")
    return shards, problems


def _summary(values: list[float]) -> dict:
    if not values:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": min(values), "median": float(np.median(values)), "max": max(values)}


def pairs_statistics(pairs_dir: str | Path) -> dict:
    """Statistics of ``pairs_dir`` (``OUT/pairs``), verified against its shards.

    Returns
    -------
    dict
        ``pairs_dir``, ``config_hash``; ``totals`` (``pairs``, ``scenes``,
        ``datasets``, ``shards``, ``mib``) counted in the readable shards;
        ``datasets`` (name -> ``{pairs, scenes}``); ``scenes`` (key ->
        pairs); ``histogram`` (``bins``, ``counts``) of ``covisibility``;
        ``shards`` (``file``, ``pairs``, ``row_groups``, ``mib``);
        ``shard_sizes`` (min/median/max of ``pairs`` and ``mib``);
        ``problems``, one line each, empty when shards and manifest agree.

    Raises
    ------
    OutputError
        No pairs folder or manifest (run ``pairgen filter`` first), or an
        unreadable manifest.
    """
    pairs_dir = Path(pairs_dir)
    manifest = _read_manifest(pairs_dir)
    shards, problems = _shard_footers(pairs_dir, manifest)
    if not manifest.complete:
        problems.append(f"{manifest.path.name}: not marked complete (filter was interrupted?)")
    bins = np.asarray(manifest.body.get("histogram", {}).get("bins") or DEFAULT_BINS, np.float64)

    scenes: Counter[str] = Counter()
    covis: list[np.ndarray] = []
    for shard in shards:
        if shard["rows"] is None:
            continue
        path = pairs_dir / shard["file"]
        try:
            table = pq.read_table(path, columns=["dataset", "scene_id", "covisibility"])
        except (OSError, pa.ArrowException) as e:
            problems.append(f"{shard['file']}: columns cannot be read ({_one_line(e)})")
            continue
        keys = [f"{d}/{s}" for d, s in zip(table.column("dataset").to_pylist(), table.column("scene_id").to_pylist())]
        scenes.update(keys)
        covis.append(table.column("covisibility").to_numpy().astype(np.float64))
    values = np.concatenate(covis) if covis else np.zeros(0)
    counts, _ = np.histogram(values, bins=bins)
    datasets: dict[str, dict] = {}
    for key, n in sorted(scenes.items()):
        d = datasets.setdefault(key.split("/", 1)[0], {"pairs": 0, "scenes": 0})
        d["pairs"] += n
        d["scenes"] += 1

    totals = manifest.body.get("totals", {})
    unread = any(shard["rows"] is None for shard in shards) or any("cannot be read" in p for p in problems)
    if not unread and totals.get("pairs") is not None and totals["pairs"] != len(values):
        problems.append(f"{manifest.path.name}: totals say {totals['pairs']} pairs, the shards hold {len(values)}")
    listed = manifest.body.get("histogram", {}).get("counts")
    if listed is not None and list(listed) != counts.tolist() and len(values) == totals.get("pairs"):
        problems.append(f"{manifest.path.name}: its covisibility histogram differs from the shards'")
    expected = {k: s.get("pairs", 0) for k, s in manifest.scenes.items() if s.get("pairs")}
    if not problems and expected != dict(scenes):
        differ = sorted(set(expected) ^ set(scenes) | {k for k in expected if expected[k] != scenes.get(k)})
        problems.append(f"{manifest.path.name}: per-scene pair counts differ from the shards' ({', '.join(differ[:5])})")

    sizes = [{"file": s["file"], "pairs": s["rows"] or 0, "row_groups": len(s["row_groups"]),
              "mib": round(s["bytes"] / MIB, 3)} for s in shards]  # fmt: skip
    present = [s for s, f in zip(sizes, shards) if f["rows"] is not None]
    return {
        "pairs_dir": str(pairs_dir),
        "config_hash": manifest.config_hash,
        "totals": {"pairs": len(values), "scenes": len(scenes), "datasets": len(datasets),
                   "shards": len(present), "mib": round(sum(f["bytes"] for f in shards) / MIB, 3)},
        "datasets": datasets,
        "scenes": dict(sorted(scenes.items())),
        "histogram": {"bins": bins.tolist(), "counts": counts.tolist()},
        "shards": sizes,
        "shard_sizes": {"pairs": _summary([s["pairs"] for s in present]),
                        "mib": _summary([s["mib"] for s in present])},
        "problems": problems,
    }  # fmt: skip


def highlight(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """View 1 with its covisible pixels tinted green and the others darkened.

    Parameters
    ----------
    rgb : (H, W, 3) uint8
    mask : (H, W) bool
        True where the pixel is covisible.

    Returns
    -------
    (H, W, 3) uint8
    """
    x = rgb.astype(np.float32)
    tinted = (1.0 - TINT_WEIGHT) * x + TINT_WEIGHT * TINT
    out = np.where(mask[..., None], tinted, DARKEN * x)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _pair_panels(row: dict) -> tuple[list[np.ndarray], float]:
    """The three panels of one pair, and the share of view 1 covisible in view 2."""
    from covisibility.reference import covisible_mask
    from manifests.codecs import decode_depth, decode_rgb

    rgb1, rgb2 = decode_rgb(row["image1"]["bytes"]), decode_rgb(row["image2"]["bytes"])
    d1, d2 = decode_depth(row["depth1"]["bytes"]), decode_depth(row["depth2"]["bytes"])
    K1, K2 = (np.asarray(row[k], np.float64).reshape(3, 3) for k in ("K1", "K2"))
    c1, c2 = (np.asarray(row[k], np.float64).reshape(4, 4) for k in ("cam2world1", "cam2world2"))
    mask = covisible_mask(d1, K1, c1, d2, K2, c2)  # (H, W) bool
    return [rgb1, rgb2, highlight(rgb1, mask)], float(mask.mean())


def _draw_rows(pairs_dir: Path, shards: list[dict], n: int, seed: int) -> list[dict]:
    """``n`` rows drawn at random (seeded) from the readable shards, reading only their row groups."""
    groups = [(s["file"], g, rows) for s in shards if s["rows"] for g, rows in enumerate(s["row_groups"])]
    starts = np.cumsum([0] + [rows for _, _, rows in groups])
    total = int(starts[-1])
    picks = np.random.default_rng(seed).choice(total, size=min(n, total), replace=False)
    where = np.searchsorted(starts, picks, side="right") - 1  # row group of each pick
    wanted: dict[int, list[int]] = {}
    for k, g in enumerate(where):
        wanted.setdefault(int(g), []).append(k)
    out: list[dict | None] = [None] * len(picks)
    files: dict[str, pq.ParquetFile] = {}
    for g, ks in sorted(wanted.items()):
        name, group, _ = groups[g]
        if name not in files:
            files[name] = pq.ParquetFile(pairs_dir / name)
        table = files[name].read_row_group(group, columns=SHEET_COLUMNS)
        taken = table.take(pa.array([int(picks[k] - starts[g]) for k in ks])).to_pylist()
        for k, row in zip(ks, taken):
            out[k] = row
    return out  # type: ignore[return-value]


def contact_sheet(pairs_dir: str | Path, out_png: str | Path, n: int = 8, seed: int = 0) -> dict:
    """Write a PNG of ``n`` random pairs, one row each: view 1, view 2, view 1 highlighted.

    Pairs are drawn without replacement from the readable shards with
    ``numpy.random.default_rng(seed)``; the same folder and seed give the
    same file. Panels are ``width x height`` of the largest image drawn,
    enlarged by an integer factor to at least ``MIN_PANEL`` pixels; each row
    has a ``LABEL_HEIGHT`` strip above it (pair id, covisibility) and ``PAD``
    pixels around. The file is written atomically.

    Returns
    -------
    dict
        ``path``, ``size`` (width, height), ``panel`` (width, height),
        ``scale``, and ``pairs``: ``pair_id``, ``covisibility``,
        ``covis_1in2`` and ``mask_fraction`` (the share of view 1's pixels
        highlighted) for each row, top to bottom.

    Raises
    ------
    OutputError
        No manifest, no readable pair, or the PNG cannot be written.
    """
    from PIL import Image, ImageDraw, ImageFont

    pairs_dir, out_png = Path(pairs_dir), Path(out_png)
    if n < 1:
        raise ValueError(f"a contact sheet needs at least one pair, got {n}")
    shards, _ = _shard_footers(pairs_dir, _read_manifest(pairs_dir))
    rows = _draw_rows(pairs_dir, [s for s in shards if s.get("clean")], n, seed)
    if not rows:
        raise OutputError(f"{pairs_dir}: no readable pair to draw")
    w = max(int(r["width"]) for r in rows)
    h = max(int(r["height"]) for r in rows)
    scale = max(1, math.ceil(MIN_PANEL / max(w, h)))
    pw, ph = w * scale, h * scale
    size = (3 * pw + 4 * PAD, len(rows) * (LABEL_HEIGHT + ph + PAD) + PAD)
    sheet = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    described = []
    for i, row in enumerate(rows):
        panels, fraction = _pair_panels(row)
        top = PAD + i * (LABEL_HEIGHT + ph + PAD)
        label = f"{row['pair_id']}  covis {row['covisibility']:.3f}  (1 in 2: {row['covis_1in2']:.3f})"
        draw.text((PAD, top), label, fill=(0, 0, 0), font=font)
        for j, panel in enumerate(panels):
            image = Image.fromarray(panel)
            if scale > 1:
                image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
            sheet.paste(image, (PAD + j * (pw + PAD), top + LABEL_HEIGHT))
        described.append({"pair_id": row["pair_id"], "covisibility": row["covisibility"],
                          "covis_1in2": row["covis_1in2"], "mask_fraction": fraction})  # fmt: skip
    with atomic_path(out_png) as tmp:
        sheet.save(tmp, format="PNG")
    return {"path": str(out_png), "size": size, "panel": (pw, ph), "scale": scale, "pairs": described}
