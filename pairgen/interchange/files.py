"""What the exports into other projects' layouts share: a view's three files, and the export's state.

CroCo's ``habitat_release`` and DUSt3R's processed Habitat folder (both
naver's, both written by a habitat-sim renderer) store a view the same way,
under one stem ``<stem>`` (``<label>_<o>`` for CroCo, ``<key>_<i>`` for
DUSt3R):

``<stem>.jpeg``
    The RGB image (:func:`jpeg_bytes`: the stored JPEG as it is, any other
    encoding re-encoded).
``<stem>_depth.exr``
    Planar depth in metres, ``0`` where no surface, as one half-float channel
    ``Y``: what their ``cv2.imwrite(..., [IMWRITE_EXR_TYPE, IMWRITE_EXR_TYPE_HALF])``
    writes of a one-channel float image, and what ``cv2.imread`` with
    ``IMREAD_GRAYSCALE | IMREAD_ANYDEPTH`` (DUSt3R) or the OpenEXR bindings
    read back (:func:`write_depth_exr`, :func:`read_depth_exr`).
``<stem>_camera_params.json``
    ``camera_intrinsics`` (3x3; its principal point in the caller's
    convention: CroCo's is ours + 0.5, DUSt3R's ours), optionally ``size``,
    ``R_cam2world`` (3x3) and ``t_cam2world`` (3), OpenCV camera
    (:func:`camera_params`).

An export's state is ``DEST/.pairgen-export.json`` (:class:`ExportState`):
which source folder ``DEST`` is an export of (the source's config hash and
shard checksums), the shards whose files are written, and ``complete`` with
the counts once everything is. A shard's files are written without an
fsync each and synced together (``os.sync``) before the shard is recorded,
so a rerun rewrites exactly the shards not recorded; a complete export is
left as it is; ``DEST`` holding an export of another source is refused.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from manifests.codecs import decode_rgb, encode_rgb
from manifests.io import TMP_PREFIX, OutputError, atomic_path, read_json, write_json_atomic
from manifests.lock import HOLDER_NAME, LOCK_NAME
from manifests.manifest import PairsManifest

__all__ = [
    "EXPORT_STATE",
    "ExportState",
    "camera_params",
    "exportable",
    "jpeg_bytes",
    "read_depth_exr",
    "refuse_dest_inside",
    "verified_shards",
    "write_bytes",
    "write_depth_exr",
    "write_view",
]

log = logging.getLogger(__name__)

EXPORT_STATE = ".pairgen-export.json"  # in DEST: which folder the export is of, and the shards done
JPEG_MAGIC = b"\xff\xd8\xff"


def jpeg_bytes(data: bytes, quality: int = 95) -> bytes:
    """The image as JPEG bytes: a JPEG as it is, anything else (a PNG view) re-encoded at ``quality``."""
    if data[:3] == JPEG_MAGIC:
        return data
    return encode_rgb(decode_rgb(data), "jpeg", quality)


def write_bytes(path: Path, data: bytes, sync: bool) -> None:
    """``data`` at ``path``, under a temporary name until complete (fsynced only with ``sync``)."""
    with atomic_path(path, sync=sync) as tmp:
        tmp.write_bytes(data)


def write_depth_exr(path: Path, depth: np.ndarray, sync: bool) -> None:
    """Depth (H, W) metres as a one-channel (``Y``) half-float EXR, what ``cv2.imwrite(..., IMWRITE_EXR_TYPE_HALF)``
    writes (OpenEXR's bindings: opencv-python 5 wheels are built without OpenEXR)."""
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with atomic_path(path, sync=sync) as tmp:
        with OpenEXR.File(header, {"Y": np.ascontiguousarray(depth, np.float16)}) as f:
            f.write(str(tmp))


def read_depth_exr(path: Path) -> np.ndarray:
    """The (H, W) float16 depth of an EXR :func:`write_depth_exr` wrote; any damage is one message naming the file."""
    import OpenEXR

    try:
        with OpenEXR.File(str(path)) as f:
            return f.channels()["Y"].pixels
    except Exception as e:  # noqa: BLE001  (any damage: one message naming the file)
        raise OutputError(f"{path}: not a readable depth EXR ({e}); remove {EXPORT_STATE} and export again") from None


def camera_params(intrinsics: np.ndarray, cam2world: np.ndarray, size: tuple[int, int] | None = None) -> bytes:
    """``<stem>_camera_params.json``'s bytes: ``camera_intrinsics`` (3, 3) as given, ``size`` ``[W, H]`` when given,
    ``R_cam2world`` (3, 3) and ``t_cam2world`` (3,) of the (4, 4) OpenCV ``cam2world``."""
    pose = np.asarray(cam2world, np.float64).reshape(4, 4)
    doc = {"camera_intrinsics": np.asarray(intrinsics, np.float64).reshape(3, 3).tolist()}
    if size is not None:
        doc["size"] = [int(size[0]), int(size[1])]
    doc.update(R_cam2world=pose[:3, :3].tolist(), t_cam2world=pose[:3, 3].tolist())
    return json.dumps(doc).encode()


def write_view(folder: Path, stem: str, image: bytes, depth: np.ndarray, params: bytes, sync: bool) -> None:
    """One view's three files in ``folder``: ``<stem>.jpeg`` (``image`` as :func:`jpeg_bytes` gives it),
    ``<stem>_depth.exr`` (``depth`` (H, W) metres, half float) and ``<stem>_camera_params.json`` (``params``)."""
    write_bytes(folder / f"{stem}.jpeg", jpeg_bytes(image), sync)
    write_depth_exr(folder / f"{stem}_depth.exr", depth, sync)
    write_bytes(folder / f"{stem}_camera_params.json", params, sync)


def verified_shards(manifest) -> list[tuple[dict, Path]]:
    """A complete pairs or samples manifest's ``(entry, path)`` shards, each checked against its recorded SHA-256.

    Raises
    ------
    OutputError
        A shard missing or altered since it was written (named under its folder).
    """
    shards = list(manifest.shard_paths())
    for entry, path in shards:
        if (why := manifest.verify_shard(entry, path)) is not None:
            raise OutputError(f"{manifest.folder}/{why}")
    return shards


def exportable(manifest: PairsManifest) -> PairsManifest:
    """``manifest`` (pairs or samples), when its shards can be exported: complete, or with scenes failed (the
    shards it lists are whole: exported, with the one warning every reader gives); one that lists no shard (an
    interrupted filter) raises :class:`OutputError` saying why."""
    if not manifest.complete and not manifest.shards:
        raise OutputError(f"{manifest.path}: not marked complete: {manifest.why_incomplete()}")
    if (warning := manifest.incomplete_warning("Exporting")) is not None:
        log.warning("%s", warning)
    return manifest


def refuse_dest_inside(dest: Path, out_dir: Path) -> None:
    """Raise :class:`OutputError` when ``dest`` is ``out_dir`` or lies inside it (links resolved): an export there
    would mix other projects' files into the pipeline's folder, whose data folders hold Parquet only."""
    inner, outer = Path(os.path.realpath(dest)), Path(os.path.realpath(out_dir))
    if inner == outer or outer in inner.parents:
        raise OutputError(f"{dest}: inside the working folder {out_dir}; export into a folder outside it")


@dataclass
class ExportState:
    """``DEST/.pairgen-export.json``: ``source`` (what ``DEST`` is an export of), ``done`` (shards written),
    ``complete``, and the counts and whatever else the exporter records when complete.

    Open it under ``DEST``'s folder lock (:func:`manifests.lock.folder_lock`).
    """

    path: Path
    doc: dict

    @classmethod
    def open(cls, dest: Path, source: dict, what: str) -> ExportState:
        """``dest``'s state, a new one when there is none.

        Raises
        ------
        OutputError
            ``dest`` holds an export of another ``source`` (``what``: "pairs",
            "samples"), other files and no export (a user's own files are
            never overwritten), or a damaged state file.
        """
        path = dest / EXPORT_STATE
        if not path.is_file():  # a new export: into an empty folder only, and its state first
            others = sorted(p.name for p in dest.iterdir() if p.name not in (LOCK_NAME, HOLDER_NAME)
                            and not p.name.startswith(TMP_PREFIX)) if dest.is_dir() else []  # fmt: skip
            if others:
                shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
                raise OutputError(f"{dest}: holds other files ({shown}), not an export of pairgen's; export into "
                                  "an empty or new folder")  # fmt: skip
            write_json_atomic(path, {"source": source, "done": [], "complete": False})
        doc = read_json(path)
        if doc.get("source") != source:
            raise OutputError(f"{dest}: holds an export of other {what} ({path}); export into another folder")
        return cls(path, doc)

    @property
    def complete(self) -> bool:
        return bool(self.doc.get("complete"))

    def done(self, shard: str) -> bool:
        """Whether the files of ``shard`` (its manifest entry's ``file``) are written and synced."""
        return shard in self.doc["done"]

    def record(self, shard: str) -> None:
        """Record ``shard`` as done, once every file written since the last record is on disk (``os.sync``)."""
        os.sync()
        self.doc["done"].append(shard)
        write_json_atomic(self.path, self.doc)

    def reopen(self) -> None:
        """Mark a complete export incomplete again (its final files are about to be rewritten), shards kept done."""
        self.doc["complete"] = False
        write_json_atomic(self.path, self.doc)

    def finish(self, **counts) -> None:
        """Record the export complete, with ``counts`` (and anything else the exporter keeps: JSON values)."""
        self.doc.update(complete=True, **counts)
        write_json_atomic(self.path, self.doc)

    def get(self, key: str, default=None):
        return self.doc.get(key, default)
