"""Plain data types shared by the tracker, the CLI and the ROS node (numpy only, no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgetam_core.errors import PromptError


@dataclass(frozen=True)
class Prompt:
    """A user prompt for one object, in pixel coordinates of the frame it applies to.

    Any combination of clicks and a box is allowed (the box goes first, as in SAM); a mask
    prompt replaces clicks and box. ``object_id`` must be >= 1 (0 is the background label).
    """

    object_id: int
    points: np.ndarray | None = None  # (N, 2) float x, y in pixels
    labels: np.ndarray | None = None  # (N,) int: 1 positive, 0 negative
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 in pixels
    mask: np.ndarray | None = None  # (H, W) bool, the frame's size

    @staticmethod
    def from_clicks(
        object_id: int,
        points: object,
        labels: object | None = None,
        box: object | None = None,
    ) -> Prompt:
        """Build a prompt from lists (e.g. parsed JSON); labels default to all positive."""
        pts = None if points is None else np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if pts is not None and len(pts) == 0:
            pts = None
        lbl = None
        if pts is not None:
            lbl = (
                np.ones(len(pts), dtype=np.int64)
                if labels is None
                else np.asarray(labels, dtype=np.int64).reshape(-1)
            )
        bx = None if box is None else tuple(float(v) for v in np.asarray(box).reshape(-1))
        return Prompt(object_id=int(object_id), points=pts, labels=lbl, box=bx)  # type: ignore[arg-type]

    def validate(self, height: int, width: int) -> None:
        """Raise PromptError unless this prompt is usable on a ``height`` x ``width`` frame."""
        if int(self.object_id) < 1:
            raise PromptError(f"object_id must be >= 1, got {self.object_id}")
        if self.points is None and self.box is None and self.mask is None:
            raise PromptError(f"prompt for object {self.object_id} has no points, box or mask")
        if self.mask is not None:
            if self.points is not None or self.box is not None:
                raise PromptError("a mask prompt cannot be combined with points or a box")
            if self.mask.shape != (height, width):
                raise PromptError(
                    f"mask prompt is {self.mask.shape[1]}x{self.mask.shape[0]}, "
                    f"frame is {width}x{height}"
                )
        if self.points is not None:
            pts = np.asarray(self.points, dtype=np.float64)
            if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
                raise PromptError("points must be a non-empty list of [x, y] pairs")
            if self.labels is None or len(self.labels) != len(pts):
                raise PromptError("points and labels must have the same length")
            if not np.all(np.isin(np.asarray(self.labels), (0, 1))):
                raise PromptError("point labels must be 1 (positive) or 0 (negative)")
            if not np.all(np.isfinite(pts)):
                raise PromptError("points must be finite numbers")
            outside = (pts[:, 0] < 0) | (pts[:, 0] > width) | (pts[:, 1] < 0) | (pts[:, 1] > height)
            if outside.any():
                x, y = pts[int(np.argmax(outside))]
                raise PromptError(f"point ({x:g}, {y:g}) is outside the {width}x{height} image")
        if self.box is not None:
            if len(self.box) != 4 or not np.all(np.isfinite(self.box)):
                raise PromptError("box must be four finite numbers [x0, y0, x1, y1]")
            x0, y0, x1, y1 = self.box
            if not (x1 > x0 and y1 > y0):
                raise PromptError(f"box {list(self.box)} must have x1 > x0 and y1 > y0")
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                raise PromptError(f"box {list(self.box)} is outside the {width}x{height} image")


@dataclass
class ObjectResult:
    """What the tracker says about one object on one frame."""

    object_id: int
    logits: np.ndarray  # (H, W) float32 mask logits at frame resolution
    low_res_logits: np.ndarray  # (s, s) float32 decoder logits (256x256 by default)
    iou: float  # predicted IoU of the chosen mask
    object_score: float  # object-score logit (> 0: present)
    mask_threshold: float = 0.0

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool mask: logits above the threshold."""
        return self.logits > self.mask_threshold

    @property
    def visibility(self) -> float:
        """Object presence probability in 0..1 (sigmoid of the object score)."""
        return float(1.0 / (1.0 + np.exp(-np.clip(self.object_score, -60.0, 60.0))))

    @property
    def visible(self) -> bool:
        return self.object_score > 0 and self.area > 0

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def box(self) -> tuple[int, int, int, int] | None:
        """Tight box (x0, y0, x1, y1), inclusive pixel indices; None when the mask is empty."""
        m = self.mask
        rows = np.flatnonzero(m.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(m.any(axis=0))
        return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])

    @property
    def centroid(self) -> tuple[float, float] | None:
        """(x, y) mean pixel position of the mask; None when the mask is empty."""
        ys, xs = np.nonzero(self.mask)
        if xs.size == 0:
            return None
        return float(xs.mean()), float(ys.mean())


@dataclass
class FrameResult:
    """Everything the tracker produced for one frame."""

    frame_index: int
    height: int
    width: int
    objects: dict[int, ObjectResult] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)  # e.g. "frame size changed ...; memory cleared"
    timings_ms: dict[str, float] = field(default_factory=dict)

    def label_image(self, dtype: type[np.integer] = np.uint8) -> np.ndarray:
        """(H, W) label image: pixel = object id, 0 = background.

        Where masks overlap, the object with the larger logit wins.
        """
        labels: np.ndarray = np.zeros((self.height, self.width), dtype=dtype)
        if not self.objects:
            return labels
        ids = sorted(self.objects)
        stack = np.stack([self.objects[i].logits for i in ids])
        masks = np.stack([self.objects[i].mask for i in ids])
        best = np.argmax(np.where(masks, stack, -np.inf), axis=0)
        any_mask = masks.any(axis=0)
        id_arr: np.ndarray = np.asarray(ids, dtype=dtype)
        labels[any_mask] = id_arr[best[any_mask]]
        return labels
