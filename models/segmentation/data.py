"""Synthetic scenes with pixel-exact ground truth, for the ECO-M2F segmentation family.

Every scene is drawn from one seed. Object classes are SHAPES (disk, square, triangle, cross).
By default every object wears its class's colour (a local cue), lit by ONE illuminant for the
whole scene whose strength grows with difficulty: in a hard scene a colour no longer names its
class by itself, and the class must be read from the colours of the other objects and the
background (the shared illuminant) or from the outline, both context beyond a local receptive
field. A per-image difficulty d in [0, 1] sets how hard the scene is:

    objects    1 + round(d * (max_objects - 1))   more objects, more occlusion
    scale      radius in [r_min, r_max] shrinks with d
    noise      Gaussian std  noise_min + d * (noise_max - noise_min)
    contrast   object colours are pulled towards the background colour by d * max_blend
    clutter    round(d * max_clutter) background-labelled lines and blobs
    illuminant per-channel gains exp(N(0, (d * max_tint)^2)) on the whole scene
    colour     an object wears its class colour with probability colour_cue (times (1 - d) when
               cue_fades), else a random one

so an image with d near 0 is one clean, large shape in its class colour (an early encoder exit
should suffice) and one with d near 1 is several small, occluded, noisy, tinted shapes among
clutter. Two further options make context matter differently (off by default): `palette_sign`
(two class palettes, named by a black-and-white sign somewhere in the scene) and a fading colour
cue with random colours (`cue_fades`, the original setting: shape only in hard scenes). The label
map is painted with exactly the masks that paint the image (no anti-aliasing), later objects
occlude earlier ones, and the clutter and the sign are labelled background.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

CLASS_NAMES = ("background", "disk", "square", "triangle", "cross")
# A class colour (RGB in [0, 1]) that easy scenes use: a local cue an early exit can read.
CLASS_COLOURS = np.array([[0.5, 0.5, 0.5], [0.85, 0.2, 0.2], [0.2, 0.75, 0.25], [0.2, 0.3, 0.85], [0.9, 0.8, 0.15]])
# The second palette of context scenes: disk <-> square and triangle <-> cross swap colours, so a
# colour alone names two classes and the scene's sign (stripes: palette 0, checks: palette 1) decides.
SWAPPED_PALETTE = np.array([0, 2, 1, 4, 3])
SIGN_SIZE = 8  # side of the palette sign in pixels


@dataclass(frozen=True)
class SceneConfig:
    n_images: int = 3000  # scenes in the whole set (split below)
    image_size: int = 64  # square images, pixels per side
    max_objects: int = 5  # most objects in the hardest scene
    r_min: float = 6.0  # smallest object radius (pixels), reached at difficulty 1
    r_max: float = 20.0  # largest object radius (pixels), reached at difficulty 0
    noise_min: float = 0.01  # pixel noise std at difficulty 0 (image in [0, 1])
    noise_max: float = 0.22  # pixel noise std at difficulty 1
    max_blend: float = 0.55  # how far object colours fade into the background at difficulty 1
    max_clutter: int = 10  # background lines/blobs at difficulty 1
    colour_cue: float = 1.0  # chance an object wears its class colour (see cue_fades); 0 = never
    cue_fades: bool = False  # the colour cue's chance shrinks as (1 - difficulty) (False: colour_cue at every d)
    max_tint: float = 0.5  # std of the scene illuminant's log gain per channel at difficulty 1 (0 = none)
    palette_sign: bool = False  # class colours come from one of two palettes, named by a sign in the scene
    valid_fraction: float = 0.1  # share of scenes held out for the gate's derived dataset check
    test_fraction: float = 0.15  # share of scenes held out for the reported figures
    seed: int = 0  # one seed determines every scene

    @property
    def n_classes(self) -> int:
        return len(CLASS_NAMES)


@dataclass
class Scenes:
    config: SceneConfig
    images: np.ndarray  # (N, H, W, 3) uint8 RGB
    labels: np.ndarray  # (N, H, W) uint8 class ids, 0 = background
    difficulty: np.ndarray  # (N,) float the difficulty each scene was drawn with
    train: np.ndarray  # scene indices for training (steps 1, 2 and 3)
    valid: np.ndarray  # scene indices for model selection of the gate
    test: np.ndarray  # scene indices for the reported figures


def _rotated(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = yy - cy, xx - cx
    return c * dx + s * dy, -s * dx + c * dy  # (H, W) coordinates in the shape's frame


def shape_mask(kind: int, size: int, cy: float, cx: float, radius: float, angle: float) -> np.ndarray:
    """(size, size) bool mask of one shape of class `kind` (1..4)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    u, v = _rotated(yy, xx, cy, cx, angle)
    if kind == 1:  # disk
        return u**2 + v**2 <= radius**2
    if kind == 2:  # square, same area as the disk would be too small: side 1.6 r
        return (np.abs(u) <= 0.8 * radius) & (np.abs(v) <= 0.8 * radius)
    if kind == 3:  # equilateral triangle inscribed in the radius
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            a = 2 * np.pi * k / 3
            inside &= (np.cos(a) * u + np.sin(a) * v) <= 0.5 * radius
        return inside
    if kind == 4:  # plus-shaped cross, arm width 0.6 r
        arm = 0.3 * radius
        return ((np.abs(u) <= radius) & (np.abs(v) <= arm)) | ((np.abs(v) <= radius) & (np.abs(u) <= arm))
    raise ValueError(f"unknown shape class {kind}")


