"""Every registered render backend and scene source keeps its interface's contract (one generic test each).

As timm tests every registered model with one parametrized test, these tests
run over ``renderers.backends.available_backends()`` and
``renderers.sources.available_sources()``. Each entry needs a recipe below (a
small scene for a backend, a small file in its format for a source): a newly
registered entry without one fails :func:`test_every_registered_entry_has_a_recipe`
and its own contract test, so nothing is registered untested. A backend whose
engine does not import here (``check_available`` raises
``BackendUnavailable``: habitat-sim is conda-only) is skipped with the reason.

The backend contract (``renderers/backends/__init__.py``, docs/design.md,
"Conventions"): ``open`` returns a context manager that renders views of the
requested size, ``rgb`` (H, W, 3) uint8 black where nothing is hit, ``depth``
(H, W) float32 planar z in metres along the camera's +z, 0 where nothing is
hit, ``valid_fraction`` the share of non-zero depths; the camera is OpenCV's
with ``K``'s pixel centres at integers and ``cam2world`` 4x4, so each pixel's
depth is where the ray of :func:`renderers.camera.pixel_rays` meets the scene;
depth is the pixel centre's at every ``--antialias`` level; the same view
renders to the same bytes; views own their arrays; ``raycaster()`` answers
geometric queries on the scene's triangles.

The source contract (``renderers/sources/__init__.py``, docs/design.md,
"Conventions"): a location loads into a valid :class:`Scene` (finite float32
vertices, uint32 faces in range, the file's colours and texture coordinates
in shape) named by ``scene_id``, in the Y-up world (a Z-up file turned by
``(x, y, z)_world = (x, z, -y)_file``, a rotation, so volumes keep their sign),
with ``source`` recording where it came from; a missing or broken location
raises :class:`SceneFormatError` naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from renderers.backends import (
    ANTIALIAS,
    LIGHTING,
    BackendUnavailable,
    RenderedView,
    SceneRenderer,
    available_backends,
    build_raycaster,
    get_backend,
)
from renderers.camera import intrinsics_from_hfov, pixel_rays
from renderers.scene import Y_UP_FROM_Z_UP, Scene, SceneFormatError
from renderers.sources import available_sources, get_source, load_scene
from tests.rooms import LEVEL, box_faces, pose, rotation, scene_of
from tests.writers.gltf import GlbImage, GlbMesh, textured_material, write_glb
from tests.writers.ply import write_ply

WIDTH, HEIGHT, HFOV = 37, 23, 70.0  # odd and not square: a transposed or off-centre image shows
DEPTH_ATOL, DEPTH_RTOL = 1e-3, 1e-3  # metres, and relative: a pixel's depth against the reference ray's hit
BOUNDS_TOL = 1e-5  # metres: a loaded scene's bounding box against the one written

ROOM = (5.0, 2.6, 4.0)  # metres (x, y up, z): the test room's inside, floor at y = 0, no ceiling


def world_room() -> Scene:
    """A room open to the sky, with a table top and a cabinet: asymmetric, so flips and shifts show."""
    return scene_of(
        box_faces((0, 0, 0), ROOM, skip=("ymax",)),
        box_faces((1.0, 0.72, 1.0), (2.2, 0.76, 1.8), inward=False),
        box_faces((3.5, 0.0, 0.2), (4.6, 2.0, 0.8), inward=False),
        name="open-room",
    )


def z_up_file(vertices: np.ndarray) -> np.ndarray:
    """World (Y-up) points as a Z-up file stores them: the inverse of ``(x, y, z)_world = (x, z, -y)_file``."""
    return np.stack([vertices[:, 0], -vertices[:, 2], vertices[:, 1]], axis=1).astype(np.float32)


def signed_volume(scene: Scene) -> float:
    """Sum of the faces' signed tetrahedron volumes: closed boxes give their volumes, a reflection flips the sign."""
    t = scene.vertices[scene.faces.astype(np.int64)].astype(np.float64)
    return float(np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6)


# ----------------------------------------------------------------------------- recipes: backends


def room_in_memory(tmp_path: Path) -> Scene:
    return world_room()


