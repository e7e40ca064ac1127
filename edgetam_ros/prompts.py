"""From clicks, boxes and Prompt messages to ``edgetam_core.types.Prompt``; no ROS import.

- ``prompt_from_fields``: the fields of ``edgetam_ros/msg/Prompt`` (or the AddPrompt request)
  -> a validated core ``Prompt``.
- ``ClickPrompter``: what a click means (start a new object, refine the selected one with a
  positive or a negative point), with the per-object click history refinements build on.
- ``project_to_pixel`` / ``transform_point``: a 3-D point (RViz "Publish Point") in the
  camera's optical frame (REP 103: x right, y down, z forward) -> pixel, with the pinhole
  model of ``sensor_msgs/CameraInfo`` (K and distortion D for raw images, P for rectified).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgetam_core.errors import PromptError
from edgetam_core.types import Prompt

#: Largest object id: the ``masks`` label image is mono8.
MAX_OBJECT_ID = 255

CLICK_MODES = ("new", "refine", "negative")

#: Clicks kept per object for refinement (the oldest are forgotten first).
MAX_CLICKS_PER_OBJECT = 16


def check_pixel(x: float, y: float, width: int, height: int) -> tuple[float, float]:
    """(x, y) as floats if they are finite and inside a ``width`` x ``height`` image."""
    try:
        fx, fy = float(x), float(y)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"click ({x}, {y}) is not a number") from exc
    if not (math.isfinite(fx) and math.isfinite(fy)):
        raise PromptError(f"click ({fx}, {fy}) is not finite")
    if not (0 <= fx < width and 0 <= fy < height):
        raise PromptError(f"click ({fx:g}, {fy:g}) is outside the {width}x{height} image")
    return fx, fy


def next_free_id(used: Iterable[int], limit: int = MAX_OBJECT_ID) -> int:
    """The smallest id in 1..limit not in ``used``; PromptError when all are taken."""
    taken = set(used)
    for i in range(1, limit + 1):
        if i not in taken:
            return i
    raise PromptError(f"no free object id (all of 1..{limit} are in use)")


def prompt_from_fields(
    object_id: int,
    points: Sequence[Any],
    point_labels: Sequence[int],
    box: Sequence[float],
    frame_size: tuple[int, int],
) -> Prompt:
    """A validated core ``Prompt`` from the fields of ``edgetam_ros/msg/Prompt``.

    ``points`` are objects with ``x`` and ``y`` (geometry_msgs/Point) or (x, y) pairs;
    empty ``point_labels`` means all positive; ``box`` is empty or [x0, y0, x1, y1].
    ``frame_size`` is (H, W) of the image the pixels refer to.
    """
    if not 1 <= int(object_id) <= MAX_OBJECT_ID:
        raise PromptError(f"object id must be in 1..{MAX_OBJECT_ID}, got {object_id}")
    xy = [(p.x, p.y) if hasattr(p, "x") else tuple(p) for p in points]
    labels = [int(v) for v in point_labels]
    if labels and len(labels) != len(xy):
        raise PromptError(
            f"{len(xy)} points but {len(labels)} point_labels (give one per point, or none)"
        )
    if any(v not in (0, 1) for v in labels):
        raise PromptError(f"point_labels must be 1 (positive) or 0 (negative), got {labels}")
    box_values = [float(v) for v in box]
    if box_values and len(box_values) != 4:
        raise PromptError(f"box must be empty or [x0, y0, x1, y1], got {len(box_values)} values")
    prompt = Prompt.from_clicks(
        int(object_id),
        xy if xy else None,
        labels if (xy and labels) else None,
        box_values if box_values else None,
    )
    height, width = frame_size
    prompt.validate(height, width)
    return prompt


@dataclass
class ClickPrompter:
    """Turns clicks into prompts according to the click mode.

    - ``new``: every click starts a new object (the next free id).
    - ``refine``: a positive point for the selected object (a new object when none is
      tracked); the prompt carries every click on that object so far.
    - ``negative``: a negative point for the selected object ("not this").

    The selected object is ``selected`` when it is tracked (non-zero), else the object
    prompted last.
    """

    history: dict[int, list[tuple[float, float, int]]] = field(default_factory=dict)
    last_prompted: int = 0

    def click(
        self,
        x: float,
        y: float,
        mode: str,
        tracked: set[int],
        max_objects: int,
        frame_size: tuple[int, int],
        selected: int = 0,
    ) -> Prompt:
        """The prompt for a click at pixel (x, y); PromptError when it cannot be used.

        ``tracked`` is the set of object ids that exist (or will, once queued prompts apply).
        The history is only updated when a prompt is returned.
        """
        if mode not in CLICK_MODES:
            raise PromptError(f"click_mode must be one of {', '.join(CLICK_MODES)}, got '{mode}'")
        height, width = frame_size
        fx, fy = check_pixel(x, y, width, height)
        target = self.selected(tracked, selected)
        if mode == "negative" and target == 0:
            raise PromptError("negative click ignored: no object is selected (click one first)")
        if mode == "new" or target == 0:
            if len(tracked) >= max_objects:
                raise PromptError(
                    f"click ignored: already tracking {len(tracked)} objects "
                    f"(max_objects is {max_objects})"
                )
            target = next_free_id(tracked)
            clicks = [(fx, fy, 1)]
        else:
            clicks = [*self.history.get(target, []), (fx, fy, 0 if mode == "negative" else 1)]
            clicks = clicks[-MAX_CLICKS_PER_OBJECT:]
        prompt = Prompt.from_clicks(target, [c[:2] for c in clicks], [c[2] for c in clicks])
        prompt.validate(height, width)
        self.history[target] = clicks
        self.last_prompted = target
        return prompt

    def selected(self, tracked: set[int], selected: int = 0) -> int:
        """The object clicks refine: ``selected`` if tracked, else the last prompted, else 0."""
        if selected and selected in tracked:
            return selected
        if self.last_prompted in tracked:
            return self.last_prompted
        return 0

    def prompted(self, object_id: int, points: np.ndarray | None, labels: np.ndarray | None,
                 replace: bool) -> None:
        """Record a prompt that came from elsewhere (service, topic) for later refinements."""
        clicks = [] if replace else list(self.history.get(object_id, []))
        if points is not None and labels is not None:
            pairs = zip(points, labels, strict=True)
            clicks += [(float(p[0]), float(p[1]), int(v)) for p, v in pairs]
        self.history[object_id] = clicks[-MAX_CLICKS_PER_OBJECT:]
        self.last_prompted = object_id

    def forget(self, object_id: int | None = None) -> None:
        """Drop one object's clicks (all objects' when ``object_id`` is None)."""
        if object_id is None:
            self.history.clear()
            self.last_prompted = 0
            return
        self.history.pop(object_id, None)
        if self.last_prompted == object_id:
            self.last_prompted = 0

    def keep_only(self, tracked: Iterable[int]) -> None:
        """Forget objects that are no longer tracked."""
        keep = set(tracked)
        for oid in [o for o in self.history if o not in keep]:
            self.forget(oid)


# --------------------------------------------------------------------------------------------
# 3-D points -> pixels
# --------------------------------------------------------------------------------------------
def quaternion_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """(3, 3) rotation matrix of a (normalized here) quaternion."""
    q = np.array([x, y, z, w], dtype=np.float64)
    n = float(np.linalg.norm(q))
    if not math.isfinite(n) or n < 1e-12:
        raise PromptError("transform has an invalid rotation quaternion")
    x, y, z, w = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def transform_point(point: Sequence[float], transform: Any) -> tuple[float, float, float]:
    """Apply a ``geometry_msgs/Transform`` (or TransformStamped) to a 3-D point.

    The transform maps the point's frame into the target frame, as
    ``tf2_ros.Buffer.lookup_transform(target, source, ...)`` returns it.
    """
    tf = getattr(transform, "transform", transform)
    t, r = tf.translation, tf.rotation
    rot = quaternion_to_matrix(r.x, r.y, r.z, r.w)
    p = rot @ np.asarray(point, dtype=np.float64) + np.array([t.x, t.y, t.z], dtype=np.float64)
    return float(p[0]), float(p[1]), float(p[2])


def _distort(xn: float, yn: float, model: str, d: Sequence[float]) -> tuple[float, float]:
    """Normalized coordinates -> distorted, for plumb_bob / rational_polynomial (OpenCV's)."""
    if not len(d) or not any(d):
        return xn, yn
    if model not in ("plumb_bob", "rational_polynomial"):
        raise PromptError(
            f"distortion model '{model}' is not supported for projecting clicks: "
            "use a rectified image (rectified_input:=true) or plumb_bob"
        )
    k = list(d) + [0.0] * (8 - len(d))
    k1, k2, p1, p2, k3, k4, k5, k6 = k[:8]
    r2 = xn * xn + yn * yn
    radial = (1 + k1 * r2 + k2 * r2 * r2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2 * r2 + k6 * r2**3)
    xd = xn * radial + 2 * p1 * xn * yn + p2 * (r2 + 2 * xn * xn)
    yd = yn * radial + p1 * (r2 + 2 * yn * yn) + 2 * p2 * xn * yn
    return xd, yd


def project_to_pixel(point: Sequence[float], camera_info: Any, rectified: bool = False
                     ) -> tuple[float, float]:
    """Pixel (u, v) of a 3-D point in the camera's optical frame (z forward).

    ``camera_info`` has the fields of ``sensor_msgs/CameraInfo`` (k, d, p,
    distortion_model). Raw images (``rectified=False``) use K and the distortion D; rectified
    ones use P (including its Tx, Ty for the right camera of a stereo pair).
    """
    x, y, z = (float(v) for v in point)
    if not all(math.isfinite(v) for v in (x, y, z)):
        raise PromptError(f"point ({x}, {y}, {z}) is not finite")
    if z <= 1e-9:
        raise PromptError(f"point ({x:.3g}, {y:.3g}, {z:.3g}) is behind the camera (z <= 0)")
    if rectified:
        p = np.asarray(camera_info.p, dtype=np.float64).reshape(3, 4)
        if p[0, 0] == 0 or p[1, 1] == 0:
            raise PromptError("camera_info has no projection matrix P (all zero)")
        u, v, w = p @ np.array([x, y, z, 1.0])
        if abs(w) < 1e-12:
            raise PromptError("point projects to infinity")
        return float(u / w), float(v / w)
    k = np.asarray(camera_info.k, dtype=np.float64).reshape(3, 3)
    if k[0, 0] == 0 or k[1, 1] == 0:
        raise PromptError("camera_info has no intrinsic matrix K (all zero)")
    xd, yd = _distort(x / z, y / z, str(camera_info.distortion_model), list(camera_info.d))
    u = k[0, 0] * xd + k[0, 1] * yd + k[0, 2]
    v = k[1, 1] * yd + k[1, 2]
    return float(u), float(v)
