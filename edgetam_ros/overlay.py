"""Overlay drawing for RViz / rqt: colored masks, boxes, ids and labels on the input image.

Pure functions over numpy arrays (OpenCV does the pixel work). Fast enough for the node's
per-frame budget: each object's mask is blended inside its own bounding box only.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np

from edgetam_ros.conversions import ObjectSummary


def _palette() -> np.ndarray:
    """(256, 3) uint8 RGB colors: 0 black, then well-separated hues (golden-ratio steps)."""
    colors = np.zeros((256, 3), dtype=np.uint8)
    for i in range(1, 256):
        hue = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
        colors[i] = (round(r * 255), round(g * 255), round(b * 255))
    return colors


PALETTE = _palette()


def color_of(object_id: int) -> tuple[int, int, int]:
    """The RGB color of ``object_id`` in overlays (and in a colorized label image)."""
    r, g, b = PALETTE[int(object_id) % 256]
    return int(r), int(g), int(b)


def blend_object(
    rgb: np.ndarray, labels: np.ndarray, object_id: int, box: tuple[int, int, int, int],
    alpha: float,
) -> None:
    """Blend ``object_id``'s color into ``rgb`` (in place) where ``labels == object_id``,
    looking only inside ``box`` (x, y, w, h)."""
    x, y, w, h = box
    if w <= 0 or h <= 0 or alpha <= 0:
        return
    sub = rgb[y : y + h, x : x + w]
    mask = (labels[y : y + h, x : x + w] == object_id).view(np.uint8)
    a = min(float(alpha), 1.0)
    color = color_of(object_id)
    # (1 - a) * pixel + a * color, rounded and saturated, without a full-size color image
    tinted = cv2.addWeighted(sub, 1.0 - a, sub, 0.0, 0.0)
    scalar = (color[0] * a, color[1] * a, color[2] * a, 0.0)
    tinted = cv2.add(tinted, scalar)  # type: ignore[call-overload]  # cv2 takes a Scalar
    cv2.copyTo(tinted, mask, sub)  # writes into the view of rgb


def draw_label(rgb: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int]) -> None:
    """``text`` on a dark plate with its top-left corner near (x, y), kept inside the image."""
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    h_img, w_img = rgb.shape[:2]
    x = min(max(0, x), max(0, w_img - tw - 4))
    y = min(max(0, y), max(0, h_img - th - base - 4))
    cv2.rectangle(rgb, (x, y), (x + tw + 3, y + th + base + 3), (0, 0, 0), -1)
    cv2.putText(rgb, text, (x + 2, y + th + 2), font, scale, color, thick, cv2.LINE_AA)


def draw_overlay(
    rgb: np.ndarray,
    labels: np.ndarray,
    summaries: Sequence[ObjectSummary],
    alpha: float = 0.5,
) -> np.ndarray:
    """A new (H, W, 3) image: ``rgb`` with each visible object's mask blended in its color,
    its box, and "id label" above the box. ``labels`` is the (H, W) label image (0 = none).
    """
    out = np.array(rgb, dtype=np.uint8, copy=True, order="C")
    for s in summaries:
        if not s.visible or s.area == 0:
            continue
        color = color_of(s.object_id)
        blend_object(out, labels, s.object_id, s.box, alpha)
        x, y, w, h = s.box
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), color, 2)
        text = f"{s.object_id} {s.label}".strip()
        draw_label(out, text, x, y - 20 if y >= 20 else y + 2, color)
    return out
