"""``pairgen inspect``: statistics of a pairs or samples folder, and a contact sheet of its rows.

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

:func:`samples_statistics` does the same for a samples folder
(``OUT/<shape><N>``, :mod:`manifests.samples`, ``pairgen inspect --samples
star5``): the shards' footers and checksums against
``OUT/<shape><N>.manifest.json``, then the small columns (``view_ids``,
``parents``, ``covis``): each row's N views, a tree rooted at view 1, its
edges in the band and its other pairs under the shape's bound, the
per-dataset and per-scene counts, the histogram of the edges' covisibility
(each view with its parent, by the config's pair rule, as the manifest
counts them); and for samples that name their views, each views file they
name, present and with the SHA-256 they recorded. :func:`samples_contact_sheet`
draws ``n`` seeded random samples, one row each: the N views (view 1 first),
each captioned with its position, view id, parent and the edge's
covisibility, then the sample's N x N matrix as a heat map with its edges
outlined.
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

from manifests.io import OutputError, atomic_path, one_line
from manifests.layout import CONTACT_SHEET, is_safe_name, name_problem, refuse_inside_data
from manifests.manifest import PairsManifest, SamplesManifest, sha256_file
from manifests.options import ConfigError, check, option
from manifests.pairs import META_KEY, PAIRS_SCHEMA, SHARD_GLOB
from manifests.store import local, ranged

__all__ = ["CAPTION_HEIGHT", "EDGE_COLOUR", "HEAT_MARGIN", "LABEL_HEIGHT", "MIN_PANEL", "PAD", "SAMPLE_PANEL", "SheetOptions",
           "contact_sheet", "heat_colours", "highlight", "pairs_statistics", "sample_panel_size",
           "samples_contact_sheet", "samples_sheet_path", "samples_statistics", "sheet_format", "sheet_path"]  # fmt: skip

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

# samples' contact sheet: a row of N views, captions under them, the N x N matrix at the row's end
SAMPLE_PANEL = 160  # larger views are shrunk to this long side (smaller ones enlarged as MIN_PANEL says)
CAPTION_HEIGHT = 26  # two lines of text under each view (and under the heat map)
HEAT_MARGIN = 14  # the heat map's row and column numbers
HEAT_MIN_WIDTH = 150  # the heat map's block, at least as wide as its caption
BAR_WIDTH = 6  # the colour scale beside the heat map
EDGE_COLOUR = (255, 40, 40)  # outline of an edge's two cells
VIRIDIS = np.array([(68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141), (39, 173, 129),
                    (92, 200, 99), (170, 220, 50), (253, 231, 37)], np.float64)  # fmt: skip
SAMPLE_COLUMNS = ["sample_id", "dataset", "scene_id", "shape", "view_ids", "parents", "covis", "views_sha256"]
ROOT_NAMES = {"star": "reference", "chain": "root", "tree": "root"}  # what view 1 is called in a caption

SHEET_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}  # a contact sheet's suffix -> the format written
SHEET_COLUMNS = ["pair_id", "image1", "image2", "depth1", "depth2", "K1", "K2", "cam2world1", "cam2world2",
                 "covis_1in2", "covisibility", "width", "height"]  # fmt: skip


@dataclass(frozen=True)
class SheetOptions:
    """Which pairs the contact sheet shows."""

    pairs: int = option(8, min=1, max=1000, metavar="N",
                        help="pairs (rows) on the contact sheet; with --samples, samples (rows)")
    seed: int = option(0, min=0, max=2**32 - 1, help="seed of the pairs drawn for the sheet")

    def __post_init__(self) -> None:
        check(self)


def sheet_format(path: str | Path) -> str:
    """The format a contact sheet at ``path`` is written in, named by its suffix (:data:`SHEET_FORMATS`).

    Raises
    ------
    ConfigError
        Another suffix (field ``sheet``: ``pairgen inspect --sheet``, exit status 2).
    """
    found = SHEET_FORMATS.get(Path(path).suffix.lower())
    if found is None:
        raise ConfigError("sheet", f"{path}: a contact sheet is a .png, .jpg or .jpeg file (the suffix names the "
                                   f"format written), not {Path(path).suffix or 'a name without a suffix'!r}")  # fmt: skip
    return found


def sheet_path(given: str | Path | None, default: Path) -> Path:
    """Where ``pairgen inspect`` writes its sheet: ``default`` when ``given`` is None, else ``given``, a file whose
    suffix names a format (:func:`sheet_format`).

    Raises
    ------
    ConfigError
        ``given`` is a folder (refused, not filled with a default name: ``--sheet OUT/pairs`` would put an image
        into a data folder, which holds Parquet only), or its suffix names no format.
    OutputError
        ``given`` lies in a data folder or the state folder (:func:`manifests.layout.refuse_inside_data`).
    """
    path = default if given is None else Path(given)
    if path.is_dir():
        raise ConfigError("sheet", f"{path}: is a folder, not a file; give the contact sheet's file name, ending in "
                                   f".png, .jpg or .jpeg (default {default})")  # fmt: skip
    sheet_format(path)
    refuse_inside_data(path, "the contact sheet")
    return path


def _per_dataset(scenes: Counter, items: str) -> dict[str, dict]:
    """``{dataset: {items: count, "scenes": count}}`` from each scene key's (``dataset/scene_id``) item count."""
    datasets: dict[str, dict] = {}
    for key, n in sorted(scenes.items()):
        d = datasets.setdefault(key.split("/", 1)[0], {items: 0, "scenes": 0})
        d[items] += n
        d["scenes"] += 1
    return datasets


