"""Checkpoints of ``pretrain run``: what they hold, writing them, and reading them back checked.

A checkpoint is a dict, saved with ``torch.save`` (atomically) and read with
``torch.load(weights_only=True)``: no pickled objects are executed. It holds
everything the next step depends on, so ``--resume`` continues exactly:

=============  ============================================================
``model``      the network's ``state_dict``
``model_args`` the network's constructor arguments (:data:`MODEL_ARGS`, plain
               values, as nanoGPT stores ``model_args``): what the weights
               mean, whatever the presets say later
``optimizer``  AdamW's ``state_dict``; ``scaler`` the grad scaler's
``config``     the run's ``TrainConfig`` as a dict
``step``       optimizer steps done; ``epoch``, ``position`` where the data is
``rng``        the torch, CUDA, numpy and Python generators' states
=============  ============================================================

and ``pairs_seen``. Checkpoints written before ``model_args`` existed are
still read: their model is the preset ``config["model"]`` at
``config["img_size"]`` (:func:`checkpoint_model_args`, the one rule every
reader follows).
"""

from __future__ import annotations

import inspect
import math
import pickle
import random
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from manifests.io import OutputError, atomic_path, one_line
from pretrain.engine import TrainingError, param_groups
from pretrain.model import MODEL_PRESETS, CroCoNet, preset

__all__ = ["MODEL_ARGS", "checkpoint_model_args", "croco_kwargs", "load_checkpoint", "model_from_checkpoint",
           "preset_model_args", "rng_state", "save_checkpoint", "set_rng_state"]  # fmt: skip

# CroCoNet's constructor arguments that decide what its weights mean, all plain values: a checkpoint's
# "model_args", and an export's "croco_kwargs" (naver/croco's CroCoNet takes the same names). Left out:
# the layer factories (norm_layer, act_layer: code, not data) and attn_impl (the same weights either way).
MODEL_ARGS = ("img_size", "patch_size", "mask_ratio", "enc_embed_dim", "enc_depth", "enc_num_heads",
              "dec_embed_dim", "dec_depth", "dec_num_heads", "mlp_ratio", "norm_im2_in_dec", "pos_embed")  # fmt: skip
DEFAULTS = {name: inspect.signature(CroCoNet).parameters[name].default for name in MODEL_ARGS}
# bounds of a stored argument, so that checking a damaged checkpoint stays quick (the model is built to check it)
MAX_DEPTH, MAX_WIDTH, MAX_MLP_RATIO = 1024, 65_536, 64

# what every checkpoint holds; "model_args" too, except in those written before it was stored
NEEDED = ("config", "model", "optimizer", "scaler", "step", "epoch", "position", "rng")


def preset_model_args(name: str, img_size: int) -> dict:
    """Every one of :data:`MODEL_ARGS` for today's preset ``name`` at ``img_size`` (a new run's model)."""
    return {**DEFAULTS, **preset(name), "img_size": img_size}


def checkpoint_model_args(ckpt: dict) -> dict:
    """The constructor arguments of ``ckpt``'s model: its ``model_args``, or, in a checkpoint written before
    they were stored, today's preset ``config["model"]`` at ``config["img_size"]``.

    Resume, export, the probe and :func:`load_checkpoint`'s own check all build the model from this.
    """
    if "model_args" in ckpt:
        return dict(ckpt["model_args"])
    return preset_model_args(ckpt["config"]["model"], ckpt["config"]["img_size"])


def croco_kwargs(model_args: dict) -> dict:
    """What ``pretrain export`` writes as ``croco_kwargs``: the arguments that differ from CroCoNet's defaults, then
    ``img_size``.

    naver/croco's released files hold ``{"img_size": 224}`` for CroCo and only
    the changed widths for the others, and its first ``CroCoNet`` takes no
    ``pos_embed``: leaving the defaults out keeps an export readable by
    every version of their code (a preset's export is ``{**preset, "img_size": N}``).
    """
    changed = {k: v for k, v in model_args.items() if k != "img_size" and v != DEFAULTS[k]}
    return {**changed, "img_size": model_args["img_size"]}


