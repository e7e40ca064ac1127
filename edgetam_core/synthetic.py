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
    # World time of each frame (None: frame k is time k); set for windows of a longer world.
    times: list[float] | None = None

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


# A richer synthetic world: training data and held-out evaluation clips ----------------------------
@dataclass(frozen=True)
class WorldSpec:
    """Knobs of ``make_world_clip``: how many objects, how big, how often they leave or cross.

    Sizes are fractions of the frame's short side; probabilities are per object. Defaults
    give clips with 1-3 tracked objects, frequent occlusions and exits/re-entries.
    """

    num_objects: tuple[int, int] = (1, 3)  # tracked objects (all visible on frame 0)
    num_late_objects: tuple[int, int] = (0, 1)  # objects that enter later (distractors)
    size: tuple[float, float] = (0.2, 0.42)
    p_exit: float = 0.35  # leaves the frame and comes back
    p_cross: float = 0.45  # its path crosses another object's (occlusion)
    clutter: tuple[int, int] = (0, 4)  # static muted shapes painted on the background
    max_speed: float = 0.035  # drift, fraction of the short side per frame
    wander: float = 0.2  # sinusoidal wander amplitude, fraction of the short side
    max_spin: float = 0.08  # radians per frame
    max_scale_amp: float = 0.25
    noise_std: float = 2.0


def _exit_path(
    rng: np.random.Generator,
    height: int,
    width: int,
    size: float,
    num_frames: int,
) -> MotionPath:
    """A path that starts inside the frame, leaves it completely and comes back."""
    direction = rng.uniform(0, 2 * math.pi)
    dx, dy = math.cos(direction), math.sin(direction)
    centre = (rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height)
    # Distance from the centre to the border along the direction, plus the whole sprite.
    tx = ((width - centre[0]) / dx if dx > 1e-6 else centre[0] / -dx) if abs(dx) > 1e-6 else 1e9
    ty = ((height - centre[1]) / dy if dy > 1e-6 else centre[1] / -dy) if abs(dy) > 1e-6 else 1e9
    reach = min(tx, ty) + 0.8 * size
    amplitude = reach * rng.uniform(1.15, 1.5)
    # One full swing out and back within 45-85% of the clip, starting near the centre.
    omega = math.pi / max(2.0, num_frames * rng.uniform(0.45, 0.85))
    phase = rng.uniform(-0.15, 0.15)
    return MotionPath(
        start=(centre[0] + 0.0, centre[1] + 0.0),
        amplitude=(amplitude * dx, amplitude * dy),
        omega=omega,
        phase=(phase, phase),
        angle0=rng.uniform(0, 2 * math.pi),
        spin=rng.uniform(-1, 1) * 0.05,
        scale_amp=rng.uniform(0, 0.15),
        scale_omega=rng.uniform(0.05, 0.2),
    )


def _wander_path(
    rng: np.random.Generator, height: int, width: int, size: float, spec: WorldSpec
) -> MotionPath:
    short = min(height, width)
    margin = 0.45 * size
    start = (rng.uniform(margin, width - margin), rng.uniform(margin, height - margin))
    speed = rng.uniform(0, spec.max_speed) * short
    heading = rng.uniform(0, 2 * math.pi)
    return MotionPath(
        start=start,
        velocity=(speed * math.cos(heading), speed * math.sin(heading)),
        amplitude=(rng.uniform(0, spec.wander) * short, rng.uniform(0, spec.wander) * short),
        omega=rng.uniform(0.05, 0.25),
        phase=(rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)),
        angle0=rng.uniform(0, 2 * math.pi),
        spin=rng.uniform(-1, 1) * spec.max_spin,
        scale_amp=rng.uniform(0, spec.max_scale_amp),
        scale_omega=rng.uniform(0.05, 0.25),
    )


def _crossing_path(
    rng: np.random.Generator,
    height: int,
    width: int,
    size: float,
    target: MotionPath,
    num_frames: int,
) -> MotionPath:
    """A straight path that passes through ``target``'s position at a random time."""
    t_meet = max(1.0, rng.uniform(0.3, 0.7) * (num_frames - 1))
    meet_x, meet_y, _, _ = target.pose(t_meet)
    margin = 0.45 * size
    start = (rng.uniform(margin, width - margin), rng.uniform(margin, height - margin))
    return MotionPath(
        start=start,
        velocity=((meet_x - start[0]) / t_meet, (meet_y - start[1]) / t_meet),
        angle0=rng.uniform(0, 2 * math.pi),
        spin=rng.uniform(-1, 1) * 0.05,
        scale_amp=rng.uniform(0, 0.15),
        scale_omega=rng.uniform(0.05, 0.2),
    )