def _read_manifest(pairs_dir: Path) -> PairsManifest:
    if not PairsManifest.exists(pairs_dir):
        raise OutputError(f"{PairsManifest.path_in(pairs_dir)}: not found; run `pairgen filter --out {pairs_dir.parent}` first")
    return PairsManifest.read(pairs_dir)


def _shard_footers(pairs_dir: Path, manifest: PairsManifest, count: str = "pairs", schema: pa.Schema = PAIRS_SCHEMA,
                   footer=None) -> tuple[list[dict], list[str]]:  # fmt: skip
    """Each manifest shard with what its footer says; and the problems found.

    Returns ``[{file, <count> (manifest), rows (footer, None when unreadable),
    row_groups: [rows per group], bytes}]`` in manifest order. ``count`` names
    what a row is (``pairs``, ``samples``: the manifest entries' key),
    ``schema`` the columns a shard must have, ``footer`` (optional) more checks
    of the footer's ``pairgen`` metadata (``written -> [problem]``).
    """
    problems: list[str] = []
    shards: list[dict] = []
    config_hash = manifest.config_hash
    listed = set()
    for entry in manifest.shards:
        name = Path(str(entry.get("file", ""))).name  # manifests are data: never follow a path out of the folder
        listed.add(name)
        path = pairs_dir / name
        shard = {"file": name, count: int(entry.get(count, 0)), "rows": None, "row_groups": [], "bytes": 0}
        shards.append(shard)
        before = len(problems)
        if not path.is_file():
            problems.append(manifest.missing_shard(name, f" ({shard[count]} {count})"))
            continue
        shard["bytes"] = path.stat().st_size
        try:
            meta = pq.ParquetFile(ranged(path)).metadata
        except (OSError, pa.ArrowException) as e:
            problems.append(f"{name}: not a readable Parquet file, truncated or damaged ({one_line(e)})")
            continue
        changed = manifest.verify_shard(entry, path)
        if changed:
            problems.append(changed)
        shard["rows"] = meta.num_rows
        shard["row_groups"] = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        if meta.num_rows != shard[count]:
            problems.append(f"{name}: {meta.num_rows} rows, the manifest says {shard[count]} {count}")
        try:
            written = json.loads((meta.metadata or {}).get(META_KEY.encode(), b"{}"))
        except ValueError:
            written = {}
        if not isinstance(written, dict):  # the footer's metadata is data too
            written = {}
        if written.get("config_hash") != config_hash:
            problems.append(f"{name}: written with config {written.get('config_hash')}, "
                            f"the manifest's is {config_hash}")  # fmt: skip
        if footer is not None:
            problems += [f"{name}: {p}" for p in footer(written)]
        arrow = meta.schema.to_arrow_schema()
        for field in schema:
            if field.name not in arrow.names or not arrow.field(field.name).type.equals(field.type):
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
        problems.append(f"{manifest.path.name}: not marked complete: {manifest.why_incomplete()}")
    bins = np.asarray(manifest.body.get("histogram", {}).get("bins") or DEFAULT_BINS, np.float64)

    scenes: Counter[str] = Counter()
    covis: list[np.ndarray] = []
    for shard in shards:
        if shard["rows"] is None:
            continue
        path = pairs_dir / shard["file"]
        try:
            table = pq.read_table(local(path), columns=["dataset", "scene_id", "covisibility"])
        except (OSError, pa.ArrowException) as e:
            problems.append(f"{shard['file']}: columns cannot be read ({one_line(e)})")
            continue
        keys = [f"{d}/{s}" for d, s in zip(table.column("dataset").to_pylist(), table.column("scene_id").to_pylist())]
        scenes.update(keys)
        covis.append(table.column("covisibility").to_numpy().astype(np.float64))
    values = np.concatenate(covis) if covis else np.zeros(0)
    counts, _ = np.histogram(values, bins=bins)
    datasets = _per_dataset(scenes, "pairs")

    unread = any(shard["rows"] is None for shard in shards) or any("cannot be read" in p for p in problems)
    _against_manifest(manifest, problems, unread, "pairs", "pair", len(values), counts, scenes,
                      "its covisibility histogram")  # fmt: skip
    sizes, present = _shard_sizes(shards, "pairs")
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


