"""A small synthetic anomaly-detection set in exactly the MVTec AD layout, for CPU demos and tests.

Textures are random crops of scikit-image's real grayscale photos (brick, grass, gravel), tinted; the object
is a procedural hexagonal nut on a plain background with small pose jitter. Test defects are painted with
their masks: ``scratch`` (thin contrasting polyline), ``hole`` (dark ellipse), ``stain`` (blended colour blob)
and, for the object, ``missing`` (a wedge replaced by background). Every image has its own RNG seeded from
(seed, category, split, defect, index), so output is byte-identical per seed and independent of which
categories or counts are requested.
"""

from __future__ import annotations

import json
import shutil
import time
import zlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SYNTHETIC_TEXTURES: tuple[str, ...] = ("brick", "grass", "gravel")
SYNTHETIC_OBJECTS: tuple[str, ...] = ("nut",)
SYNTHETIC_CATEGORIES: tuple[str, ...] = SYNTHETIC_TEXTURES + SYNTHETIC_OBJECTS
SYNTHETIC_DEFECTS: dict[str, tuple[str, ...]] = {
    **{t: ("hole", "scratch", "stain") for t in SYNTHETIC_TEXTURES},
    "nut": ("hole", "missing", "scratch", "stain"),
}
MARKER = ".rdbench_synthetic.json"  # lets make_synthetic overwrite its own output but nothing else

_TINT = {"brick": (1.15, 0.72, 0.55), "grass": (0.7, 1.05, 0.5), "gravel": (1.0, 0.95, 0.85)}
_STAIN_COLOURS = np.array(
    [(150, 60, 20), (40, 70, 170), (210, 190, 40), (100, 30, 110), (30, 130, 60)], float
)
_SCRATCH_COLOURS = np.array(
    [(20, 20, 25), (240, 238, 225), (225, 40, 40), (40, 90, 225), (30, 175, 75)], float
)
_NUT_BG = np.array((52.0, 58.0, 70.0))


@dataclass
class _Scene:
    image: np.ndarray  # H x W x 3 float, already quantised to integers
    support: np.ndarray  # H x W bool: where defects may go (the object, or everywhere for textures)
    background: np.ndarray | None = None  # what 'missing' reveals
    centre: tuple[float, float] = (0.0, 0.0)


def _rng(seed: int, category: str, split: str, defect: str | None, index: int) -> np.random.Generator:
    names = [zlib.crc32(s.encode()) for s in (category, split, defect or "")]  # stable across processes
    return np.random.default_rng([seed, *names, index])


@cache
def _photo(name: str) -> np.ndarray:
    import skimage.data  # lazy: only the generator needs scikit-image

    return getattr(skimage.data, name)()