def room_from_glb(tmp_path: Path) -> Scene:
    """The room as a Habitat stage: a Z-up glb on disk (the habitat backend loads the file itself)."""
    room = world_room()
    path = tmp_path / "open-room.glb"
    path.write_bytes(write_glb([GlbMesh(z_up_file(room.vertices), room.faces)]))
    return load_scene("gltf", path, up="z")


@dataclass(frozen=True)
class BackendRecipe:
    scene: Callable[[Path], Scene]  # a small scene this backend renders, built under a temporary folder
    agreement: float  # share of pixels whose depth must match the reference ray's (a GPU may differ at silhouettes)


BACKEND_RECIPES = {
    "raycast": BackendRecipe(room_in_memory, agreement=1.0),
    "habitat": BackendRecipe(room_from_glb, agreement=0.98),
}

POSES = {  # cam2world in the room: one sees the sky above the far wall, one only the room
    "towards the sky": pose(rotation((1, 0, 0), 25) @ LEVEL, (2.5, 1.5, 3.5)),
    "down, turned and rolled": pose(rotation((0, 1, 0), 30) @ LEVEL @ rotation((1, 0, 0), -35)
                                    @ rotation((0, 0, 1), 8), (1.0, 2.0, 3.0)),  # fmt: skip
}


def reference_depth(scene: Scene, K: np.ndarray, cam2world: np.ndarray) -> np.ndarray:
    """(H, W) planar depth where each pixel's ray (:func:`pixel_rays`, camera z = 1) meets the scene, 0 if not."""
    directions = pixel_rays(K, WIDTH, HEIGHT) @ np.asarray(cam2world)[:3, :3].T  # (H, W, 3)
    origins = np.broadcast_to(np.asarray(cam2world)[:3, 3], directions.shape)
    rays = np.concatenate([origins, directions], axis=-1).astype(np.float32)
    import open3d as o3d

    t = build_raycaster(scene).cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    return np.where(np.isfinite(t), t, 0.0).astype(np.float32)


def assert_view(view: RenderedView, reference: np.ndarray, agreement: float) -> None:
    assert isinstance(view, RenderedView)
    assert view.rgb.shape == (HEIGHT, WIDTH, 3) and view.rgb.dtype == np.uint8
    assert view.depth.shape == (HEIGHT, WIDTH) and view.depth.dtype == np.float32
    assert np.isfinite(view.depth).all() and (view.depth >= 0).all()
    hit = view.depth > 0
    assert view.valid_fraction == np.count_nonzero(view.depth) / view.depth.size
    assert not view.rgb[~hit].any(), "pixels without a surface must be black"
    assert view.rgb[hit].any(), "the room renders all black"
    same = (hit == (reference > 0)) & (np.abs(view.depth - reference) <= DEPTH_ATOL + DEPTH_RTOL * reference)
    assert same.mean() >= agreement, f"{same.mean():.3f} of the pixels have the reference ray's planar depth"


def recipe_of(recipes: dict, kind: str, name: str):
    """``recipes[name]``; a registered entry without one fails its test (every entry is held to its interface)."""
    if name not in recipes:
        pytest.fail(f"{kind} {name!r} has no recipe in {__file__}: add one")
    return recipes[name]


def runnable_backend(name: str):
    """``(recipe, backend)`` of a registered backend; skipped, with its reason, where its engine does not run here."""
    recipe = recipe_of(BACKEND_RECIPES, "render backend", name)
    backend = get_backend(name)
    try:
        backend.check_available()
    except BackendUnavailable as e:
        pytest.skip(f"render backend {name!r} cannot run here: {e}")
    return recipe, backend