def model_from_checkpoint(ckpt: dict) -> CroCoNet:
    """``ckpt``'s model (on the CPU) with its weights, from a checkpoint :func:`load_checkpoint` returned."""
    model = CroCoNet(**checkpoint_model_args(ckpt))
    model.load_state_dict(ckpt["model"], strict=True)
    return model


def rng_state() -> dict:
    """The states of torch's, CUDA's, numpy's and Python's global generators, as tensors and plain values."""
    state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"key": torch.from_numpy(state[1].astype(np.int64)), "pos": state[2], "gauss": [state[3], state[4]]},
        "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
    }


def set_rng_state(state: dict) -> None:
    """Restore the generators from :func:`rng_state`'s dict."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["gauss"][0], n["gauss"][1]))
    internal, version, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(ckpt: dict, path: Path, tmp_dir: Path | None = None) -> None:
    """``torch.save`` to ``path`` atomically: Ctrl-C or a crash leaves the old file or none, never a truncated one.

    A full disk is :class:`~manifests.io.DiskFull` (``atomic_path``); any other error of ``torch.save``'s
    writer, which loses the errno (a quota, an I/O error), an ``OutputError`` naming the file, not a traceback.
    """
    try:
        with atomic_path(path, tmp_dir) as tmp:
            torch.save(ckpt, tmp)
    except RuntimeError as e:
        raise OutputError(f"{path}: cannot be written ({one_line(e)}: a quota, or an I/O error?)") from e


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's contents, loaded without unpickling arbitrary objects, and checked before use.

    Everything a resume, an export or a probe reads is checked here, so that
    a damaged or foreign file is one message naming it rather than an error
    deep in training: a dict with ``config`` (plain values; a known ``model``,
    a positive ``img_size``, ``num_workers``), ``model_args`` when present
    (every one of :data:`MODEL_ARGS`, plain values in range, ``img_size``
    the config's), ``model`` (the tensors of that model, same names and
    shapes, finite), ``optimizer`` (AdamW's groups of that model, moments of
    its parameters' shapes), ``scaler``, ``step``/``epoch``/``position``
    (non-negative integers) and ``rng`` (states the generators accept).

    Raises
    ------
    TrainingError
        Not found, not readable, holding pickled objects, or not a checkpoint
        of ``pretrain run`` (the message says what is wrong).
    """
    path = Path(path)
    ckpt = _read(path)
    wrong = _problem(ckpt)
    if wrong:
        raise TrainingError(f"{path}: not a checkpoint of `pretrain run`: {wrong}")
    return ckpt


def _read(path: Path):
    """``torch.load(path, weights_only=True)``; every way it can fail is a TrainingError naming ``path``."""
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(2)
        if not head:
            raise TrainingError(f"{path}: not a readable checkpoint (the file is empty)")
        try:
            archive = zipfile.is_zipfile(path)
        except (zipfile.BadZipFile, OSError, ValueError):  # is_zipfile itself raises on some damaged end records
            archive = False
        if head != b"\x80\x02" and not archive:  # torch.save writes a zip archive, or a legacy pickle
            raise TrainingError(f"{path}: not a readable checkpoint (not a file torch.save writes: truncated, "
                                "damaged or of another kind)")  # fmt: skip
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"{path}: checkpoint not found") from None
    except IsADirectoryError:
        raise TrainingError(f"{path}: is a folder, not a checkpoint") from None
    except pickle.UnpicklingError as e:
        operand = re.search(r"Unsupported operand \d+", str(e))
        if operand:  # not a request for an object: a byte of the pickle that is no pickle opcode
            raise TrainingError(f"{path}: not a readable checkpoint (damaged: {operand.group(0).lower()})") from None
        if "Weights only load failed" in str(e):
            raise TrainingError(
                f"{path}: refused: it holds Python objects besides tensors and plain values, and loading "
                "them could run code (checkpoints are read with torch.load(weights_only=True))"
            ) from None
        detail = (str(e).strip() or "no detail").splitlines()[0]
        raise TrainingError(f"{path}: not a readable checkpoint (damaged: {detail})") from None
    except Exception as e:  # noqa: BLE001 -- a damaged file: torch raises RuntimeError, EOFError, KeyError...
        detail = (str(e).strip() or "no detail").splitlines()[0]
        raise TrainingError(f"{path}: not a readable checkpoint ({type(e).__name__}: {detail})") from None


