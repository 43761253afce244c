"""Procedural textures for the synthetic apartments: seeded, seamless, varied.

Tiling kinds (plaster, wallpaper, brick, tiles, parquet, carpet, wood, fabric,
metal, ceramic, foliage) are seamless and mapped in metres with
``Wrap.REPEAT``; posters and rugs are one image each, mapped ``0..1`` with
``Wrap.CLAMP_TO_EDGE``. Generators take ``(rng, n)`` (or ``(rng, h, w)`` for
images) and return float32 RGB in about [0, 1]; :func:`texture_image` turns a
``(kind, seed, size)`` recipe into a cached uint8 image, and :class:`Palette`
collects a scene's materials and draws their textures when they are used.
"""

from __future__ import annotations

import colorsys
import functools
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from renderers.scene import Material, Texture, Wrap

__all__ = ["IMAGES", "TILING", "Palette", "texture_image"]

TEXTURE_THREADS = 2  # threads drawing one scene's textures

# Generators take (rng, n) and return (n, n, 3) float32 RGB in about [0, 1],
# seamlessly tiling; posters and rugs take (rng, h, w).


def _upsample(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Cubic upsampling of a tiling array to (h, w) (whole multiples of its shape), still tiling."""
    sy, sx = h // a.shape[0], w // a.shape[1]
    p = np.pad(a, 2, mode="wrap")
    big = cv2.resize(p, (p.shape[1] * sx, p.shape[0] * sy), interpolation=cv2.INTER_CUBIC)
    return big[2 * sy : 2 * sy + h, 2 * sx : 2 * sx + w]


def _noise(rng: np.random.Generator, n: int, cells: tuple[int, int], octaves: int = 4):
    """Seamlessly tiling fractal value noise, (n, n) float32, zero mean, unit std.

    ``cells = (cy, cx)`` is the coarsest lattice (powers of two); each octave
    doubles it at half the amplitude. ``cy > cx`` gives streaks along x.
    """
    cy, cx = min(cells[0], n), min(cells[1], n)
    out = rng.standard_normal((cy, cx), dtype=np.float32)
    for k in range(1, octaves):
        cy, cx = min(2 * cy, n), min(2 * cx, n)
        out = _upsample(out, cy, cx) + 0.5**k * rng.standard_normal((cy, cx), dtype=np.float32)
    out = _upsample(out, n, n)
    return (out - out.mean()) / max(float(out.std()), 1e-6)


def _white(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Per-texel grain: uniform, float32, zero mean, unit std."""
    return (rng.random(shape, dtype=np.float32) - 0.5) * np.float32(12**0.5)


def _color(rng, hue=(0.0, 1.0), sat=(0.0, 1.0), val=(0.0, 1.0)) -> np.ndarray:
    """(3,) float32 RGB in [0, 1] drawn from ranges of hue, saturation and value."""
    h, s, v = rng.uniform(*hue) % 1, rng.uniform(*sat), rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32)


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Texel rows (n, 1) and columns (1, n), float32 in [0, 1)."""
    t = np.arange(n, dtype=np.float32) / n
    return t[:, None], t[None, :]


def _shade(color, f) -> np.ndarray:
    """``color`` (3,) or (n, n, 3) times ``1 + f``, f (n, n): (n, n, 3)."""
    return color * (1 + f)[..., None]


def _plaster(rng, n, sat=(0.02, 0.25)):
    base = _color(rng, sat=sat, val=(0.7, 0.95))
    return _shade(base, 0.035 * _noise(rng, n, (4, 4), 6) + 0.02 * _white(rng, n, n))


def _wallpaper(rng, n):
    a = _color(rng, sat=(0.1, 0.5), val=(0.55, 0.95))
    b = np.clip(a * rng.uniform(0.6, 1.3, 3), 0, 1).astype(np.float32)
    y, x = _grid(n)
    k = int(rng.choice([4, 8, 16]))
    if rng.random() < 0.5:  # stripes
        mask = np.broadcast_to(np.floor(x * 2 * k) % 2 == 1, (n, n))
    else:  # dots
        mask = ((y * k) % 1 - 0.5) ** 2 + ((x * k) % 1 - 0.5) ** 2 < rng.uniform(0.03, 0.12)
    return _shade(np.where(mask[..., None], b, a), 0.03 * _noise(rng, n, (8, 8), 3))


def _brick(rng, n):
    rows, per_row = 16, 4  # running bond, 1 m: 25 x 6 cm bricks
    painted = rng.random() < 0.3
    sat, val = ((0, 0.1), (0.8, 0.95)) if painted else ((0.4, 0.7), (0.45, 0.75))
    base = _color(rng, (0, 0.08), sat, val)
    y, x = _grid(n)
    row = (y * rows).astype(np.int32)
    xs = (x + (row % 2) * 0.5 / per_row) % 1
    tint = rng.uniform(-0.15, 0.15, rows * per_row).astype(np.float32)
    brick = row * per_row + (xs * per_row).astype(np.int32)
    img = _shade(base, tint[brick] + 0.06 * _noise(rng, n, (16, 16), 3))
    mortar = ((y * rows) % 1 < 1 / 6) | ((xs * per_row) % 1 < per_row / (6 * rows))
    img[mortar] = _color(rng, sat=(0, 0.1), val=(0.6, 0.85))
    return img


def _tiles(rng, n):
    k = int(rng.choice([2, 4]))  # tiles a side
    a = _color(rng, sat=(0, 0.35), val=(0.5, 0.95))
    b = _color(rng, sat=(0, 0.35), val=(0.3, 0.95)) if rng.random() < 0.3 else a
    y, x = _grid(n)
    ty, tx = (y * k).astype(np.int32), (x * k).astype(np.int32)
    veins = np.abs(np.sin(2 * np.pi * (3 * x + 0.8 * _noise(rng, n, (4, 4), 4)))) < 0.06
    f = rng.uniform(-0.06, 0.06, (k, k)).astype(np.float32)[ty, tx] - rng.uniform(0, 0.15) * veins
    checker = np.where(((ty + tx) % 2 == 0)[..., None], a, b)
    img = _shade(checker, f + 0.02 * _noise(rng, n, (32, 32), 2))
    img[((y * k) % 1 < 0.025) | ((x * k) % 1 < 0.025)] = _color(rng, sat=(0, 0.1), val=(0.3, 0.9))
    return img


def _wood(rng, n, phase=0.0):
    """Grain along u: rings across v, warped by noise, and fibre streaks."""
    light = _color(rng, (0.04, 0.11), (0.35, 0.7), (0.5, 0.85))
    dark = light * np.float32(rng.uniform(0.45, 0.7))
    y, _ = _grid(n)
    warp = 0.3 * _noise(rng, n, (4, 2), 3)
    rings = 0.5 + 0.5 * np.sin(2 * np.pi * (int(rng.integers(6, 16)) * y + phase + warp))
    t = np.clip(rings * rings + 0.12 * _noise(rng, n, (n // 2, 4), 2), 0, 1)
    return dark + (light - dark) * t[..., None]


def _parquet(rng, n):
    rows, per_row = 8, int(rng.integers(2, 5))  # staggered rows of planks
    y, x = _grid(n)
    row = (y * rows).astype(np.int32)
    xs = (x + rng.random(rows).astype(np.float32)[row]) % 1
    plank = row * per_row + (xs * per_row).astype(np.int32)
    img = _wood(rng, n, phase=rng.random(rows * per_row).astype(np.float32)[plank])
    img *= (1 + rng.uniform(-0.15, 0.15, rows * per_row).astype(np.float32))[plank][..., None]
    gap = 1.5 / n
    img[((y * rows) % 1 < gap * rows) | ((xs * per_row) % 1 < gap * per_row)] *= 0.45
    return img


def _carpet(rng, n):
    base = _color(rng, sat=(0.1, 0.6), val=(0.3, 0.8))
    return _shade(base, 0.1 * _white(rng, n, n) + 0.08 * _noise(rng, n, (4, 4), 4))


def _fabric(rng, n):
    a, b = (_color(rng, sat=(0.15, 0.7), val=(0.3, 0.85)) for _ in range(2))
    y, x = _grid(n)
    threads = n // 4
    over = (np.floor(x * threads) + np.floor(y * threads)) % 2 == 0
    weave = np.where(over, np.cos(2 * np.pi * threads * y), np.cos(2 * np.pi * threads * x))
    plaid = int(rng.choice([0, 4, 8]))  # checks of two colours, or plain
    t = ((np.floor(x * plaid) % 2 + np.floor(y * plaid) % 2) / 2)[..., None]
    return _shade(a + (b - a) * t, 0.1 * weave - 0.1 + 0.05 * _noise(rng, n, (16, 16), 2))


def _metal(rng, n):  # brushed
    base = _color(rng, sat=(0, 0.1), val=(0.45, 0.85))
    return _shade(base, 0.08 * _noise(rng, n, (n // 2, 2), 3))


def _ceramic(rng, n):  # glazed bands
    a, b = (_color(rng, sat=(0.1, 0.8), val=(0.3, 0.95)) for _ in range(2))
    y, _ = _grid(n)
    bands = np.sin(2 * np.pi * int(rng.integers(2, 7)) * y + 0.3 * _noise(rng, n, (2, 4), 2))
    t = np.clip(4 * bands, 0, 1)[..., None]
    return _shade(a + (b - a) * t, 0.03 * _noise(rng, n, (8, 8), 3))


def _foliage(rng, n):
    dark = _color(rng, (0.22, 0.38), (0.5, 0.9), (0.1, 0.3))
    light = _color(rng, (0.2, 0.35), (0.4, 0.8), (0.45, 0.8))
    t = 1 / (1 + np.exp(-3 * _noise(rng, n, (16, 16), 3)))
    return dark + (light - dark) * t[..., None]


def _poster(rng, h, w):
    """A gradient under random circles, boxes, polygons, stripes and text-like lines."""
    c1, c2 = _color(rng), _color(rng)
    a = rng.uniform(0, 2 * np.pi)
    y, x = np.arange(h, dtype=np.float32)[:, None] / h, np.arange(w, dtype=np.float32) / w
    t = np.cos(a) * x + np.sin(a) * y  # (h, w)
    img = np.ascontiguousarray(c1 + (c2 - c1) * ((t - t.min()) / (np.ptp(t) + 1e-6))[..., None])
    s = max(h, w)
    for _ in range(int(rng.integers(4, 12))):
        col, kind = tuple(float(c) for c in _color(rng)), rng.integers(5)
        px, py = int(rng.integers(w)), int(rng.integers(h))
        if kind == 0:
            thick = -1 if rng.random() < 0.6 else max(1, s // 40)
            cv2.circle(img, (px, py), int(rng.uniform(0.05, 0.3) * s), col, thick, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (px, py), (int(rng.integers(w)), int(rng.integers(h))), col, -1)
        elif kind == 2:
            corners = rng.integers(0, [w, h], (int(rng.integers(3, 6)), 2)).astype(np.int32)
            cv2.fillPoly(img, [corners], col, cv2.LINE_AA)
        elif kind == 3:  # a band of parallel stripes
            b = rng.uniform(0, np.pi)
            dx, dy = int(2 * s * np.cos(b)), int(2 * s * np.sin(b))
            for k in range(int(rng.integers(3, 8))):
                o = px + k * s // 30
                cv2.line(img, (o - dx, py - dy), (o + dx, py + dy), col, max(1, s // 80))
        else:  # text-like lines
            lh = max(2, s // 40)
            for k in range(int(rng.integers(2, 6))):
                x1 = px + int(rng.uniform(0.1, 0.5) * w)
                cv2.rectangle(img, (px, py + 2 * k * lh), (x1, py + 2 * k * lh + lh), col, -1)
    if rng.random() < 0.5:  # a white margin
        m = max(1, s // 16)
        img[:m], img[-m:], img[:, :m], img[:, -m:] = 0.95, 0.95, 0.95, 0.95
    return img + 0.02 * _white(rng, h, w, 1)


def _rug(rng, h, w):
    """A lattice or banded field, nested border bands and a central medallion."""
    c1, c2, c3 = (_color(rng, sat=(0.3, 0.8), val=(0.25, 0.8)) for _ in range(3))
    s, k = min(h, w), rng.uniform(8, 20)
    yy, xx = np.arange(h, dtype=np.float32)[:, None] / s, np.arange(w, dtype=np.float32) / s
    if rng.random() < 0.6:
        lattice = np.abs(np.sin(k * np.pi * xx)) + np.abs(np.sin(k * np.pi * yy))
        field = lattice < rng.uniform(0.4, 0.9)
    else:  # bands across the rug
        field = np.broadcast_to(np.sin(k * np.pi * (yy if h > w else xx)) > 0.3, (h, w))
    img = np.ascontiguousarray(np.where(field[..., None], c2, c1))
    for i, col in enumerate((c3, c2)):
        m = (i + 1) * s // 12
        cv2.rectangle(img, (m, m), (w - 1 - m, h - 1 - m), tuple(map(float, col)), max(1, s // 30))
    cx, cy, r, col = w // 2, h // 2, s // 4, tuple(map(float, c3))
    if rng.random() < 0.5:
        diamond = np.array([[cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]], np.int32)
        cv2.fillPoly(img, [diamond], col)
    else:
        cv2.ellipse(img, (cx, cy), (r * w // s, r * h // s), 0, 0, 360, col, -1, cv2.LINE_AA)
    return img * (1 + 0.1 * _white(rng, h, w, 1))


# kind -> (generator, metres one repeat of the texture spans on a surface)
TILING = {
    "plaster": (_plaster, 2.0),
    "ceiling": (functools.partial(_plaster, sat=(0.0, 0.05)), 2.0),
    "wallpaper": (_wallpaper, 1.0),
    "brick": (_brick, 1.0),
    "tiles": (_tiles, 1.2),
    "parquet": (_parquet, 1.5),
    "carpet": (_carpet, 1.0),
    "wood": (_wood, 1.0),
    "fabric": (_fabric, 0.5),
    "metal": (_metal, 0.5),
    "ceramic": (_ceramic, 0.5),
    "foliage": (_foliage, 0.5),
}
IMAGES = {"poster": _poster, "rug": _rug}  # span 0..1 once, clamped


@functools.lru_cache(maxsize=64)  # about one large scene (48 MB)
def texture_image(kind: str, seed: int, height: int, width: int) -> np.ndarray:
    """One texture image, (height, width, 3) uint8, read-only (the cache shares it)."""
    rng = np.random.default_rng(seed)
    img = TILING[kind][0](rng, height) if kind in TILING else IMAGES[kind](rng, height, width)
    img = img * np.float32(255) + np.float32(0.5)
    out = np.clip(img, 0, 255, out=img).astype(np.uint8)
    out.setflags(write=False)
    return out


class Palette:
    """The materials of one scene, each with its own seeded texture, made when used."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng, self.size = rng, size
        self.recipes: list[tuple[str, int, tuple[int, int]]] = []  # kind, seed, (height, width)
        self.metres: list[float] = []  # span of one texture repeat; 0: clamped 0..1

    def add(self, kind: str, aspect: float = 1.0) -> int:
        """Add a material of a kind (``aspect``: an image's width / height); its index."""
        n, metres = self.size, TILING[kind][1] if kind in TILING else 0.0
        if metres:
            shape = (n, n)
        else:  # the longer side n
            shape = (n, max(8, round(n * aspect))) if aspect < 1 else (max(8, round(n / aspect)), n)
        self.recipes.append((kind, int(self.rng.integers(2**31)), shape))
        self.metres.append(metres)
        return len(self.recipes) - 1

    def materials(self, used: np.ndarray) -> tuple[Material, ...]:
        """The materials at indices ``used``, with their textures (drawn on TEXTURE_THREADS)."""
        recipes = [self.recipes[i] for i in used]
        with ThreadPoolExecutor(TEXTURE_THREADS) as pool:  # numpy and cv2 release the GIL
            images = list(pool.map(lambda r: texture_image(r[0], r[1], *r[2]), recipes))
        out = []
        for i, (kind, seed, _), image in zip(used, recipes, images):
            wrap = Wrap.REPEAT if self.metres[i] else Wrap.CLAMP_TO_EDGE
            tex = Texture(image, wrap, wrap, name=f"synthetic {kind} (seed {seed})")
            out.append(Material(name=f"{kind}_{len(out)}", texture=tex))
        return tuple(out)
