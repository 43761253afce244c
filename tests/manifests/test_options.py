"""Options declared once (manifests/options.py): one declaration gives the flag, the default and the bounds."""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
from contextlib import redirect_stderr

import pytest

from manifests.datasets import SyntheticOptions
from manifests.options import ConfigError, add_options, from_args
from pairgen.distribute import ClusterOptions
from pairgen.filter import FilterConfig
from pairgen.inspect import SheetOptions
from pairgen.render import RenderConfig
from pretrain.train import TrainConfig
from renderers.viewpoints import ViewConfig

REQUIRED = {TrainConfig: dict(shards="s", run_dir="r")}
CONFIGS = [RenderConfig, ViewConfig, FilterConfig, TrainConfig, SyntheticOptions, ClusterOptions, SheetOptions]


def _make(cls, **kw):
    return cls(**{**REQUIRED.get(cls, {}), **kw})


def _bounded_fields(cls):
    """(field name, a value just below its lower bound) for every option field with one."""
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("option")
        if not meta:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for bound, below in (("min", lambda b: b - 1), ("above", lambda b: b)):
            if meta[bound] is not None:
                low = below(meta[bound])
                if isinstance(default, tuple):
                    low = tuple(low for _ in default)
                elif isinstance(default, int) or default is None and f.type in ("int | None",):
                    low = int(math.floor(low))
                yield f.name, low


BOUNDED = [(cls, name, low) for cls in CONFIGS for name, low in _bounded_fields(cls)]


@pytest.mark.parametrize("cls, name, low", BOUNDED, ids=[f"{c.__name__}.{n}" for c, n, _ in BOUNDED])
def test_a_value_below_its_bound_is_one_value_error_naming_the_field(cls, name, low):
    with pytest.raises(ValueError, match=rf"^{name}: must be") as info:
        _make(cls, **{name: low})
    assert isinstance(info.value, ConfigError) and info.value.field == name


FLOATS = [(cls, f.name) for cls in CONFIGS for f in dataclasses.fields(cls)
          if "option" in f.metadata and f.type in ("float", "float | None")]  # fmt: skip


@pytest.mark.parametrize("cls, name", FLOATS, ids=[f"{c.__name__}.{n}" for c, n in FLOATS])
def test_nan_is_refused(cls, name):
    with pytest.raises(ConfigError, match=rf"^{name}: must be a finite number"):
        _make(cls, **{name: float("nan")})


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_the_command_line_defaults_are_the_dataclass_defaults(cls):
    parser = argparse.ArgumentParser()
    add_options(parser, cls)
    assert from_args(cls, parser.parse_args([]), **REQUIRED.get(cls, {})) == _make(cls)


def test_nested_flags_keep_their_names():
    parser = argparse.ArgumentParser()
    add_options(parser, RenderConfig)
    args = parser.parse_args(["--views-per-scene", "7", "--resolution", "320x240", "--min-distance", "0.5",
                              "--walk-length", "3", "--camera-height", "1,2", "--backend", "raycast"])  # fmt: skip
    config = from_args(RenderConfig, args, seed=3)
    assert config.sampling.views_per_scene == 7 and config.sampling.resolution == (320, 240)
    assert (config.sampling.width, config.sampling.height) == (320, 240)
    assert config.sampling.min_distance == 0.5 and config.sampling.walk_length == 3
    assert config.sampling.camera_height == (1.0, 2.0) and config.seed == 3


def test_a_cross_field_error_names_both_flags():
    parser = argparse.ArgumentParser()
    add_options(parser, FilterConfig)
    with pytest.raises(ConfigError) as info:
        from_args(FilterConfig, parser.parse_args(["--min-covis", "0.9", "--max-covis", "0.2"]))
    assert str(info.value) == "min_covis: 0.9 is above max_covis 0.2: no pair can qualify"
    assert info.value.cli_message() == "argument --min-covis: 0.9 is above --max-covis 0.2: no pair can qualify"


def test_choices_come_from_the_registries():
    from covisibility import available_measures
    from renderers.backends import available_backends

    with pytest.raises(ConfigError, match="measure: must be one of " + ", ".join(available_measures())):
        FilterConfig(measure="nope")
    with pytest.raises(ConfigError, match="backend: must be one of " + ", ".join(available_backends())):
        RenderConfig(backend="nope")


@pytest.mark.parametrize("flag, field", [("--accum", "accum"), ("--log-every", "log_every"),
                                         ("--batch-size", "batch_size"), ("--img-size", "img_size")])  # fmt: skip
def test_pretrain_bad_value_is_one_message_and_status_2(tmp_path, flag, field):
    from pretrain.cli import main

    value = "17" if flag == "--img-size" else "0"
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["run", "--shards", str(tmp_path), "--model", "tiny", flag, value, "--runs", str(tmp_path / "r")])
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"pretrain run: error: argument {flag}: "), lines
    assert "Traceback" not in err.getvalue() and not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match=f"^{field}: "):
        TrainConfig(shards="s", run_dir="r", **{field: int(value)})


def test_steps_and_epochs_exclude_each_other():
    with pytest.raises(ConfigError, match="steps: cannot be given with epochs"):
        TrainConfig(shards="s", run_dir="r", steps=3, epochs=1.0)
