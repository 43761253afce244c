"""``pairgen filter --views N --shape S``: samples of N views with controlled overlap, into ``OUT/<shape><N>/``.

The filter's lifecycle (:class:`pairgen.filter.FilterStage`: views manifest
in, one unit a scene, selections cached, block-interleaved shards, manifest,
card); only the unit and the rows differ:

1. per scene (:func:`select_scene_samples`, never raises): the views file
   checked as the filter checks it, then :func:`covisibility.samples.grow_samples`
   (candidate edges from the surface-cell index, exact values by the
   configured measure) keeps up to ``samples_per_scene`` samples, each with
   its directed N x N covisibility matrix and its parents;
2. in the driver: the shards of :mod:`manifests.samples`, rows that name
   their views (``views_sha256`` recorded) or, with ``--embed``, carry them.

``pairgen filter`` with the defaults (``--views 2 --shape pair``, not
embedded) is today's filter into ``OUT/pairs``; any other choice writes
``OUT/<shape><N>`` (``star5``, ``chain8``, ``tree12``, ``pair2``), so stars
and trees of one views folder live side by side.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from manifests.io import OutputError, path_inside
from manifests.manifest import SamplesManifest, sha256_file
from manifests.options import ConfigError, check, option, with_flags
from manifests.samples import SHAPES, sample_id, samples_metadata, samples_schema
from manifests.views import read_views
from pairgen.filter import (
    FilterConfig,
    FilterStage,
    PairsConfig,
    ScenePairs,
    ShardRows,
    checked_views,
    choose_pairs,
    views_rng,
)
from pairgen.stage import StageSummary, UnitResult, run_unit

__all__ = ["ChosenSample", "SampleOptions", "SamplesConfig", "SamplesStage", "SceneSamples", "select_scene_samples"]


def _rules() -> tuple[str, ...]:
    from covisibility.measures import PAIR_RULES

    return PAIR_RULES


@dataclass(frozen=True)
class SampleOptions:
    """What a sample is: how many views, which shape, the cap of non-edges, the pair rule, references or bytes.

    The defaults are a pair, stored as ``filter`` stores pairs today.
    """

    views: int = option(2, min=2, max=64, metavar="N", help="views a sample (2: pairs)")
    shape: str = option("pair", choices=SHAPES,
                        help="pair (2 views, an edge); star (view 1 has an edge to every other view, the others "
                             "overlap at most --max-covis); chain (view k has an edge to view k-1, overlaps every "
                             "earlier view less than --cap); tree (view k has an edge to one earlier view, its parent, "
                             "and overlaps every other earlier view less than --cap); an edge: covisibility in "
                             "[--min-covis, --max-covis]")  # fmt: skip
    cap: float | None = option(None, min=0, max=1,
                               help="what a chain's or tree's views overlap every earlier view but their own edge by, "
                                    "less than (default: --min-covis, MV-DUSt3R+'s rule)")  # fmt: skip
    rule: str = option("min", choices=_rules,
                       help="how a pair's two directions make its covisibility for the shapes' tests: min (ours, as "
                            "pairs) or mean (MV-DUSt3R+'s)")  # fmt: skip
    embed: bool = option(False, help="samples of more than 2 views: copy every view's bytes and camera into each "
                                     "row (one file carries everything) instead of naming the views (the views files "
                                     "hold each view once); pairs are embedded unless --reference")  # fmt: skip
    reference: bool = option(False, help="pairs: name the two views instead of copying them (OUT/pair2, the samples' "
                                         "format), as samples of more views do by default")  # fmt: skip

    def __post_init__(self) -> None:
        check(self)
        if self.shape == "pair" and self.views != 2:
            raise ConfigError("views", f"a pair has 2 views, not {self.views}; pass --shape star, chain or tree",
                              related=("shape",))  # fmt: skip
        if self.embed and self.reference:
            raise ConfigError("reference", "and embed exclude each other", related=("embed",))
        if self.shape == "pair" and self.rule != "min":
            raise ConfigError("rule", f"{self.rule} applies to samples of more views: pairs are chosen by the min of "
                              "both directions", related=("shape",))  # fmt: skip

    @property
    def is_pairs(self) -> bool:
        """Today's pairs: ``OUT/pairs``, each pair's views copied into its row (:mod:`manifests.pairs`)."""
        return self.shape == "pair" and not self.reference

    @property
    def embedded(self) -> bool:
        """Whether sample rows carry their views' bytes."""
        return self.embed or self.is_pairs

    @property
    def folder(self) -> str:
        """The data folder the samples go to: ``pairs`` for today's pairs, else ``<shape><N>``."""
        return "pairs" if self.is_pairs else f"{self.shape}{self.views}"