def _draw_rows(pairs_dir: Path, shards: list[dict], n: int, seed: int, columns: list[str] = SHEET_COLUMNS) -> list[dict]:
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
            files[name] = pq.ParquetFile(local(pairs_dir / name))
        table = files[name].read_row_group(group, columns=columns)
        taken = table.take(pa.array([int(picks[k] - starts[g]) for k in ks])).to_pylist()
        for k, row in zip(ks, taken):
            out[k] = row
    return out  # type: ignore[return-value]


def contact_sheet(pairs_dir: str | Path, out_png: str | Path, n: int = 8, seed: int = 0) -> dict:
    """Write an image of ``n`` random pairs, one row each: view 1, view 2, view 1 highlighted.

    PNG or JPEG, as ``out_png``'s suffix says (:func:`sheet_format`: a
    ``ConfigError`` for another, before any work).

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
        No manifest, no readable pair, or the image cannot be written.
    """
    from PIL import Image, ImageDraw, ImageFont

    pairs_dir, out_png = Path(pairs_dir), Path(out_png)
    image_format = sheet_format(out_png)  # before any work: a suffix that names no format is refused
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
        sheet.save(tmp, format=image_format, **({"quality": 95} if image_format == "JPEG" else {}))
    return {"path": str(out_png), "size": size, "panel": (pw, ph), "scale": scale, "pairs": described}


# -- samples of N views (OUT/<shape><N>, manifests.samples) ---------------------------------------------------


def samples_sheet_path(out_dir: str | Path, folder: str) -> Path:
    """``OUT/contact_sheet_<folder>.png``: where ``pairgen inspect --samples <folder>`` puts its sheet by default
    (beside the data folders, which hold Parquet only)."""
    stem, _, suffix = CONTACT_SHEET.rpartition(".")
    return Path(out_dir) / f"{stem}_{folder}.{suffix}"


def _read_samples_manifest(samples_dir: Path) -> SamplesManifest:
    if not is_safe_name(samples_dir.name) or not SamplesManifest.exists(samples_dir):
        raise OutputError(f"{SamplesManifest.path_in(samples_dir)}: not found; run `pairgen filter --views N --shape "
                          f"S --out {samples_dir.parent}` first (it writes OUT/<shape><N>: star5, tree12, ...)")  # fmt: skip
    return SamplesManifest.read(samples_dir)


def _samples_setup(manifest: SamplesManifest) -> dict:
    """What the manifest's config says a row is: shape, views a sample, embedded, pair rule, band, bound."""
    config = manifest.config

    def number(key: str, default: float) -> float:
        value = config.get(key, default)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default

    views = config.get("views")
    shape = config.get("shape")
    return {"shape": shape if isinstance(shape, str) else "?",
            "views": views if isinstance(views, int) and not isinstance(views, bool) and views >= 2 else None,
            "embedded": config.get("embed") is True,
            "rule": config.get("rule") if config.get("rule") in ("min", "mean") else "min",
            "band": (number("min_covis", 0.0), number("max_covis", 1.0)),
            "cap": number("cap", number("min_covis", 0.0))}  # fmt: skip


def _samples_footer(setup: dict):
    """Checks of a samples shard's footer metadata against the manifest's config."""
    from manifests.samples import SAMPLES_FORMAT

    def check_footer(written: dict) -> list[str]:
        problems = []
        if written.get("format") != SAMPLES_FORMAT:
            problems.append(f"format {written.get('format')!r}, not a samples shard ({SAMPLES_FORMAT!r})")
        said = (written.get("shape"), written.get("views"), written.get("embedded"))
        if said != (setup["shape"], setup["views"], setup["embedded"]):
            problems.append(f"written as {said[0]} of {said[1]} views (embedded {said[2]}), the manifest's config is "
                            f"{setup['shape']} of {setup['views']} (embedded {setup['embedded']})")  # fmt: skip
        return problems

    return check_footer