def _background(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A smooth colour gradient plus low-frequency blotches -> (H, W, 3) float, mean colour."""
    base = rng.uniform(0.1, 0.9, 3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    direction = rng.normal(size=2)
    gradient = (direction[0] * yy + direction[1] * xx)[..., None] * rng.uniform(0.0, 0.3, 3)
    coarse = rng.normal(0.0, 0.08, (4, 4, 3))
    blotches = np.kron(coarse, np.ones((size // 4, size // 4, 1)))
    return np.clip(base + gradient + blotches, 0.0, 1.0), base


def _texture(size: int, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stripes of random frequency and orientation around `colour` -> (H, W, 3)."""
    yy, xx = np.mgrid[0:size, 0:size]
    theta, freq = rng.uniform(0, np.pi), rng.uniform(0.15, 0.9)
    stripes = np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy) + rng.uniform(0, 2 * np.pi))
    amplitude = rng.uniform(0.0, 0.2)
    return np.clip(colour + amplitude * stripes[..., None], 0.0, 1.0)


def _clutter(image: np.ndarray, count: int, rng: np.random.Generator) -> None:
    """Thin lines and small blobs in random colours, painted in place (labelled background)."""
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    for _ in range(count):
        colour = rng.uniform(0, 1, 3)
        cy, cx = rng.uniform(0, size, 2)
        if rng.random() < 0.5:
            angle, length = rng.uniform(0, np.pi), rng.uniform(6, 20)
            u, v = _rotated(yy, xx, cy, cx, angle)
            mask = (np.abs(u) <= length / 2) & (np.abs(v) <= 0.7)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(1.5, 3.0) ** 2
        image[mask] = colour


def _paint_sign(image: np.ndarray, palette: int, rng: np.random.Generator) -> np.ndarray:
    """A black-and-white SIGN_SIZE square at a random place: stripes for palette 0, checks for
    palette 1 (in place) -> its (H, W) bool mask (labelled background)."""
    size = image.shape[0]
    top, left = rng.integers(0, size - SIGN_SIZE + 1, 2)
    yy, xx = np.mgrid[0:SIGN_SIZE, 0:SIGN_SIZE] // 2
    pattern = (yy + xx) % 2 if palette else yy % 2  # (S, S) of 0/1
    image[top:top + SIGN_SIZE, left:left + SIGN_SIZE] = pattern[..., None].astype(float)
    mask = np.zeros((size, size), bool)
    mask[top:top + SIGN_SIZE, left:left + SIGN_SIZE] = True
    return mask