@pytest.mark.parametrize("name", available_backends())
def test_a_backend_keeps_the_contract(tmp_path, name):
    recipe, backend = runnable_backend(name)
    scene = recipe.scene(tmp_path)
    K = intrinsics_from_hfov(WIDTH, HEIGHT, HFOV)
    references = {p: reference_depth(scene, K, c2w) for p, c2w in POSES.items()}
    sky = references["towards the sky"]
    assert 0.1 < (sky > 0).mean() < 0.9 and (references["down, turned and rolled"] > 0).all()  # the poses' premise

    views = {}
    with backend.open(scene) as renderer:
        assert isinstance(renderer, SceneRenderer) and renderer.scene is scene
        assert isinstance(renderer.screening, bool)
        for p, c2w in POSES.items():
            views[p] = renderer.render(K, c2w, WIDTH, HEIGHT)
            assert_view(views[p], references[p], recipe.agreement)
        kept = {p: (v.rgb.copy(), v.depth.copy()) for p, v in views.items()}
        again = renderer.render(K, POSES["towards the sky"], WIDTH, HEIGHT)  # deterministic
        assert again.rgb.tobytes() == kept["towards the sky"][0].tobytes()
        assert again.depth.tobytes() == kept["towards the sky"][1].tobytes()
        for p, (rgb, depth) in kept.items():  # a later render leaves earlier views as they were
            assert views[p].rgb.tobytes() == rgb.tobytes() and views[p].depth.tobytes() == depth.tobytes()
        # raycaster(): the scene's triangles for geometric queries; the centre pixel's ray is the optical axis
        import open3d as o3d

        c2w = POSES["down, turned and rolled"]
        axis = np.concatenate([c2w[:3, 3], c2w[:3, 2]]).astype(np.float32)[None]
        t = renderer.raycaster().cast_rays(o3d.core.Tensor(axis))["t_hit"].numpy()[0]
        centre = views["down, turned and rolled"].depth[HEIGHT // 2, WIDTH // 2]
        assert t == pytest.approx(centre, abs=DEPTH_ATOL, rel=DEPTH_RTOL)

    with backend.open(scene) as fresh:  # a new renderer of the same scene: the same bytes
        view = fresh.render(K, POSES["towards the sky"], WIDTH, HEIGHT)
    assert view.rgb.tobytes() == kept["towards the sky"][0].tobytes()
    assert view.depth.tobytes() == kept["towards the sky"][1].tobytes()


@pytest.mark.parametrize("name", available_backends())
def test_a_backend_takes_every_render_option_and_keeps_depth(tmp_path, name):
    """Every ``--antialias`` and ``--lighting`` value opens; depth is the pixel centre's at each."""
    recipe, backend = runnable_backend(name)
    scene = recipe.scene(tmp_path)
    K, c2w = intrinsics_from_hfov(WIDTH, HEIGHT, HFOV), POSES["towards the sky"]
    depths = set()
    for antialias in ANTIALIAS:
        for lighting in LIGHTING:
            with backend.open(scene, antialias=antialias, lighting=lighting) as renderer:
                view = renderer.render(K, c2w, WIDTH, HEIGHT)
            assert view.rgb.shape == (HEIGHT, WIDTH, 3) and view.rgb.dtype == np.uint8
            depths.add(view.depth.tobytes())
    assert len(depths) == 1


# ----------------------------------------------------------------------------- recipes: sources


@dataclass(frozen=True)
class SourceCase:
    """A small scene written in a source's format, and what loading it must give."""

    location: str
    bounds: dict[str, tuple]  # up -> the loaded scene's (min, max) corners
    file_to_world: dict[str, np.ndarray]  # up -> the transform applied on load
    signed_volume: float | None  # of the loaded scene (None: not known beforehand)
    missing: str  # a location with no scene at it
    broken: str  # a location with a scene that cannot be read


def write_room_glb(folder: Path) -> SourceCase:
    """The room as a textured Z-up glb (a PNG, texture coordinates)."""
    room = world_room()
    file_vertices = z_up_file(room.vertices)
    uvs = (room.vertices[:, [0, 2]] / np.array([ROOM[0], ROOM[2]])).astype(np.float32)
    ok, png = cv2.imencode(".png", np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    glb = write_glb([GlbMesh(file_vertices, room.faces, uvs=uvs, material=0)],
                    images=[GlbImage(png.tobytes(), "image/png")], materials=[textured_material(0)])  # fmt: skip
    return file_case(folder, "room.glb", glb, room, file_vertices, broken=glb[: len(glb) // 2])


def write_room_ply(folder: Path) -> SourceCase:
    """The room as a binary Z-up PLY with vertex colours (as ScanNet ships)."""
    room = world_room()
    file_vertices = z_up_file(room.vertices)
    ply = write_ply(file_vertices, room.faces.astype(np.int64), room.vertex_colors)
    return file_case(folder, "room.ply", ply, room, file_vertices, broken=ply[: len(ply) - 20])


def file_case(folder: Path, name: str, data: bytes, room: Scene, file_vertices: np.ndarray, broken: bytes) -> SourceCase:
    path, bad = folder / name, folder / f"broken-{name}"
    path.write_bytes(data)
    bad.write_bytes(broken)
    return SourceCase(
        location=str(path),
        bounds={"z": room.bounds, "y": (file_vertices.min(axis=0), file_vertices.max(axis=0))},
        file_to_world={"z": Y_UP_FROM_Z_UP, "y": np.eye(4)},
        signed_volume=signed_volume(room),
        missing=str(folder / f"absent-{name}"),
        broken=str(bad),
    )


def synthetic_case(folder: Path) -> SourceCase:
    """Synthetic scenes are built Y-up in memory: ``up`` changes nothing; the floor is at y = 0."""
    extras = load_scene("synthetic", "small/0").extras
    lo = np.min([r["min"] for r in extras["rooms"]], axis=0)
    hi = np.max([r["max"] for r in extras["rooms"]], axis=0)
    return SourceCase(
        location="small/0",
        bounds={"z": (lo, hi), "y": (lo, hi)},
        file_to_world={"z": np.eye(4), "y": np.eye(4)},
        signed_volume=None,
        missing="nowhere/0",
        broken="small/zero",
    )


SOURCE_RECIPES: dict[str, Callable[[Path], SourceCase]] = {
    "gltf": write_room_glb,
    "ply": write_room_ply,
    "synthetic": synthetic_case,
}
SYNTHETIC_BOUNDS_TOL = 0.01  # metres: walls and slabs stand a few millimetres beyond the rooms' boxes


@pytest.mark.parametrize("up", ["z", "y"])
@pytest.mark.parametrize("name", available_sources())
def test_a_source_keeps_the_contract(tmp_path, name, up):
    case = recipe_of(SOURCE_RECIPES, "scene source", name)(tmp_path)
    source = get_source(name)
    if source.suffixes:
        assert Path(case.location).suffix in source.suffixes
    scene = source.load(case.location, scene_id="the-id", up=up)
    assert isinstance(scene, Scene) and scene.name == "the-id"
    assert scene.validate() is scene  # shapes, dtypes, index ranges, finiteness
    assert scene.vertices.dtype == np.float32 and np.isfinite(scene.vertices).all()
    assert scene.faces.dtype == np.uint32 and scene.num_triangles > 0 and int(scene.faces.max()) < len(scene.vertices)
    assert case.location in scene.source
    np.testing.assert_allclose(scene.file_to_world, case.file_to_world[up], atol=1e-12)
    tol = BOUNDS_TOL if case.signed_volume is not None else SYNTHETIC_BOUNDS_TOL
    for got, want in zip(scene.bounds, case.bounds[up]):
        np.testing.assert_allclose(got, want, atol=tol)
    if case.signed_volume is not None:  # a rotation, not a reflection
        assert signed_volume(scene) == pytest.approx(case.signed_volume, rel=1e-5)
    loaded = load_scene(name, case.location, up=up)  # the registry's entry point gives the same scene
    assert loaded.vertices.tobytes() == scene.vertices.tobytes() and loaded.faces.tobytes() == scene.faces.tobytes()


@pytest.mark.parametrize("name", available_sources())
def test_a_source_names_a_missing_or_broken_location(tmp_path, name):
    case = recipe_of(SOURCE_RECIPES, "scene source", name)(tmp_path)
    for location in (case.missing, case.broken):
        with pytest.raises(SceneFormatError) as err:
            load_scene(name, location, up="z")
        assert location in str(err.value) and err.value.path == location
        assert "\n" not in str(err.value)


def test_every_registered_entry_has_a_recipe():
    """A backend or source registered without a recipe here would go untested: name it."""
    backends, sources = set(available_backends()), set(available_sources())
    assert backends == set(BACKEND_RECIPES), (
        f"render backends without a recipe: {sorted(backends - set(BACKEND_RECIPES))}; "
        f"recipes for no backend: {sorted(set(BACKEND_RECIPES) - backends)}"
    )
    assert sources == set(SOURCE_RECIPES), (
        f"scene sources without a recipe: {sorted(sources - set(SOURCE_RECIPES))}; "
        f"recipes for no source: {sorted(set(SOURCE_RECIPES) - sources)}"
    )