def _list_matrix(column: pa.ChunkedArray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A list column as (rows whose list has ``width`` values: bool mask, (good rows, width) float64 values)."""
    import pyarrow.compute as pc

    array = column.combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(array), -1).to_numpy(zero_copy_only=False)
    good = lengths == width
    values = array.filter(pa.array(good)).flatten().to_numpy(zero_copy_only=False)
    return good, np.asarray(values, np.float64).reshape(-1, width)


def _sample_values(table: pa.Table, n: int, setup: dict) -> tuple[dict, list[tuple[str, str]]]:
    """The checked rows of one shard's small columns: their edges' and other pairs' covisibility by the rule.

    Returns ``({keys, edges, others}, [(sample_id, why)])``: ``keys`` each good row's scene key,
    ``edges`` (good rows, N - 1) and ``others`` (values of the pairs that are not edges) float32; a row is
    good when its lists hold N views, its parents a tree rooted at view 1 and its matrix finite values (the
    band and bound are checked on good rows, and reported, not dropped).
    """
    from covisibility.measures import combine_directions

    ids = table.column("sample_id").to_pylist()
    good_v, _ = _list_matrix(table.column("view_ids"), n)
    good_p, parents = _list_matrix(table.column("parents"), n)
    good_c, covis = _list_matrix(table.column("covis"), n * n)
    good = good_v & good_p & good_c
    bad: list[tuple[str, str]] = [(str(ids[i]), f"its view_ids, parents and covis are not of {n} views")
                                  for i in np.flatnonzero(~good)]  # fmt: skip
    parents = parents[good[good_p]]
    covis = covis[good[good_c]].astype(np.float32).reshape(-1, n, n)
    rows = np.flatnonzero(good)
    k = np.arange(n)
    tree = (parents[:, 0] == -1) & np.all((parents[:, 1:] >= 0) & (parents[:, 1:] < k[1:]), axis=1)
    tree &= np.isfinite(covis).all(axis=(1, 2))
    bad += [(str(ids[rows[i]]), "its parents are not a tree rooted at view 1 (each view's parent an earlier view), "
             "or its matrix holds a non-finite value") for i in np.flatnonzero(~tree)]  # fmt: skip
    rows, parents, covis = rows[tree], parents[tree].astype(np.int64), covis[tree]
    r = np.arange(len(rows))[:, None]
    child, parent = np.broadcast_to(k[1:], parents[:, 1:].shape), parents[:, 1:]
    edges = np.asarray(combine_directions(covis[r, child, parent], covis[r, parent, child], setup["rule"]), np.float32)
    is_edge = np.zeros(covis.shape, bool)
    is_edge[r, child, parent] = is_edge[r, parent, child] = True
    iu, ju = np.triu_indices(n, 1)
    pairs = np.asarray(combine_directions(covis[:, iu, ju], covis[:, ju, iu], setup["rule"]), np.float32)
    others_mask = ~is_edge[:, iu, ju]
    lo, hi = setup["band"]
    tol = 1e-6
    out_of_band = ((edges < lo - tol) | (edges > hi + tol)).any(axis=1)
    bound = hi if setup["shape"] in ("star", "pair") else setup["cap"]
    too_high = (pairs > bound + tol) if setup["shape"] in ("star", "pair") else (pairs >= bound + tol)
    over = (too_high & others_mask).any(axis=1)
    for i in np.flatnonzero(out_of_band):
        bad.append((str(ids[rows[i]]), f"an edge's covisibility {edges[i].min():.3f}-{edges[i].max():.3f} is outside "
                                       f"the band [{lo}, {hi}]"))  # fmt: skip
    for i in np.flatnonzero(over & ~out_of_band):
        bad.append((str(ids[rows[i]]), f"two views that are not an edge overlap {pairs[i][others_mask[i]].max():.3f}, "
                                       f"above the {setup['shape']}'s bound {bound}"))  # fmt: skip
    datasets, scenes = table.column("dataset").to_pylist(), table.column("scene_id").to_pylist()
    return {"keys": [f"{datasets[i]}/{scenes[i]}" for i in rows], "edges": edges,
            "others": pairs[others_mask]}, bad  # fmt: skip


def _views_problems(samples_dir: Path, named: dict[tuple[str, str], Counter], again: str) -> tuple[dict, list[str]]:
    """The views files that referenced samples name: present, and the file the samples were drawn from."""
    views_dir = samples_dir.parent / "views"
    problems, missing, changed = [], [], []
    for (dataset, scene_id), digests in sorted(named.items()):
        scene = f"{dataset}/{scene_id}"
        samples = sum(digests.values())
        if (problem := name_problem(dataset, "dataset") or name_problem(scene_id, "scene id")) is not None:
            problems.append(f"{samples} samples name scene {scene!r}: {problem}")
            continue
        path = views_dir / dataset / f"{scene_id}.parquet"
        shown = path.relative_to(samples_dir.parent).as_posix()
        if not path.is_file():
            missing.append(shown)
            problems.append(f"{shown}: missing: the views file of scene {scene}, which {samples} samples name")
            continue
        digest = sha256_file(path)
        stale = {d: c for d, c in digests.items() if d != digest}
        if stale:
            changed.append(shown)
            recorded = ", ".join(f"{str(d)[:12]}..." for d in stale)
            problems.append(f"{shown}: changed since its samples were drawn (SHA-256 {digest[:12]}..., "
                            f"{sum(stale.values())} samples name {recorded}): scene {scene}; run {again} again")  # fmt: skip
    return {"referenced": True, "files": len(named), "missing": missing, "changed": changed}, problems


def samples_statistics(samples_dir: str | Path) -> dict:
    """Statistics of a samples folder (``OUT/<shape><N>``), verified against its shards and the views they name.

    Returns
    -------
    dict
        ``samples_dir``, ``folder``, ``config_hash``, ``shape``,
        ``views_per_sample``, ``embedded``, ``rule``, ``band``; ``totals``
        (``samples``, ``scenes``, ``datasets``, ``shards``, ``mib``,
        ``edges``) counted in the readable shards; ``datasets`` (name ->
        ``{samples, scenes}``); ``scenes`` (key -> samples); ``histogram``
        (``bins``, ``counts``) of the edges' covisibility (each view with
        its parent, by the pair rule); ``edges`` and ``others`` (``count``,
        ``min``, ``median``, ``max`` of the edges' and of the other pairs'
        covisibility); ``views`` (``referenced``, ``files`` named,
        ``missing``, ``changed``: the views files, relative to ``OUT``);
        ``shards``, ``shard_sizes``; ``problems``, one line each naming the
        shard or views file, empty when everything agrees.

    Raises
    ------
    OutputError
        No samples manifest (run ``pairgen filter --views N --shape S``), or an unreadable one.
    """
    from manifests.samples import samples_schema

    samples_dir = Path(samples_dir)
    manifest = _read_samples_manifest(samples_dir)
    setup = _samples_setup(manifest)
    n = setup["views"]
    shards, problems = _shard_footers(samples_dir, manifest, "samples", samples_schema(setup["embedded"]),
                                      _samples_footer(setup))  # fmt: skip
    if n is None:
        problems.append(f"{manifest.path.name}: its config names no number of views a sample (views)")
    if not manifest.complete:
        problems.append(f"{manifest.path.name}: not marked complete: {manifest.why_incomplete()}")
    bins = np.asarray(manifest.body.get("histogram", {}).get("bins") or DEFAULT_BINS, np.float64)

    scenes: Counter[str] = Counter()
    edges: list[np.ndarray] = []
    others: list[np.ndarray] = []
    named: dict[tuple[str, str], Counter] = {}
    rows_read = 0
    unread = any(shard["rows"] is None for shard in shards) or n is None
    for shard in shards:
        if shard["rows"] is None or n is None:
            continue
        try:
            table = pq.read_table(local(samples_dir / shard["file"]), columns=SAMPLE_COLUMNS)
            values, bad = _sample_values(table, n, setup)
        except (OSError, pa.ArrowException, ValueError, TypeError, KeyError, IndexError) as e:
            problems.append(f"{shard['file']}: columns cannot be read ({one_line(e)})")
            shard["clean"], unread = False, True
            continue
        rows_read += table.num_rows
        if bad:
            shard["clean"] = False
            problems.append(f"{shard['file']}: {len(bad)} sample(s) break the {setup['shape']}'s rules "
                            f"(first: {bad[0][0]}: {bad[0][1]})")  # fmt: skip
        scenes.update(values["keys"])
        edges.append(values["edges"].ravel())
        others.append(values["others"])
        if not setup["embedded"]:
            for d, s, digest in zip(*(table.column(c).to_pylist() for c in ("dataset", "scene_id", "views_sha256"))):
                named.setdefault((str(d), str(s)), Counter())[digest] += 1
    edge_values = np.concatenate(edges).astype(np.float64) if edges else np.zeros(0)
    other_values = np.concatenate(others).astype(np.float64) if others else np.zeros(0)
    counts, _ = np.histogram(edge_values, bins=bins)
    datasets = _per_dataset(scenes, "samples")

    if setup["embedded"]:
        views = {"referenced": False, "files": 0, "missing": [], "changed": []}
    else:
        again = (f"`pairgen filter --views {n} --shape {setup['shape']}` (with the config of "
                 f"{manifest.path.name})")  # fmt: skip
        views, missing = _views_problems(samples_dir, named, again)
        problems += missing

    total = sum(scenes.values())
    _against_manifest(manifest, problems, unread, "samples", "sample", rows_read, counts, scenes,
                      "its histogram of the edges' covisibility", total=total)  # fmt: skip
    sizes, present = _shard_sizes(shards, "samples")
    return {
        "samples_dir": str(samples_dir),
        "folder": samples_dir.name,
        "config_hash": manifest.config_hash,
        "shape": setup["shape"],
        "views_per_sample": n,
        "embedded": setup["embedded"],
        "rule": setup["rule"],
        "band": list(setup["band"]),
        "totals": {"samples": total, "scenes": len(scenes), "datasets": len(datasets), "shards": len(present),
                   "mib": round(sum(f["bytes"] for f in shards) / MIB, 3), "edges": len(edge_values)},
        "datasets": datasets,
        "scenes": dict(sorted(scenes.items())),
        "histogram": {"bins": bins.tolist(), "counts": counts.tolist()},
        "edges": {"count": len(edge_values), **_summary(edge_values.tolist())},
        "others": {"count": len(other_values), **_summary(other_values.tolist())},
        "views": views,
        "shards": sizes,
        "shard_sizes": {"samples": _summary([s["samples"] for s in present]),
                        "mib": _summary([s["mib"] for s in present])},
        "problems": problems,
    }  # fmt: skip


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Colours of covisibilities in [0, 1] (viridis: dark purple 0, yellow 1): (..., 3) uint8; NaN grey."""
    v = np.asarray(values, np.float64)
    x = np.clip(np.nan_to_num(v, nan=0.0), 0.0, 1.0) * (len(VIRIDIS) - 1)
    i = np.minimum(np.floor(x).astype(int), len(VIRIDIS) - 2)
    t = (x - i)[..., None]
    out = np.rint((1 - t) * VIRIDIS[i] + t * VIRIDIS[i + 1]).astype(np.uint8)
    out[np.isnan(v)] = (160, 160, 160)
    return out