def _smooth_noise(rng: np.random.Generator, size: int, cells: int = 8) -> np.ndarray:
    """Smooth random field in about [-1, 1] (bicubic upsampling of a coarse Gaussian grid)."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC)) / 1.5


def _texture(name: str, rng: np.random.Generator, size: int) -> _Scene:
    photo = _photo(name)
    side = int(round(rng.uniform(0.55, 0.65) * photo.shape[0]))
    y, x = rng.integers(0, photo.shape[0] - side + 1), rng.integers(0, photo.shape[1] - side + 1)
    crop = photo[y : y + side, x : x + side]
    # flips only: a 90 degree turn would make brick rows vertical, which should count as anomalous
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1]
    gray = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BILINEAR), float)
    rgb = gray[..., None] * rng.uniform(0.92, 1.08) * np.array(_TINT[name])
    return _Scene(np.round(np.clip(rgb, 0, 255)), np.ones((size, size), bool))


def _nut(rng: np.random.Generator, size: int) -> _Scene:
    cy, cx = size / 2 + rng.uniform(-0.03, 0.03, 2) * size
    scale = size * rng.uniform(0.97, 1.03)
    rot = np.deg2rad(rng.uniform(-8, 8))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    dy, dx = yy - cy, xx - cx
    r, theta = np.hypot(dx, dy), np.arctan2(dy, dx)
    apothem, r_in = 0.29 * scale, 0.12 * scale
    sector = np.mod(theta - rot, np.pi / 3) - np.pi / 6
    # signed distance to the hexagon edge along its normal; clip(0.5 - d) gives 1-pixel anti-aliasing
    cover = np.clip(0.5 - (r * np.cos(sector) - apothem), 0, 1) * np.clip(0.5 + (r - r_in), 0, 1)
    background = _NUT_BG + rng.normal(0, 1.5, (size, size, 1))
    shade = 165 * rng.uniform(0.95, 1.05) * (1 + 0.15 * np.cos(theta + np.pi / 4))  # fixed light, top-left
    thread = (r < 1.4 * r_in) * (0.8 + 0.08 * np.sin(r / (0.012 * scale)))  # darker threaded bore
    metal = (shade * np.where(r < 1.4 * r_in, thread, 1.0))[..., None] * np.array((1.0, 0.97, 0.9))
    metal = metal + rng.normal(0, 3, (size, size, 1))
    img = background * (1 - cover[..., None]) + metal * cover[..., None]
    return _Scene(np.round(np.clip(img, 0, 255)), cover > 0.99, np.round(background), (cy, cx))


def _ellipse(rng: np.random.Generator, size: int, centre: np.ndarray, area: float) -> np.ndarray:
    aspect, angle = rng.uniform(0.45, 1.0), rng.uniform(0, np.pi)
    a = np.sqrt(area * size * size / (np.pi * aspect))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    dy, dx = yy - centre[0], xx - centre[1]
    u, v = dx * np.cos(angle) + dy * np.sin(angle), -dx * np.sin(angle) + dy * np.cos(angle)
    return (u / a) ** 2 + (v / (a * aspect)) ** 2


def _pick_centre(rng: np.random.Generator, scene: _Scene) -> np.ndarray:
    size = scene.support.shape[0]
    ok = scene.support.copy()
    lo, hi = int(0.2 * size), int(0.8 * size)  # keep defects mostly inside the frame
    ok[:lo], ok[hi:], ok[:, :lo], ok[:, hi:] = False, False, False, False
    ys, xs = np.nonzero(ok if ok.any() else scene.support)
    i = rng.integers(len(ys))
    return np.array([ys[i] + 0.5, xs[i] + 0.5])


def _far_colour(rng: np.random.Generator, scene: _Scene, palette: np.ndarray, k: int) -> np.ndarray:
    """One of the k palette colours farthest from *every* surface colour of the clean image (nearest-neighbour
    distance, not distance to the mean: gravel has both black shadows and white stones)."""
    px = scene.image[scene.support][::7]
    dist = np.linalg.norm(px[:, None, :] - palette[None], axis=-1).min(0)
    return palette[rng.choice(np.argsort(-dist)[:k])]


def _defect(
    kind: str, scene: _Scene, rng: np.random.Generator, is_object: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Return (painted image, region); the caller copies painted pixels inside region only."""
    size, img = scene.support.shape[0], scene.image
    area_lo, area_hi = (0.01, 0.04) if is_object else (0.02, 0.07)  # objects cover ~25% of the frame
    if kind == "hole":
        region = _ellipse(rng, size, _pick_centre(rng, scene), rng.uniform(area_lo, area_hi)) <= 1
        painted = 0.12 * img + 8 + rng.normal(0, 2, img.shape)  # dark, keeps a faint trace of the surface
    elif kind == "stain":
        q = _ellipse(rng, size, _pick_centre(rng, scene), rng.uniform(area_lo, area_hi))
        region = q <= 1 + 0.45 * _smooth_noise(rng, size)  # ragged blob edge
        alpha = rng.uniform(0.7, 0.9)  # translucent, yet clearly off-colour
        painted = (1 - alpha) * img + alpha * _far_colour(rng, scene, _STAIN_COLOURS, 2)
    elif kind == "scratch":
        pts = [_pick_centre(rng, scene)[::-1]]
        heading, seg = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.55) * size / 4
        for _ in range(4):
            heading += rng.uniform(-0.6, 0.6)
            pts.append(pts[-1] + seg * np.array([np.cos(heading), np.sin(heading)]))
        canvas = Image.new("L", (size, size), 0)
        width = max(2, int(round(rng.uniform(2.5, 5.0) * size / 256)))
        ImageDraw.Draw(canvas).line([tuple(p) for p in pts], fill=255, width=width, joint="curve")
        region = np.asarray(canvas) > 0
        painted = _far_colour(rng, scene, _SCRATCH_COLOURS, 1) + rng.normal(0, 4, img.shape)
    elif kind == "missing":
        if scene.background is None:
            raise ValueError("'missing' needs an object category")
        yy, xx = np.mgrid[0:size, 0:size] + 0.5
        polar = np.arctan2(yy - scene.centre[0], xx - scene.centre[1])
        ang = np.mod(polar - rng.uniform(0, 2 * np.pi), 2 * np.pi)
        region = ang < np.deg2rad(rng.uniform(40, 75))
        painted = scene.background
        return painted, region & (scene.image != scene.background).any(-1)
    else:
        raise ValueError(f"unknown defect type {kind!r}")
    return painted, region & scene.support