# ---- the checks: each returns what is wrong (the message's tail), or None


def _plain(value) -> bool:  # what a config may hold: JSON-like values
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return isinstance(value, dict) and all(isinstance(k, str) and _plain(v) for k, v in value.items())


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _problem(ckpt) -> str | None:
    """What makes ``ckpt`` unusable for a resume, an export or a probe, checked in the order they read it."""
    if not isinstance(ckpt, dict):
        return f"it holds a {type(ckpt).__name__}, not a dict"
    missing = [k for k in NEEDED if k not in ckpt]
    if missing:
        return f"no {', '.join(repr(k) for k in missing)}"
    config = ckpt["config"]
    if not isinstance(config, dict) or not _plain(config):
        return "'config' is not a dict of plain values"
    name = config.get("model")  # with model_args, a label; without, the preset the model is built from
    if not isinstance(name, str) or ("model_args" not in ckpt and name not in MODEL_PRESETS):
        return f"'config' names model {name!r}; known: {', '.join(sorted(MODEL_PRESETS))}"
    if not _count(config.get("img_size")) or not config["img_size"] or not _count(config.get("num_workers")):
        return "'config' has no valid img_size and num_workers"
    for key in ("step", "epoch", "position"):
        if not _count(ckpt[key]):
            return f"{key!r} is {ckpt[key]!r}, not a non-negative integer"
    if "model_args" in ckpt:
        wrong = _model_args_problem(ckpt["model_args"], config["img_size"])
        if wrong:
            return wrong
    try:
        with torch.device("meta"):  # shapes only, no memory
            reference = CroCoNet(**checkpoint_model_args(ckpt))
    except Exception as e:  # noqa: BLE001 -- a size the model cannot be built at
        if "model_args" in ckpt:
            return f"its 'model_args' do not make a model ({e})"
        return f"its model {name!r} cannot be built at {config['img_size']} px ({e})"
    return (_state_problem(ckpt["model"], reference, name, config["img_size"])
            or _optimizer_problem(ckpt["optimizer"], reference)
            or _rng_problem(ckpt["rng"]))  # fmt: skip


def _key_difference(have, want) -> str:
    """``missing [...], unexpected [...]``: the first three keys of ``want`` not in ``have`` and of ``have`` not in ``want``."""
    lost, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    return f"missing {lost[:3] or 'none'}, unexpected {extra[:3] or 'none'}"