def sample_panel_size(width: int, height: int) -> tuple[int, int]:
    """A view's panel on the samples' sheet: small views enlarged by an integer factor to at least ``MIN_PANEL``,
    large ones shrunk to ``SAMPLE_PANEL`` on their long side (aspect kept)."""
    long = max(width, height)
    if long <= MIN_PANEL:
        scale = max(1, math.ceil(MIN_PANEL / long))
        return width * scale, height * scale
    if long <= SAMPLE_PANEL:
        return width, height
    return max(1, round(width * SAMPLE_PANEL / long)), max(1, round(height * SAMPLE_PANEL / long))


def _sheet_font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError, ImportError):  # no FreeType: the bitmap font, one size
        return ImageFont.load_default()


def _fit(draw, text: str, font, width: int) -> str:
    """``text``, cut with ``...`` to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _short(value: float) -> str:
    """A covisibility in a heat map cell: ``.45``, ``1.0``."""
    text = f"{value:.2f}"
    return text[1:] if text.startswith("0.") else f"{value:.1f}"


def _sample_images(row: dict, lookup) -> list[np.ndarray]:
    """The sample's views as (H, W, 3) uint8, in its order: from the row (embedded) or its views file."""
    from manifests.codecs import decode_rgb

    if "images" in row:
        return [decode_rgb(image["bytes"]) for image in row["images"]]
    views = lookup.get(row["dataset"], row["scene_id"], row["views_sha256"])
    scene = f"{row['dataset']}/{row['scene_id']}"
    return [decode_rgb(views.image_bytes(views.row(v, scene))) for v in row["view_ids"]]