@dataclass(frozen=True)
class SamplesConfig(PairsConfig):
    """Everything that decides which samples are kept and how they are written (hashed).

    Made from the filter's options and :class:`SampleOptions` (``pairgen
    filter``'s flags): ``samples_per_scene`` is ``--pairs-per-scene``,
    ``max_samples_per_view`` ``--max-pairs-per-view``, ``cap`` resolved
    (``min_covis`` when not given).
    """

    views: int = option(5, min=2, max=64, cli=False, help="views a sample")
    shape: str = option("star", choices=SHAPES, cli=False, help="the sample's shape")
    cap: float = option(0.5, min=0, max=1, cli=False, help="what non-edges of a chain or tree stay under")
    rule: str = option("min", choices=_rules, cli=False, help="how a pair's two directions combine")
    embed: bool = option(False, cli=False, help="rows carry their views' bytes and cameras")
    samples_per_scene: int = option(1000, min=1, max=10_000_000, cli=False, help="samples kept per scene, at most")
    max_samples_per_view: int = option(10, min=1, max=1_000_000, cli=False, help="samples one view may join, at most")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shape == "pair" and self.views != 2:
            raise ConfigError("views", f"a pair has 2 views, not {self.views}", related=("shape",))
        if self.shape in ("chain", "tree") and self.cap > self.min_covis:
            raise ConfigError("cap", f"{self.cap} is above the band's floor min_covis {self.min_covis}: a view could "
                              "then overlap an earlier one as much as its own edge does", related=("min_covis",))

    @classmethod
    def of(cls, filter_config, options: SampleOptions) -> SamplesConfig:
        """The samples config of ``pairgen filter``'s options (:class:`~pairgen.filter.FilterConfig`, ``options``).

        A :class:`ConfigError` names the flags of the fields it names.
        """
        shared = {f: getattr(filter_config, f) for f in PairsConfig.__dataclass_fields__}
        cap = filter_config.min_covis if options.cap is None else options.cap
        try:
            return cls(**shared, views=options.views, shape=options.shape, cap=cap, rule=options.rule,
                       embed=options.embedded, samples_per_scene=filter_config.pairs_per_scene,
                       max_samples_per_view=filter_config.max_pairs_per_view)  # fmt: skip
        except ConfigError as e:
            raise with_flags(e, SampleOptions, FilterConfig) from None

    @property
    def folder(self) -> str:
        return f"{self.shape}{self.views}"


class ChosenSample(NamedTuple):
    """One kept sample: its views' ids in order, each view's parent (a position, -1 for view 1), the directed matrix
    (N * N floats, row-major: share of view i's pixels seen in view j)."""

    view_ids: tuple[int, ...]
    parents: tuple[int, ...]
    covis: tuple[float, ...]


@dataclass
class SceneSamples(UnitResult):
    """One scene's kept samples and how they were found."""

    samples: list[ChosenSample] = field(default_factory=list)
    views: int | None = None
    candidates: int | None = None  # candidate edges the index proposed
    computed: int | None = None  # directed exact computations
    tried: int | None = None  # starts tried

    def entry(self) -> dict:
        return {**super().entry(), "samples": len(self.samples)}