def _late_path(
    rng: np.random.Generator, height: int, width: int, size: float, num_frames: int
) -> MotionPath:
    """Starts outside the frame (left/right/top/bottom) and crosses into it."""
    side = int(rng.integers(4))
    outside = 0.8 * size
    if side in (0, 1):
        x = -outside if side == 0 else width + outside
        y = rng.uniform(0.2, 0.8) * height
        target = (rng.uniform(0.3, 0.7) * width, rng.uniform(0.2, 0.8) * height)
    else:
        x = rng.uniform(0.2, 0.8) * width
        y = -outside if side == 2 else height + outside
        target = (rng.uniform(0.2, 0.8) * width, rng.uniform(0.3, 0.7) * height)
    t_arrive = max(2.0, rng.uniform(0.4, 0.9) * num_frames)
    return MotionPath(
        start=(x, y),
        velocity=((target[0] - x) / t_arrive, (target[1] - y) / t_arrive),
        angle0=rng.uniform(0, 2 * math.pi),
        spin=rng.uniform(-1, 1) * 0.05,
    )


def add_clutter(
    rng: np.random.Generator, background: np.ndarray, count: int, size: tuple[float, float]
) -> np.ndarray:
    """Paint ``count`` static, muted (half-blended) shapes on ``background`` (a new array)."""
    out = background.copy()
    height, width = out.shape[:2]
    short = min(height, width)
    for _ in range(count):
        side = max(6, int(short * rng.uniform(*size)))
        kind = str(rng.choice(SHAPE_KINDS))
        alpha = make_shape_alpha(kind, side, rng)
        texture = make_object_texture(rng, side)
        x0 = int(rng.integers(-side // 2, width - side // 2))
        y0 = int(rng.integers(-side // 2, height - side // 2))
        xs, ys = max(0, x0), max(0, y0)
        xe, ye = min(width, x0 + side), min(height, y0 + side)
        if xs >= xe or ys >= ye:
            continue
        a = alpha[ys - y0 : ye - y0, xs - x0 : xe - x0]
        tex = texture[ys - y0 : ye - y0, xs - x0 : xe - x0]
        region = out[ys:ye, xs:xe]
        grey = tex.mean(axis=-1, keepdims=True)
        muted = 0.5 * region + 0.5 * (0.5 * tex + 0.5 * grey)
        region[a] = muted[a]
    return out


def make_world_clip(
    num_frames: int = 24,
    height: int = 128,
    width: int = 128,
    seed: int = 0,
    spec: WorldSpec | None = None,
    times: Sequence[float] | None = None,
) -> SampleClip:
    """A clip of the richer synthetic world, deterministic in ``seed``.

    The world's motions are laid out over ``num_frames`` frames; ``times`` renders only
    those instants of it instead (e.g. a short training window of a 24-frame world, so that
    short clips move at the speed of long ones). Frame 0 of the clip is ``times[0]``.

    1-3 textured objects (ids 1..n, all visible on frame 0, so they can be prompted there)
    move, rotate and scale over a textured, cluttered background; some leave the frame and
    come back, some cross each other's paths (drawing order decides who occludes whom), and
    distractor objects (ids after the tracked ones, not prompted) may enter later. Use
    ``object_timeline`` for per-frame visibility, occlusion and in-frame fractions.
    """
    spec = spec or WorldSpec()
    if num_frames < 1 or height < 32 or width < 32:
        raise ValueError("need num_frames >= 1 and a frame of at least 32x32 pixels")
    if times is not None and len(times) == 0:
        raise ValueError("times must name at least one frame")
    when = [float(t) for t in times] if times is not None else None
    for attempt in range(50):
        rng = np.random.default_rng([seed, 3, attempt])
        sprites = _world_sprites(rng, num_frames, height, width, spec)
        clip = _render_world(sprites, num_frames, height, width, seed, spec, rng, when)
        if clip is not None:
            return clip
    raise RuntimeError(f"could not make a clip with every object visible on frame 0 (seed {seed})")


def _world_sprites(
    rng: np.random.Generator, num_frames: int, height: int, width: int, spec: WorldSpec
) -> list[Sprite]:
    short = min(height, width)
    count = int(rng.integers(spec.num_objects[0], spec.num_objects[1] + 1))
    late = int(rng.integers(spec.num_late_objects[0], spec.num_late_objects[1] + 1))
    sprites: list[Sprite] = []
    paths: list[MotionPath] = []
    for index in range(count + late):
        size = max(8, int(short * rng.uniform(*spec.size)))
        kind = str(rng.choice(SHAPE_KINDS))
        if index >= count:
            path = _late_path(rng, height, width, size, num_frames)
        elif rng.random() < spec.p_exit:
            path = _exit_path(rng, height, width, size, num_frames)
        elif paths and rng.random() < spec.p_cross:
            target = paths[int(rng.integers(len(paths)))]
            path = _crossing_path(rng, height, width, size, target, num_frames)
        else:
            path = _wander_path(rng, height, width, size, spec)
        paths.append(path)
        sprites.append(make_sprite(rng, index + 1, kind, size, path))
    # Random drawing order decides occlusions; ids keep tracked objects first.
    order = rng.permutation(len(sprites))
    return [sprites[i] for i in order]


def _render_world(
    sprites: list[Sprite],
    num_frames: int,
    height: int,
    width: int,
    seed: int,
    spec: WorldSpec,
    rng: np.random.Generator,
    times: list[float] | None = None,
) -> SampleClip | None:
    frame_times = times if times is not None else [float(t) for t in range(num_frames)]
    background = make_background(rng, height, width)
    clutter = int(rng.integers(spec.clutter[0], spec.clutter[1] + 1))
    background = add_clutter(rng, background, clutter, (0.1, 0.3))
    tracked = sorted(s.object_id for s in sprites)
    first = np.zeros((height, width), dtype=np.uint8)
    scratch = np.zeros((height, width, 3), dtype=np.float32)
    for sprite in sprites:
        sprite.render(scratch, first, frame_times[0])
    late_ids = {s.object_id for s in sprites if _outside(s, height, width, frame_times[0])}
    prompted = [oid for oid in tracked if oid not in late_ids]
    min_area = max(12, int(0.004 * height * width))
    if not prompted or any(int((first == oid).sum()) < min_area for oid in prompted):
        return None
    frames: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for t in frame_times:
        canvas = background.copy()
        lab = np.zeros((height, width), dtype=np.uint8)
        for sprite in sprites:
            sprite.render(canvas, lab, t)
        if spec.noise_std > 0:
            frame_rng = np.random.default_rng([seed, 2, int(round(t))])
            canvas += spec.noise_std * frame_rng.standard_normal(canvas.shape, dtype=np.float32)
        frames.append(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
        labels.append(lab)
    clicks: dict[int, tuple[float, float]] = {}
    boxes: dict[int, tuple[float, float, float, float]] = {}
    for oid in prompted:
        mask = labels[0] == oid
        clicks[oid] = interior_point(mask)
        ys, xs = np.nonzero(mask)
        boxes[oid] = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return SampleClip(
        frames, labels, clicks, boxes, sprites=list(sprites), seed=seed, times=times
    )


def _outside(sprite: Sprite, height: int, width: int, t: float) -> bool:
    cx, cy, _, _ = sprite.path.pose(t)
    return not (0 <= cx < width and 0 <= cy < height)


@dataclass
class ObjectTimeline:
    """Per-frame facts about one object of a clip (arrays of length T).

    ``visible``: its pixels in the label image; ``in_frame``: its pixels inside the frame if
    nothing occluded it; ``full``: its whole area (inside the frame or not).
    """

    visible: np.ndarray
    in_frame: np.ndarray
    full: np.ndarray

    @property
    def occluded_fraction(self) -> np.ndarray:
        """Share of its in-frame area hidden by other objects (0 where it is out of frame)."""
        return np.where(self.in_frame > 0, 1.0 - self.visible / np.maximum(self.in_frame, 1), 0.0)

    @property
    def in_frame_fraction(self) -> np.ndarray:
        return self.in_frame / np.maximum(self.full, 1)

    def occlusion_ends(self, threshold: float = 0.5) -> list[int]:
        """Frames where an occlusion episode (>= ``threshold`` hidden) has just ended."""
        occluded = (self.occluded_fraction >= threshold) & (self.in_frame_fraction > 0.2)
        return [t for t in range(1, len(occluded)) if occluded[t - 1] and not occluded[t]]

    def reentries(self, gone: float = 0.02, back: float = 0.5) -> list[int]:
        """Frames where the object is back in the frame (>= ``back`` of it) after having been
        (almost) entirely outside it (< ``gone``)."""
        frac = self.in_frame_fraction
        out, events = False, []
        for t, f in enumerate(frac):
            if f < gone:
                out = True
            elif out and f >= back:
                events.append(t)
                out = False
        return events


def object_timeline(clip: SampleClip, object_id: int) -> ObjectTimeline:
    """Visibility facts of ``object_id`` on every frame of ``clip`` (needs its sprites)."""
    sprite = next((s for s in clip.sprites if s.object_id == object_id), None)
    if sprite is None:
        raise ValueError(f"clip has no sprite with id {object_id}")
    height, width = clip.size
    scratch = np.zeros((height, width, 3), dtype=np.float32)
    visible, in_frame, full = [], [], []
    base = float(sprite.alpha.sum())
    times = clip.times if clip.times is not None else range(len(clip.labels))
    for t, lab in zip(times, clip.labels, strict=True):
        alone = np.zeros((height, width), dtype=np.uint8)
        sprite.render(scratch, alone, float(t))
        _, _, _, scale = sprite.path.pose(float(t))
        visible.append(int((lab == object_id).sum()))
        in_frame.append(int((alone == object_id).sum()))
        full.append(base * scale * scale)
    return ObjectTimeline(
        np.asarray(visible, dtype=np.float64),
        np.asarray(in_frame, dtype=np.float64),
        np.asarray(full, dtype=np.float64),
    )