def _draw_heat(draw, sheet, m: np.ndarray, parents: list[int], x: int, y: int, cell: int, tiny) -> None:
    """The N x N matrix with its numbers in the block at (x, y): row and column numbers, coloured cells (values when
    they fit), each edge's two cells outlined, the colour scale at its right."""
    from PIL import Image

    n = len(m)
    gx, gy = x + HEAT_MARGIN, y + HEAT_MARGIN
    colours = heat_colours(m)
    image = Image.fromarray(np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1))
    sheet.paste(image, (gx, gy))
    numbers = cell >= 6 * len(str(n))
    for i in range(n):
        if numbers:
            label = str(i + 1)
            w = draw.textlength(label, font=tiny)
            draw.text((gx + i * cell + (cell - w) / 2, y + 2), label, fill=(0, 0, 0), font=tiny)
            draw.text((x + HEAT_MARGIN - 2 - w, gy + i * cell + (cell - 9) / 2), label, fill=(0, 0, 0), font=tiny)
        if cell >= 22:
            for j in range(n):
                text = _short(float(m[i, j]))
                light = int(colours[i, j].astype(int).sum()) > 3 * 140
                w = draw.textlength(text, font=tiny)
                draw.text((gx + j * cell + (cell - w) / 2, gy + i * cell + (cell - 10) / 2), text,
                          fill=(0, 0, 0) if light else (255, 255, 255), font=tiny)  # fmt: skip
    if cell >= 4:
        line = 2 if cell >= 10 else 1
        for k, p in enumerate(parents):
            if p < 0:
                continue
            for a, b in ((k, p), (p, k)):
                draw.rectangle((gx + b * cell, gy + a * cell, gx + (b + 1) * cell - 1, gy + (a + 1) * cell - 1),
                               outline=EDGE_COLOUR, width=line)  # fmt: skip
    bx, height = gx + n * cell + 4, n * cell
    ramp = heat_colours(np.linspace(1.0, 0.0, max(height, 2)))[:, None, :]
    sheet.paste(Image.fromarray(np.repeat(ramp, BAR_WIDTH, axis=1)), (bx, gy))
    draw.text((bx + BAR_WIDTH + 2, gy - 2), "1", fill=(0, 0, 0), font=tiny)
    draw.text((bx + BAR_WIDTH + 2, gy + height - 10), "0", fill=(0, 0, 0), font=tiny)


