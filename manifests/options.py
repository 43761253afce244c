"""Options declared once: a config field carries its flag, help, default and bounds.

Every stage's settings are a frozen dataclass whose fields are declared with
:func:`option`. From that one declaration come

* the command-line flag (:func:`add_options` adds them to an ``argparse``
  parser, help text and shown default included; :func:`from_args` builds the
  config back from the parsed namespace),
* the validation (:func:`check`, called from the dataclass'
  ``__post_init__``): types, bounds, finiteness and choices, so that a bad
  value gets the same message from the command line and from Python,
* the config dict that is hashed into the outputs' identity (``to_dict``).

A value that fails raises :class:`ConfigError`, a ``ValueError`` naming the
field (``accum: must be at least 1, got 0``); the command lines turn it into
``argument --accum: must be at least 1, got 0`` with exit status 2, as
argparse does for its own errors.

Why not a library: tyro and simple-parsing build parsers from dataclasses
too, but neither keeps today's flag names for nested fields
(``--views-per-scene`` for ``sampling.views_per_scene``) without a rename
table of their own, nor bounds that the Python API and the CLI share; this
module is ~200 lines on the standard library's argparse and dataclasses.

Nested configs: a field whose default is itself a dataclass of options
(``RenderConfig.sampling: ViewConfig``) contributes that dataclass' flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import typing
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["ConfigError", "add_options", "check", "flag_of", "from_args", "option", "parse_pair", "parse_size",
           "with_flags"]

_MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """A config value out of its bounds: ``field`` names it, ``problem`` says what is wrong."""

    def __init__(self, field: str, problem: str, related: tuple[str, ...] = ()) -> None:
        self.field, self.problem, self.related = field, problem, related
        self.flags: dict[str, str] = {}  # field -> flag, filled by from_args
        super().__init__(f"{field}: {problem}")

    def cli_message(self) -> str:
        """``argument --flag: problem``, with every field the problem names written as its flag."""
        text = self.problem
        for name in self.related:
            if name in self.flags:
                text = re.sub(rf"\b{name}\b", self.flags[name], text)
        return f"argument {self.flags.get(self.field, self.field)}: {text}"


def option(
    default: Any = _MISSING,
    *,
    help: str | Callable[[], str],
    flag: str | None = None,
    metavar: str | None = None,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    below: float | None = None,
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None,
    parse: Callable[[str], Any] | None = None,
    show: Callable[[Any], str] | None = None,
    default_factory: Callable[[], Any] | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field with its command-line flag and its bounds.

    Parameters
    ----------
    default, default_factory
        As for :func:`dataclasses.field`.
    help : str or callable
        The flag's help text (the default is shown after it), or a function
        returning it (to list a registry, read when the parser is built).
    flag : str, optional
        The flag; by default ``--`` and the field name with ``-`` for ``_``.
        A boolean whose default is True takes a ``--no-...`` flag.
    min, max : float, optional
        Inclusive bounds (for a pair, of each element).
    above, below : float, optional
        Exclusive bounds.
    choices : sequence or callable, optional
        Allowed values, or a function returning them (a registry's names, read
        when the parser is built).
    parse, show : callable, optional
        Text -> value for the flag, and value -> text for the shown default.
    cli : bool
        False: a setting of the Python API only (no flag).
    """
    meta = dict(help=help, flag=flag, metavar=metavar, min=min, max=max, above=above, below=below,
                choices=choices, parse=parse, show=show, cli=cli)  # fmt: skip
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={"option": meta})
    return dataclasses.field(default=default, metadata={"option": meta})


def _options(cls) -> list[tuple[dataclasses.Field, dict, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, f.metadata["option"], hints[f.name]) for f in dataclasses.fields(cls) if "option" in f.metadata]


def _nested(cls) -> list[tuple[dataclasses.Field, type]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)
            if "option" not in f.metadata and dataclasses.is_dataclass(hints[f.name])]  # fmt: skip


def flag_of(cls, name: str) -> str | None:
    """The command-line flag of field ``name`` of ``cls`` (or of a nested config), if it has one."""
    for f, meta, _ in _options(cls):
        if f.name == name and meta["cli"]:
            return meta["flag"] or "--" + f.name.replace("_", "-")
    for _, sub in _nested(cls):
        found = flag_of(sub, name)
        if found:
            return found
    return None


def _choices(meta: dict) -> Sequence[str] | None:
    c = meta["choices"]
    return c() if callable(c) else c


