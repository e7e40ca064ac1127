"""A deterministic synthetic video clip with ground truth: for the demo, tests and (later) training.

A clip is a textured background plus textured sprites (ellipse, rectangle or polygon) that move
along smooth paths, rotating and scaling a little. Each sprite is a small RGB texture with an
alpha mask in its own coordinates; a frame is rendered by mapping every pixel near the sprite
back into sprite coordinates (nearest neighbour), so the texture moves with the object. Sprites
are drawn in order, later ones on top, so the ground-truth label image (pixel = object id)
already handles overlap. Nothing limits a path to the frame, so occlusion and objects that leave
and re-enter the frame are a matter of choosing paths (see ``MotionPath``); ``make_sample_clip``
keeps both objects apart and inside the frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from edgetam_core.io import write_label_png
from edgetam_core.types import Prompt

SHAPE_KINDS = ("ellipse", "rectangle", "polygon")


# Textures -----------------------------------------------------------------------------------------
def smooth_noise(
    rng: np.random.Generator, height: int, width: int, cell: int, channels: int = 3
) -> np.ndarray:
    """Low-frequency noise in 0..1: a random grid of ``cell``-pixel cells, bicubic-upsampled."""
    gh, gw = max(2, height // cell + 2), max(2, width // cell + 2)
    grid = rng.random((gh, gw, channels), dtype=np.float32)
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(grid[..., c])).resize(
                (width, height), Image.Resampling.BICUBIC
            )
        )
        for c in range(channels)
    ]
    return np.clip(np.stack(planes, axis=-1), 0.0, 1.0)


def make_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A muted, textured background: ``(H, W, 3)`` float32 in 0..255.

    Mostly brightness variation (coarse blotches + finer grain) over a greyish tint, so the
    saturated objects stand out but the background is not flat.
    """
    tint = rng.uniform(90, 140, size=3).astype(np.float32)
    coarse = smooth_noise(rng, height, width, cell=max(8, min(height, width) // 5), channels=1)
    fine = smooth_noise(rng, height, width, cell=6, channels=1)
    colour = smooth_noise(rng, height, width, cell=max(8, min(height, width) // 3))
    light = 90.0 * (coarse - 0.5) + 35.0 * (fine - 0.5)
    return np.clip(tint + light + 30.0 * (colour - 0.5), 0, 255).astype(np.float32)


def make_object_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A saturated, patterned texture (stripes + blotches): ``(size, size, 3)`` float32."""
    colour = np.zeros(3, dtype=np.float32)
    hi = int(rng.integers(3))
    colour[hi] = rng.uniform(200, 255)
    colour[(hi + 1 + int(rng.integers(2))) % 3] = rng.uniform(40, 140)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(6, 14)
    stripes = 0.5 + 0.5 * np.sin(
        2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period
    )
    blotches = smooth_noise(rng, size, size, cell=max(4, size // 5), channels=1)[..., 0]
    shade = 0.65 + 0.2 * stripes + 0.3 * (blotches - 0.5)
    return np.clip(colour[None, None, :] * shade[..., None], 0, 255).astype(np.float32)


def make_shape_alpha(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(size, size)`` bool mask of the shape, centred in its square."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    m = 1
    if kind == "ellipse":
        aspect = rng.uniform(0.55, 0.95)
        inset = int(round((size - 2 * m) * (1 - aspect) / 2))
        draw.ellipse([m, m + inset, size - 1 - m, size - 1 - m - inset], fill=255)
    elif kind == "rectangle":
        aspect = rng.uniform(0.45, 0.85)
        inset = int(round((size - 2 * m) * (1 - aspect) / 2))
        draw.rectangle([m + inset, m, size - 1 - m - inset, size - 1 - m], fill=255)
    elif kind == "polygon":
        # A star-ish polygon: n vertices at jittered, evenly spread angles and varying radii,
        # so it is non-convex in general but never degenerate.
        n = int(rng.integers(5, 9))
        step = 2 * math.pi / n
        angles = np.arange(n) * step + rng.uniform(-0.3, 0.3, n) * step + rng.uniform(0, step)
        radii = rng.uniform(0.6, 1.0, n) * (size / 2 - m)
        c = (size - 1) / 2
        pts = [
            (c + r * math.cos(a), c + r * math.sin(a)) for a, r in zip(angles, radii, strict=True)
        ]
        draw.polygon(pts, fill=255)
    else:
        raise ValueError(f"unknown shape kind {kind!r}; expected one of {SHAPE_KINDS}")
    return np.asarray(img) > 127


# Motion -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MotionPath:
    """Pose over time: centre = start + velocity*t + amplitude*sin(omega*t + phase) (per axis),
    rotation = angle0 + spin*t, scale = 1 + scale_amp*sin(scale_omega*t). Units: pixels, frames,
    radians. Paths are not limited to the frame: a sprite may leave it and come back.
    """

    start: tuple[float, float]  # (x, y)
    velocity: tuple[float, float] = (0.0, 0.0)
    amplitude: tuple[float, float] = (0.0, 0.0)
    omega: float = 0.0
    phase: tuple[float, float] = (0.0, 0.0)
    angle0: float = 0.0
    spin: float = 0.0
    scale_amp: float = 0.0
    scale_omega: float = 0.0

    def pose(self, t: float) -> tuple[float, float, float, float]:
        """``(cx, cy, angle, scale)`` at time ``t`` (frames)."""
        cx = (
            self.start[0]
            + self.velocity[0] * t
            + self.amplitude[0] * math.sin(self.omega * t + self.phase[0])
        )
        cy = (
            self.start[1]
            + self.velocity[1] * t
            + self.amplitude[1] * math.sin(self.omega * t + self.phase[1])
        )
        angle = self.angle0 + self.spin * t
        scale = 1.0 + self.scale_amp * math.sin(self.scale_omega * t)
        return cx, cy, angle, scale


@dataclass(frozen=True)
class Sprite:
    """One object: a texture with an alpha mask, moving along a path."""

    object_id: int
    kind: str
    texture: np.ndarray  # (S, S, 3) float32 0..255
    alpha: np.ndarray  # (S, S) bool
    path: MotionPath

    def render(self, canvas: np.ndarray, labels: np.ndarray, t: float) -> None:
        """Draw this sprite at time ``t`` onto ``canvas`` (H, W, 3) and ``labels`` (H, W)."""
        height, width = labels.shape
        size = self.alpha.shape[0]
        cx, cy, angle, scale = self.path.pose(t)
        reach = 0.5 * size * scale * math.sqrt(2.0) + 1.0
        x0, x1 = max(0, int(math.floor(cx - reach))), min(width, int(math.ceil(cx + reach)) + 1)
        y0, y1 = max(0, int(math.floor(cy - reach))), min(height, int(math.ceil(cy + reach)) + 1)
        if x0 >= x1 or y0 >= y1:
            return  # entirely outside the frame
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
        cos, sin = math.cos(angle), math.sin(angle)
        half = size / 2.0
        u = np.floor((cos * dx + sin * dy) / scale + half).astype(np.int64)
        v = np.floor((-sin * dx + cos * dy) / scale + half).astype(np.int64)
        inside = (u >= 0) & (u < size) & (v >= 0) & (v < size)
        hit = np.zeros_like(inside)
        hit[inside] = self.alpha[v[inside], u[inside]]
        region = canvas[y0:y1, x0:x1]
        region[hit] = self.texture[v[hit], u[hit]]
        labels[y0:y1, x0:x1][hit] = self.object_id


def make_sprite(
    rng: np.random.Generator, object_id: int, kind: str, size: int, path: MotionPath
) -> Sprite:
    return Sprite(
        object_id=object_id,
        kind=kind,
        texture=make_object_texture(rng, size),
        alpha=make_shape_alpha(kind, size, rng),
        path=path,
    )


# Clips --------------------------------------------------------------------------------------------
@dataclass
class SampleClip:
    """Frames, ground truth and first-frame prompts of a synthetic clip."""

    frames: list[np.ndarray]  # (H, W, 3) uint8 RGB
    labels: list[np.ndarray]  # (H, W) uint8, pixel = object id, 0 = background
    clicks: dict[int, tuple[float, float]]  # object id -> (x, y) inside it on frame 0
    boxes: dict[
        int, tuple[float, float, float, float]
    ]  # object id -> tight (x0, y0, x1, y1), frame 0
    sprites: list[Sprite] = field(default_factory=list)
    seed: int = 0

    @property
    def object_ids(self) -> list[int]:
        return sorted(self.clicks)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.labels[0].shape[0]), int(self.labels[0].shape[1])

    def masks(self, object_id: int) -> list[np.ndarray]:
        """Per-frame (H, W) bool ground-truth masks of one object."""
        return [lab == object_id for lab in self.labels]

    def click_prompt(self, object_id: int) -> Prompt:
        return Prompt.from_clicks(object_id, [list(self.clicks[object_id])], [1])

    def box_prompt(self, object_id: int) -> Prompt:
        return Prompt.from_clicks(object_id, None, box=self.boxes[object_id])

    def prompts_json(self, kind: str = "click") -> dict[str, list[dict[str, object]]]:
        """First-frame prompts for every object in ``edgetam-track``'s prompts-file format."""
        if kind not in ("click", "box"):
            raise ValueError("kind must be 'click' or 'box'")
        entries: list[dict[str, object]] = []
        for oid in self.object_ids:
            entry: dict[str, object] = {"frame": 0, "object_id": oid}
            if kind == "click":
                entry["points"] = [list(self.clicks[oid])]
                entry["labels"] = [1]
            else:
                entry["box"] = list(self.boxes[oid])
            entries.append(entry)
        return {"prompts": entries}


def render_clip(
    sprites: Sequence[Sprite],
    num_frames: int,
    height: int,
    width: int,
    seed: int = 0,
    noise_std: float = 2.0,
) -> SampleClip:
    """Render ``sprites`` over a textured background for ``num_frames`` frames.

    Prompts are taken from frame 0; every sprite must be visible there.
    """
    rng = np.random.default_rng([seed, 1])
    background = make_background(rng, height, width)
    frames: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for t in range(num_frames):
        canvas = background.copy()
        lab = np.zeros((height, width), dtype=np.uint8)
        for sprite in sprites:
            sprite.render(canvas, lab, float(t))
        if noise_std > 0:
            frame_rng = np.random.default_rng([seed, 2, t])  # sensor noise, fixed per frame
            canvas += noise_std * frame_rng.standard_normal(canvas.shape, dtype=np.float32)
        frames.append(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
        labels.append(lab)
    clicks: dict[int, tuple[float, float]] = {}
    boxes: dict[int, tuple[float, float, float, float]] = {}
    for sprite in sprites:
        oid = sprite.object_id
        mask = labels[0] == oid if labels else np.zeros((height, width), dtype=bool)
        if not mask.any():
            raise ValueError(f"object {oid} is not visible on frame 0")
        clicks[oid] = interior_point(mask)
        ys, xs = np.nonzero(mask)
        boxes[oid] = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return SampleClip(frames, labels, clicks, boxes, sprites=list(sprites), seed=seed)


def interior_point(mask: np.ndarray) -> tuple[float, float]:
    """A point well inside ``mask``: the pixel centre farthest from the border (x, y).

    Computed by repeated 4-neighbour erosion, so for a convex shape it is near the centre and
    for a non-convex one it still lies inside (unlike the centroid).
    """
    current = mask.astype(bool)
    while True:
        eroded = current.copy()
        eroded[1:, :] &= current[:-1, :]
        eroded[:-1, :] &= current[1:, :]
        eroded[:, 1:] &= current[:, :-1]
        eroded[:, :-1] &= current[:, 1:]
        eroded[0, :] = eroded[-1, :] = False
        eroded[:, 0] = eroded[:, -1] = False
        if not eroded.any():
            break
        current = eroded
    ys, xs = np.nonzero(current)
    cy, cx = ys.mean(), xs.mean()
    k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))  # the innermost pixel nearest their mean
    return float(xs[k]) + 0.5, float(ys[k]) + 0.5


def make_sample_clip(
    num_frames: int = 12, height: int = 480, width: int = 640, seed: int = 0
) -> SampleClip:
    """Two textured objects (object ids 1 and 2) moving smoothly over a textured background.

    Object 1 starts in the left part of the frame and object 2 in the right part; both stay
    inside the frame and apart for the whole clip, whatever its length. Deterministic in
    ``seed``; the shape kinds, textures and paths vary with it.
    """
    if num_frames < 1 or height < 32 or width < 32:
        raise ValueError("need num_frames >= 1 and a frame of at least 32x32 pixels")
    rng = np.random.default_rng([seed, 0])
    kinds = list(rng.choice(SHAPE_KINDS, size=2, replace=False))
    short = min(height, width)
    sprites = []
    for index, kind in enumerate(kinds):
        size = int(short * rng.uniform(0.28, 0.36))
        # Each object owns one half of the frame; its path (centre +- swing, scaled +-10%)
        # stays inside that half.
        half_w = width / 2
        margin_x = 0.5 * size * 1.1 * math.sqrt(2) + 2
        margin_y = margin_x
        lo_x, hi_x = index * half_w + margin_x, (index + 1) * half_w - margin_x
        lo_y, hi_y = margin_y, height - margin_y
        swing_x = max(0.0, (hi_x - lo_x) / 2)
        swing_y = max(0.0, (hi_y - lo_y) / 2)
        path = MotionPath(
            start=((lo_x + hi_x) / 2, (lo_y + hi_y) / 2),
            amplitude=(swing_x * rng.uniform(0.6, 0.95), swing_y * rng.uniform(0.6, 0.95)),
            omega=rng.uniform(0.12, 0.2),
            phase=(rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)),
            angle0=rng.uniform(0, 2 * math.pi),
            spin=rng.uniform(-0.06, 0.06),
            scale_amp=0.1,
            scale_omega=rng.uniform(0.1, 0.2),
        )
        sprites.append(make_sprite(rng, index + 1, str(kind), size, path))
    return render_clip(sprites, num_frames, height, width, seed=seed)


def write_frames(
    directory: str | Path, frames: Sequence[np.ndarray], ext: str = "jpg", quality: int = 95
) -> list[Path]:
    """Write frames as ``00000.jpg``, ``00001.jpg``, ... (or ``.png``); returns the paths."""
    ext = ext.lower().lstrip(".")
    if ext not in ("jpg", "jpeg", "png"):
        raise ValueError(f"ext must be jpg or png, got {ext!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, frame in enumerate(frames):
        path = directory / f"{index:05d}.{ext}"
        img = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
        if ext == "png":
            img.save(path, format="PNG")
        else:
            img.save(path, format="JPEG", quality=quality, subsampling=0)
        paths.append(path)
    return paths


def write_labels(directory: str | Path, labels: Sequence[np.ndarray]) -> list[Path]:
    """Write ground-truth label images as DAVIS-style ``00000.png``, ... in ``directory``."""
    directory = Path(directory)
    return [write_label_png(directory / f"{i:05d}.png", lab) for i, lab in enumerate(labels)]