def samples_contact_sheet(samples_dir: str | Path, out_png: str | Path, n: int = 8, seed: int = 0) -> dict:
    """Write an image of ``n`` random samples, one row each: the N views (view 1 first), then the N x N matrix.

    PNG or JPEG, as ``out_png``'s suffix says (:func:`sheet_format`).

    Samples are drawn without replacement from the readable shards with
    ``numpy.random.default_rng(seed)`` (the same folder and seed, the same
    file). A row has a ``LABEL_HEIGHT`` strip above it (sample id, shape,
    the range of its edges' covisibility), its views as panels
    (:func:`sample_panel_size`), each with two caption lines under it
    (``k: view <id>`` and ``reference``/``root`` for view 1; ``parent p:
    covis c``, the edge's covisibility by the pair rule, for the others;
    view 1's second line is its valid depth fraction, the matrix's
    diagonal), and at its end the matrix ``covis[i, j]`` (share of view i's
    pixels seen in view j) as a heat map (:func:`heat_colours`: rows and
    columns numbered as the captions, values written when the cells are
    large enough, each edge's two cells outlined in red) with its colour
    scale. Referenced samples are resolved through their views files (checked
    against their SHA-256); a sample whose views cannot be used is left out
    and listed in ``skipped``. The file is written atomically.

    Returns
    -------
    dict
        ``path``, ``size`` (width, height), ``panel`` (width, height),
        ``cell`` (the heat map's cell, pixels), ``heat_x`` (where the
        matrix's first column starts), ``row_height``, ``samples`` (per
        row, top to bottom: ``sample_id``, ``view_ids``, ``parents``,
        ``edges``, ``top``: the y of its panels) and ``skipped``
        (``sample_id``, ``reason``).

    Raises
    ------
    OutputError
        No manifest, no sample that can be drawn, or the image cannot be written.
    """
    from PIL import Image, ImageDraw

    from covisibility.measures import combine_directions
    from manifests.samples import SampleError, ViewsLookup, samples_schema

    samples_dir, out_png = Path(samples_dir), Path(out_png)
    image_format = sheet_format(out_png)  # before any work: a suffix that names no format is refused
    if n < 1:
        raise ValueError(f"a contact sheet needs at least one sample, got {n}")
    manifest = _read_samples_manifest(samples_dir)
    setup = _samples_setup(manifest)
    shards, _ = _shard_footers(samples_dir, manifest, "samples", samples_schema(setup["embedded"]),
                               _samples_footer(setup))  # fmt: skip
    columns = SAMPLE_COLUMNS + ["width", "height"] + (["images"] if setup["embedded"] else [])
    drawn = _draw_rows(samples_dir, [s for s in shards if s.get("clean")], n, seed, columns)
    lookup = ViewsLookup(samples_dir.parent / "views", keep=8, columns=("image",))
    rows, skipped = [], []
    for row in drawn:
        try:
            k = len(row["view_ids"])
            m = np.asarray(row["covis"], np.float32).reshape(k, k)
            parents = [int(p) for p in row["parents"]]
            if len(parents) != k or parents[0] != -1 or any(not 0 <= p < i for i, p in enumerate(parents) if i):
                raise ValueError("its parents are not a tree rooted at view 1")
            images = _sample_images(row, lookup)
        except (SampleError, ValueError, TypeError, KeyError, OSError) as e:
            skipped.append({"sample_id": row.get("sample_id"), "reason": one_line(e)})
            continue
        edges = [float(combine_directions(m[i, p], m[p, i], setup["rule"])) if p >= 0 else None
                 for i, p in enumerate(parents)]  # fmt: skip
        rows.append((row, m, parents, edges, images))
    if not rows:
        why = f" ({skipped[0]['sample_id']}: {skipped[0]['reason']})" if skipped else ""
        raise OutputError(f"{samples_dir}: no sample that can be drawn{why}")

    width = max(int(im.shape[1]) for r in rows for im in r[4])
    height = max(int(im.shape[0]) for r in rows for im in r[4])
    pw, ph = sample_panel_size(width, height)
    views = max(len(r[1]) for r in rows)
    factor = pw / width  # every view scaled alike (one size in a folder; the largest sets it otherwise)
    cell = max(1, (max(ph, 4 * 12) - HEAT_MARGIN) // views)
    heat_w = max(HEAT_MIN_WIDTH, HEAT_MARGIN + views * cell + 4 + BAR_WIDTH + 10)
    body = max(ph, HEAT_MARGIN + views * cell)
    row_h = LABEL_HEIGHT + body + CAPTION_HEIGHT + PAD
    block_x = PAD + views * (pw + PAD) + PAD  # the heat map's block: numbers, matrix, colour scale, caption
    heat_x = block_x + HEAT_MARGIN
    size = (block_x + heat_w + PAD, len(rows) * row_h + PAD)
    sheet = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font, tiny = _sheet_font(11), _sheet_font(9)
    described = []
    for r, (row, m, parents, edges, images) in enumerate(rows):
        top = PAD + r * row_h
        k = len(m)
        known = [e for e in edges if e is not None]
        span = (f"edge {known[0]:.2f}" if len(known) == 1
                else f"edges {min(known):.2f}-{max(known):.2f}" if known else "")  # fmt: skip
        label = f"{row['sample_id']}   {row['shape']} of {k} views   {span}"
        draw.text((PAD, top), _fit(draw, label, font, size[0] - 2 * PAD), fill=(0, 0, 0), font=font)
        y = top + LABEL_HEIGHT
        for i, rgb in enumerate(images):
            image = Image.fromarray(rgb)
            if factor != 1:
                fit = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
                image = image.resize(fit, Image.Resampling.NEAREST if factor > 1 else Image.Resampling.LANCZOS)
            x = PAD + i * (pw + PAD)
            sheet.paste(image, (x, y))
            first = f"{i + 1}: view {row['view_ids'][i]}"
            if i == 0 and ROOT_NAMES.get(row["shape"]):
                first += f" ({ROOT_NAMES[row['shape']]})"
            second = f"valid depth {m[0, 0]:.2f}" if i == 0 else f"parent {parents[i] + 1}: covis {edges[i]:.2f}"
            draw.text((x, y + body + 1), _fit(draw, first, font, pw), fill=(0, 0, 0), font=font)
            draw.text((x, y + body + 13), _fit(draw, second, font, pw), fill=(70, 70, 70), font=font)
        _draw_heat(draw, sheet, m, parents, block_x, y, cell, tiny)
        draw.text((block_x, y + body + 1), "covis: row i seen in column j", fill=(0, 0, 0), font=tiny)
        draw.text((block_x, y + body + 13), "red: edges; diagonal: valid", fill=(70, 70, 70), font=tiny)
        described.append({"sample_id": row["sample_id"], "view_ids": list(row["view_ids"]), "parents": parents,
                          "edges": [e for e in edges if e is not None], "top": y})  # fmt: skip
    with atomic_path(out_png) as tmp:
        sheet.save(tmp, format=image_format, **({"quality": 95} if image_format == "JPEG" else {}))
    return {"path": str(out_png), "size": size, "panel": (pw, ph), "cell": cell, "heat_x": heat_x,
            "row_height": row_h, "samples": described, "skipped": skipped}  # fmt: skip


def _against_manifest(manifest, problems: list[str], unread: bool, items: str, item: str, rows: int,
                      counts: np.ndarray, scenes, histogram: str, total: int | None = None) -> None:  # fmt: skip
    """The manifest's totals, histogram and per-scene counts against what the shards hold (``items`` a row)."""
    totals = manifest.body.get("totals", {})
    total = rows if total is None else total
    if not unread and totals.get(items) is not None and totals[items] != rows:
        problems.append(f"{manifest.path.name}: totals say {totals[items]} {items}, the shards hold {rows}")
    listed = manifest.body.get("histogram", {}).get("counts")
    if listed is not None and list(listed) != counts.tolist() and total == totals.get(items):
        problems.append(f"{manifest.path.name}: {histogram} differs from the shards'")
    expected = {k: s.get(items, 0) for k, s in manifest.scenes.items() if s.get(items)}
    if not problems and expected != dict(scenes):
        differ = sorted(set(expected) ^ set(scenes) | {k for k in expected if expected[k] != scenes.get(k)})
        problems.append(f"{manifest.path.name}: per-scene {item} counts differ from the shards' ({', '.join(differ[:5])})")


def _shard_sizes(shards: list[dict], items: str) -> tuple[list[dict], list[dict]]:
    """Each shard's rows, row groups and MiB; and those of the shards that could be read."""
    sizes = [{"file": s["file"], items: s["rows"] or 0, "row_groups": len(s["row_groups"]),
              "mib": round(s["bytes"] / MIB, 3)} for s in shards]  # fmt: skip
    return sizes, [s for s, f in zip(sizes, shards) if f["rows"] is not None]