def select_scene_samples(task: tuple[str, dict], views_dir: str | Path, config: SamplesConfig) -> SceneSamples:
    """The samples of one scene's views file (the module docstring). Never raises."""

    def body(result: SceneSamples) -> None:
        from covisibility import MillimetreDepths
        from covisibility.samples import grow_samples

        key, entry = task
        path, views = checked_views(views_dir, key, entry)
        n = len(views.view_ids)
        if config.views > n:
            raise OutputError(f"{path}: {n} views, fewer than the {config.views} a sample takes (--views)")
        if config.shape == "pair":  # the filter's pairs (the same choice as `filter`'s), named instead of copied
            pairs = ScenePairs()
            choose_pairs(pairs, path, views, config, search="index", target=config.samples_per_scene,
                         max_per_view=config.max_samples_per_view)  # fmt: skip
            valid = {int(v): float(np.count_nonzero(d) / d.size) for v, d in zip(views.view_ids, views.depth_mm)}
            result.samples = [ChosenSample((p.view1, p.view2), (-1, 0),
                                           (valid[p.view1], p.covis_1in2, p.covis_2in1, valid[p.view2]))
                              for p in pairs.pairs]  # fmt: skip
            result.views, result.candidates, result.computed = pairs.views, pairs.candidates, pairs.computed
            result.status = "ok"
            return
        rng = views_rng(config.seed, path)
        grown = grow_samples(MillimetreDepths(views.depth_mm), views.K, views.cam2world, shape=config.shape,
                             views=config.views, measure=config.measure, min_covis=config.min_covis,
                             max_covis=config.max_covis, cap=config.cap, rule=config.rule,
                             target=config.samples_per_scene, max_per_view=config.max_samples_per_view, rng=rng)
        result.views, result.candidates, result.computed, result.tried = n, grown.candidates, grown.exact, grown.tried
        if not grown.samples:
            bound = (f"the others at most {config.max_covis}" if config.shape in ("star", "pair")
                     else f"the other pairs under --cap {config.cap}")  # fmt: skip
            raise OutputError(f"{path}: no {config.shape} of {config.views} views among its {n} (edges in "
                              f"[{config.min_covis}, {config.max_covis}], {bound}; {grown.tried} starts tried)")
        ids = views.view_ids
        result.samples = [ChosenSample(tuple(int(ids[i]) for i in members), tuple(int(p) for p in parents),
                                       tuple(float(c) for c in matrix.ravel()))
                          for (members, parents), matrix in zip(grown.samples, grown.matrices)]  # fmt: skip
        result.status = "ok"

    return run_unit(SceneSamples(), body)


def _samples_digest(rows: list[tuple[str, ChosenSample]]) -> str:
    """16 hex digits naming a shard's rows: which samples, in which order, with which values."""
    h = hashlib.sha256()
    for key, s in rows:
        h.update(f"{key}/{s.view_ids}/{s.parents}/{s.covis!r}\n".encode())
    return h.hexdigest()[:16]


def _views_of(path: Path, embed: bool, sha256: str) -> dict:
    """What a shard's rows take of one views file: ``sha256`` (the views manifest's, which the unit checked the file
    against: the samples were drawn from that file), its size, and with ``embed`` every view's bytes."""
    columns = ["view_id", "width", "height"] + (["image", "depth", "K", "cam2world"] if embed else [])
    table, _ = read_views(path, columns=columns)
    views = {"sha256": sha256, "width": int(table.column("width")[0].as_py()),
             "height": int(table.column("height")[0].as_py()),
             "index": {v: i for i, v in enumerate(table.column("view_id").to_pylist())}}  # fmt: skip
    if embed:
        views.update({name: table.column(name).to_pylist() for name in ("image", "depth", "K", "cam2world")})
    return views