def make_scene(cfg: SceneConfig, difficulty: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One scene at `difficulty` -> (image (H, W, 3) uint8, labels (H, W) uint8)."""
    size = cfg.image_size
    image, base = _background(size, rng)
    labels = np.zeros((size, size), np.uint8)
    n_objects = 1 + round(difficulty * (cfg.max_objects - 1))
    r_hi = cfg.r_max - difficulty * (cfg.r_max - cfg.r_min) * 0.7
    r_lo = max(cfg.r_min, r_hi * 0.55)
    clutter_first = round(difficulty * cfg.max_clutter)
    _clutter(image, clutter_first // 2, rng)  # some clutter behind the objects
    palette = int(rng.integers(0, 2)) if cfg.palette_sign else 0
    for _ in range(n_objects):
        kind = int(rng.integers(1, cfg.n_classes))
        radius = rng.uniform(r_lo, r_hi)
        cy, cx = rng.uniform(radius * 0.6, size - radius * 0.6, 2)
        mask = shape_mask(kind, size, cy, cx, radius, rng.uniform(0, 2 * np.pi))
        colour = rng.uniform(0, 1, 3)
        cue = cfg.colour_cue * ((1.0 - difficulty) if cfg.cue_fades else 1.0)
        if cfg.colour_cue > 0 and rng.random() < cue:  # class colour when easy
            shown = SWAPPED_PALETTE[kind] if palette else kind
            colour = np.clip(CLASS_COLOURS[shown] + rng.normal(0.0, 0.08, 3), 0.0, 1.0)
        colour = colour + difficulty * cfg.max_blend * (base - colour)  # low contrast when hard
        image[mask] = _texture(size, colour, rng)[mask]
        labels[mask] = kind
    if cfg.palette_sign:
        labels[_paint_sign(image, palette, rng)] = 0
    clutter_front = clutter_first - clutter_first // 2
    painted = image.copy()
    _clutter(painted, clutter_front, rng)  # clutter in front occludes objects: label it background
    labels[np.any(painted != image, axis=-1)] = 0
    if cfg.max_tint > 0:  # one illuminant for the whole scene (von Kries gains per channel)
        painted = painted * np.exp(rng.normal(0.0, difficulty * cfg.max_tint, 3))
    noise = cfg.noise_min + difficulty * (cfg.noise_max - cfg.noise_min)
    painted = painted + rng.normal(0.0, noise, painted.shape)
    return (np.clip(painted, 0.0, 1.0) * 255).round().astype(np.uint8), labels


def _split(cfg: SceneConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = rng.permutation(cfg.n_images)
    n_valid, n_test = round(cfg.n_images * cfg.valid_fraction), round(cfg.n_images * cfg.test_fraction)
    test, valid = order[:n_test], order[n_test : n_test + n_valid]
    return np.sort(order[n_test + n_valid :]), np.sort(valid), np.sort(test)


def make_scenes(cfg: SceneConfig | None = None) -> Scenes:
    """The whole set from `cfg.seed`; the same config gives the same arrays."""
    cfg = cfg or SceneConfig()
    rng = np.random.default_rng(cfg.seed)
    difficulty = rng.uniform(0.0, 1.0, cfg.n_images)
    images = np.empty((cfg.n_images, cfg.image_size, cfg.image_size, 3), np.uint8)
    labels = np.empty((cfg.n_images, cfg.image_size, cfg.image_size), np.uint8)
    for i, d in enumerate(difficulty):
        images[i], labels[i] = make_scene(cfg, float(d), rng)
    train, valid, test = _split(cfg, rng)
    return Scenes(cfg, images, labels, difficulty, train, valid, test)


def scene_config_dict(cfg: SceneConfig) -> dict:
    return asdict(cfg)


def to_model_input(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32 in [0, 1]: the graphs' `image` input."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def iterate_batches(
    scenes: Scenes, indices: np.ndarray, batch_size: int, rng: np.random.Generator | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(image (B, 3, H, W) float32, labels (B, H, W) int64) batches; shuffled when given an rng."""
    order = rng.permutation(indices) if rng is not None else indices
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        yield to_model_input(scenes.images[rows]), scenes.labels[rows].astype(np.int64)