def render_sample(
    category: str,
    seed: int = 0,
    index: int = 0,
    defect: str | None = None,
    size: int = 256,
    split: str = "test",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sample as (clean uint8 HxWx3, image uint8 HxWx3, mask bool HxW); image == clean outside mask."""
    if category not in SYNTHETIC_CATEGORIES:
        raise ValueError(f"unknown synthetic category {category!r}; valid: {', '.join(SYNTHETIC_CATEGORIES)}")
    rng = _rng(seed, category, split, defect, index)
    is_object = category in SYNTHETIC_OBJECTS
    scene = _nut(rng, size) if is_object else _texture(category, rng, size)
    clean = scene.image.astype(np.uint8)
    if defect is None:
        return clean, clean.copy(), np.zeros((size, size), bool)
    if defect not in SYNTHETIC_DEFECTS[category]:
        raise ValueError(f"{category!r} has defects {SYNTHETIC_DEFECTS[category]}, not {defect!r}")
    for _ in range(20):  # redraw (deterministically) the rare defect that lands almost outside the object
        painted, region = _defect(defect, scene, rng, is_object)
        if region.sum() >= 0.002 * size * size:
            break
    out = np.where(region[..., None], np.round(np.clip(painted, 0, 255)), scene.image).astype(np.uint8)
    return clean, out, region


@dataclass(frozen=True)
class SyntheticCategory:
    name: str
    kind: str  # "texture" | "object"
    path: Path
    n_train: int
    n_test_good: int
    defects: dict[str, int]  # defect type -> number of test images

    @property
    def n_test(self) -> int:
        return self.n_test_good + sum(self.defects.values())


@dataclass(frozen=True)
class SyntheticSummary:
    root: Path
    seed: int
    size: int
    categories: dict[str, SyntheticCategory] = field(default_factory=dict)
    seconds: float = 0.0

    def __str__(self) -> str:
        parts = ", ".join(f"{c.name}: {c.n_train} train / {c.n_test} test" for c in self.categories.values())
        return f"{self.root} (seed {self.seed}, {self.size}px; {parts}) in {self.seconds:.1f} s"


def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # compress_level=1: encoding dominates run time and noisy textures barely compress anyway;
    # no timestamps or metadata are written, so the bytes depend on the pixels only
    Image.fromarray(arr).save(path, format="PNG", compress_level=1)


def _prepare(cat_dir: Path) -> None:
    if cat_dir.exists():
        if (cat_dir / MARKER).is_file():
            shutil.rmtree(cat_dir)  # our own earlier output: regenerate from scratch, no stale files
        elif any(cat_dir.iterdir()):
            raise FileExistsError(
                f"{cat_dir} exists and was not written by make_synthetic; not overwriting it"
            )


def make_synthetic(
    out_dir: str | Path,
    seed: int = 0,
    categories: tuple[str, ...] | list[str] | None = None,
    n_train: int = 40,
    n_test_good: int = 10,
    n_test_bad: int = 20,
    size: int = 256,
) -> SyntheticSummary:
    """Write ``<out_dir>/<category>/{train,test,ground_truth}`` for each category; n_test_bad is per category,
    split as evenly as possible across that category's defect types."""
    start = time.perf_counter()
    root = Path(out_dir).expanduser()
    cats = tuple(categories) if categories is not None else SYNTHETIC_CATEGORIES
    unknown = [c for c in cats if c not in SYNTHETIC_CATEGORIES]
    if unknown:
        raise ValueError(f"unknown synthetic categories {unknown}; valid: {', '.join(SYNTHETIC_CATEGORIES)}")
    if min(n_train, n_test_good, n_test_bad) < 0 or n_train == 0 or size < 32:
        raise ValueError("need n_train >= 1, non-negative test counts and size >= 32")
    summary: dict[str, SyntheticCategory] = {}
    for cat in cats:
        cat_dir = root / cat
        _prepare(cat_dir)
        for i in range(n_train):
            _save(
                render_sample(cat, seed, i, None, size, "train")[1], cat_dir / "train/good" / f"{i:03d}.png"
            )
        for i in range(n_test_good):
            _save(render_sample(cat, seed, i, None, size)[1], cat_dir / "test/good" / f"{i:03d}.png")
        kinds = SYNTHETIC_DEFECTS[cat]
        counts = {d: n_test_bad // len(kinds) + (j < n_test_bad % len(kinds)) for j, d in enumerate(kinds)}
        for defect, n in counts.items():
            for i in range(n):
                _, img, mask = render_sample(cat, seed, i, defect, size)
                _save(img, cat_dir / "test" / defect / f"{i:03d}.png")
                _save(mask.astype(np.uint8) * 255, cat_dir / "ground_truth" / defect / f"{i:03d}_mask.png")
        kind = "object" if cat in SYNTHETIC_OBJECTS else "texture"
        meta = {"generator": "rdbench.data.synthetic", "seed": seed, "size": size, "kind": kind,
                "n_train": n_train, "n_test_good": n_test_good, "defects": counts}  # fmt: skip
        (cat_dir / MARKER).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        nonzero = {k: v for k, v in counts.items() if v}
        summary[cat] = SyntheticCategory(cat, kind, cat_dir, n_train, n_test_good, nonzero)
    return SyntheticSummary(root, seed, size, summary, time.perf_counter() - start)