def _samples_table(rows: list[tuple[str, ChosenSample]], views: dict[str, dict], config: SamplesConfig) -> pa.Table:
    schema = samples_schema(config.embed)
    cols: dict[str, list] = {name: [] for name in schema.names}
    for key, s in rows:
        dataset, scene_id = key.split("/", 1)
        v = views[key]
        cols["sample_id"].append(sample_id(dataset, scene_id, s.view_ids))
        cols["dataset"].append(dataset)
        cols["scene_id"].append(scene_id)
        cols["shape"].append(config.shape)
        cols["view_ids"].append(list(s.view_ids))
        cols["parents"].append(list(s.parents))
        cols["covis"].append(list(s.covis))
        cols["width"].append(v["width"])
        cols["height"].append(v["height"])
        cols["views_sha256"].append(v["sha256"])
        if config.embed:
            r = [v["index"][i] for i in s.view_ids]
            cols["images"].append([v["image"][k] for k in r])
            cols["depths"].append([v["depth"][k] for k in r])
            cols["K"].append([v["K"][k] for k in r])
            cols["cam2world"].append([v["cam2world"][k] for k in r])
    return pa.table(cols, schema=schema)


class SamplesStage(FilterStage):
    """``pairgen filter --views N --shape S``: samples of ``OUT/views`` into ``OUT/<shape><N>``."""

    name = "samples"
    manifest_cls = SamplesManifest
    result_cls = SceneSamples
    what = "samples"
    progress_desc = "sampling"
    work = staticmethod(select_scene_samples)
    items = "samples"
    stats = ("views", "candidates", "computed", "tried")

    def __init__(self, out_dir, config: SamplesConfig, **kw) -> None:
        self.folder_name = config.folder  # before the lifecycle names its folder
        super().__init__(out_dir, config, **kw)

    def identity(self) -> dict:
        return {"samples": self.config.to_dict(), "views_config_hash": self.views.config_hash}

    def encode(self, item: ChosenSample) -> list:
        return [list(item.view_ids), list(item.parents), list(item.covis)]

    def decode(self, value) -> ChosenSample:
        view_ids, parents, covis = value
        return ChosenSample(tuple(view_ids), tuple(parents), tuple(covis))

    def shard_rows(self) -> ShardRows:
        config = self.config
        recorded = {path_inside(self.views_dir, e["file"]): e["sha256"] for key, e in self.scenes.items()
                    if key in self.selections and e.get("sha256")}  # fmt: skip

        def load(path: Path) -> dict:  # the manifest's checksum: the file is not hashed a second time
            return _views_of(path, config.embed, recorded.get(path) or sha256_file(path))

        return ShardRows(table=lambda rows, views: _samples_table(rows, views, config), digest=_samples_digest,
                         metadata=lambda h, n, digest: samples_metadata(h, n, config.shape, config.views, config.embed,
                                                                        digest),
                         load=load, name="samples")  # fmt: skip

    def covisibilities(self) -> np.ndarray:
        """The edges' covisibility (each view with its parent, by the pair rule): the manifest's histogram."""
        from covisibility.measures import combine_directions

        values = []
        for s in self.selections.values():
            if not s.ok:
                continue
            for sample in s.samples:
                n = len(sample.view_ids)
                m = np.asarray(sample.covis, np.float32).reshape(n, n)
                values += [float(combine_directions(m[k, p], m[p, k], self.config.rule))
                           for k, p in enumerate(sample.parents) if p >= 0]
        return np.asarray(values, np.float64)

    def line(self, summary: StageSummary) -> str:
        what = f"{self.config.shape}s of {self.config.views} views"
        if summary.up_to_date:
            return f"already complete: {summary.counts['samples']} {what} in {summary.counts['shards']} shards"
        reused = f", {summary.counts['reused']} reused" if summary.counts["reused"] else ""
        absent = f", {summary.counts['not rendered']} not rendered" if summary.counts["not rendered"] else ""
        return (f"{summary.counts['samples']} {what} from {summary.ok + summary.skipped} scenes ({summary.failed} "
                f"failed{absent}{reused}) in {summary.counts['shards']} shards, {summary.seconds:.1f} s")  # fmt: skip