def _base(tp) -> tuple[type, bool]:
    """(the type, whether None is allowed) of an annotation such as ``int | None``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    optional = type(None) in typing.get_args(tp)
    if optional and len(args) == 1:
        return args[0], True
    return tp, False


def _check_number(name: str, value, meta: dict, kind: type) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, f"must be a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise ConfigError(name, f"must be a whole number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(name, f"must be a finite number, got {value!r}")
    lo, hi, above, below = meta["min"], meta["max"], meta["above"], meta["below"]
    if lo is not None and value < lo:
        raise ConfigError(name, f"must be at least {lo:g}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(name, f"must be at most {hi:g}, got {value!r}")
    if above is not None and not value > above:
        raise ConfigError(name, f"must be above {above:g}, got {value!r}")
    if below is not None and not value < below:
        raise ConfigError(name, f"must be below {below:g}, got {value!r}")


def check(config) -> None:
    """Validate every option field of ``config`` against its declaration; raise :class:`ConfigError`.

    Call it first in ``__post_init__``; checks that involve several fields follow it there.
    """
    for f, meta, tp in _options(type(config)):
        value = getattr(config, f.name)
        kind, optional = _base(tp)
        if value is None:
            if optional:
                continue
            raise ConfigError(f.name, "must be set")
        choices = _choices(meta)
        if choices is not None and value not in choices:
            raise ConfigError(f.name, f"must be one of {', '.join(map(str, choices))}, got {value!r}")
        origin = typing.get_origin(kind)
        if origin is tuple:
            elem = typing.get_args(kind)[0]
            if not isinstance(value, (tuple, list)):
                raise ConfigError(f.name, f"must be a pair of numbers, got {value!r}")
            for v in value:
                _check_number(f.name, v, meta, elem)
        elif kind in (int, float):
            _check_number(f.name, value, meta, kind)
        elif kind is bool and not isinstance(value, bool):
            raise ConfigError(f.name, f"must be true or false, got {value!r}")


def _declared_default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not _MISSING else f.default


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls, defaults=None) -> None:
    """Add a flag for every command-line option of ``cls`` (and of its nested configs).

    ``defaults`` (an instance) overrides the declared defaults shown and used.
    """
    for f, meta, tp in _options(cls):
        if not meta["cli"]:
            continue
        value = getattr(defaults, f.name) if defaults is not None else _declared_default(f)
        kind, _ = _base(tp)
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = dict(dest=f.name, help=meta["help"]() if callable(meta["help"]) else meta["help"])
        if kind is bool:
            kw.update(action="store_false" if value else "store_true", default=value)
        else:
            choices = _choices(meta)
            kw.update(metavar=meta["metavar"] or (None if choices else flag.lstrip("-").upper().replace("-", "_")),
                      choices=choices)
            if meta["parse"] is not None:
                kw["type"] = meta["parse"]
                kw["default"] = meta["show"](value) if (meta["show"] and value is not None) else value
            else:
                kw["type"] = str if kind is str else kind
                kw["default"] = value
        parser.add_argument(flag, **kw)
    for f, sub in _nested(cls):
        add_options(parser, sub, getattr(defaults, f.name) if defaults is not None else None)


def from_args(cls, args: argparse.Namespace, **fixed):
    """Build ``cls`` from a namespace filled by :func:`add_options`; ``fixed`` sets fields without flags.

    A :class:`ConfigError` raised here carries the flags of the fields it names.
    """
    values = dict(fixed)
    for f, meta, _ in _options(cls):
        if meta["cli"] and f.name not in values and hasattr(args, f.name):
            values[f.name] = getattr(args, f.name)
    for f, sub in _nested(cls):
        if f.name not in values:
            values[f.name] = from_args(sub, args)
    try:
        return cls(**values)
    except ConfigError as e:
        raise with_flags(e, cls) from None


def with_flags(error: ConfigError, *classes) -> ConfigError:
    """``error`` with the flags of the fields it names, as the first of ``classes`` that has a flag for each declares."""
    for name in (error.field, *error.related):
        for cls in classes:
            flag = flag_of(cls, name)
            if flag and name not in error.flags:
                error.flags[name] = flag
    return error


def parse_pair(text: str) -> tuple[float, float]:
    """``'1.2,1.8'`` -> ``(1.2, 1.8)``."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes MIN,MAX (two numbers), got {text!r}") from None
    return lo, hi


def show_pair(value: tuple[float, float]) -> str:
    return "{},{}".format(*value)


def parse_size(text: str) -> tuple[int, int]:
    """``'256'`` -> ``(256, 256)``; ``'320x240'`` -> ``(320, 240)`` (width, height)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"takes SIZE or WIDTHxHEIGHT, got {text!r}")
    return parts[0], parts[1]


def show_size(value: tuple[int, int]) -> str:
    return "{}x{}".format(*value)