def _model_args_problem(args, img_size: int) -> str | None:
    """``args`` must be every one of MODEL_ARGS, of its default's kind, in range, at the config's ``img_size``."""
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        return "'model_args' is not a dict of CroCoNet's arguments"
    if set(args) != set(MODEL_ARGS):
        return f"'model_args' are not CroCoNet's arguments ({_key_difference(args, MODEL_ARGS)})"
    for key, value in args.items():
        default = DEFAULTS[key]
        if isinstance(default, (bool, str)):
            fits = type(value) is type(default)
        elif key == "mask_ratio":
            fits = _number(value) and 0 < value < 1
        elif key == "mlp_ratio":
            fits = _number(value) and 0 < value <= MAX_MLP_RATIO
        else:
            fits = _count(value) and 0 < value <= (MAX_DEPTH if key.endswith("_depth") else MAX_WIDTH)
        if not fits:
            return f"'model_args' {key!r} is {value!r}"
    if args["img_size"] != img_size:
        return f"'model_args' img_size is {args['img_size']}, the config's {img_size}"
    for part in ("enc", "dec"):
        dim, heads = args[f"{part}_embed_dim"], args[f"{part}_num_heads"]
        if dim % heads or (args["pos_embed"].startswith("RoPE") and (dim // heads) % 4):
            return f"'model_args' {part}_embed_dim {dim} does not split into {heads} heads of a usable width"
    return None


def _state_problem(state, reference: CroCoNet, name: str, img_size: int) -> str | None:
    """``state`` must hold ``reference``'s tensors: the same names, shapes and dtypes, finite values."""
    wanted = reference.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return "'model' is not a dict of tensors"
    if set(state) != set(wanted):
        return f"'model' is not a {name!r} model at {img_size} px ({_key_difference(state, wanted)})"
    for key, tensor in state.items():
        if tensor.shape != wanted[key].shape or tensor.dtype != wanted[key].dtype:
            return (f"'model' tensor {key!r} is {tensor.dtype} {tuple(tensor.shape)}, expected "
                    f"{wanted[key].dtype} {tuple(wanted[key].shape)}")  # fmt: skip
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return f"'model' tensor {key!r} holds NaN or infinite values"
    return None


def _optimizer_problem(optimizer, reference: CroCoNet) -> str | None:
    """``optimizer`` must be AdamW's state over ``reference``'s parameter groups, moments of their shapes."""
    groups = param_groups(reference, 0.0)
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict) or not isinstance(
        optimizer.get("param_groups"), list
    ):
        return "'optimizer' is not an optimizer state (state, param_groups)"
    saved = optimizer["param_groups"]
    if len(saved) != len(groups) or not all(
        isinstance(g, dict) and isinstance(g.get("params"), list) and len(g["params"]) == len(r["params"])
        for g, r in zip(saved, groups)
    ):
        return "'optimizer' has other parameter groups than the model's"
    defaults = torch.optim.AdamW([torch.zeros(1)]).defaults
    shapes = {}
    for g, r in zip(saved, groups):
        for key, value in g.items():
            if key == "params" or key not in defaults:
                continue
            default = defaults[key]
            fits = (isinstance(value, bool) or value is None if isinstance(default, bool) or default is None
                    else all(_number(v) for v in value) and len(value) == len(default)
                    if isinstance(default, tuple) and isinstance(value, (list, tuple))
                    else _number(value) and _number(default))  # fmt: skip
            if not fits:
                return f"'optimizer' setting {key!r} is {value!r}"
        for i, p in zip(g["params"], r["params"]):
            if not _count(i) or i in shapes:
                return "'optimizer' parameter ids are not distinct integers"
            shapes[i] = p.shape
    amsgrad = any(g.get("amsgrad") for g in saved)
    needed = {"step", "exp_avg", "exp_avg_sq", *(["max_exp_avg_sq"] if amsgrad else [])}  # AdamW's, per parameter
    for i, moments in optimizer["state"].items():
        if i not in shapes or not isinstance(moments, dict):
            return f"'optimizer' holds a state for parameter {i!r}, which the model has not"
        if needed - set(moments):
            return f"'optimizer' state of parameter {i} has no {', '.join(sorted(needed - set(moments)))}"
        for key, value in moments.items():
            if not isinstance(value, torch.Tensor) or (key != "step" and value.shape != shapes[i]) or (
                key == "step" and value.numel() != 1
            ):
                return f"'optimizer' state {key!r} of parameter {i} does not fit it"
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                return f"'optimizer' state {key!r} of parameter {i} holds NaN or infinite values"
    return None


def _rng_problem(rng) -> str | None:
    """``rng`` must be states the four generators accept (tried on fresh generators, not the global ones)."""
    try:
        torch.Generator().set_state(rng["torch"])
        if not isinstance(rng["cuda"], list) or not all(isinstance(t, torch.Tensor) for t in rng["cuda"]):
            raise TypeError("cuda: not a list of tensors")
        n = rng["numpy"]
        np.random.RandomState().set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"],
                                           n["gauss"][0], n["gauss"][1]))  # fmt: skip
        internal, version, gauss = rng["python"]
        random.Random().setstate((version, tuple(internal), gauss))
    except Exception as e:  # noqa: BLE001 -- any shape of damage
        detail = (str(e).strip() or "no detail").splitlines()[0]
        return f"'rng' is not the generators' states ({type(e).__name__}: {detail})"
    return None
