"""edgetam_ros.overlay: masks blended in each object's color, boxes and ids drawn (no ROS)."""

from __future__ import annotations

import numpy as np

from edgetam_ros.conversions import ObjectSummary
from edgetam_ros.overlay import PALETTE, blend_object, color_of, draw_overlay

H, W = 120, 160


def summary(oid: int, box: tuple[int, int, int, int], area: int, visible: bool = True,
            label: str = "") -> ObjectSummary:
    x, y, w, h = box
    return ObjectSummary(oid, label, 0.9, 0.9, visible, box, (x + w / 2, y + h / 2), area)


def test_palette() -> None:
    assert PALETTE.shape == (256, 3) and PALETTE.dtype == np.uint8
    assert tuple(PALETTE[0]) == (0, 0, 0)
    colors = {color_of(i) for i in range(1, 33)}
    assert len(colors) == 32  # distinct for the first objects
    assert color_of(257) == color_of(1)


def test_blend_is_exact_inside_the_mask_only() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3)).astype(np.uint8)
    labels = np.zeros((H, W), np.uint8)
    labels[20:40, 30:70] = 3
    labels[25, 35] = 0  # a hole
    out = rgb.copy()
    blend_object(out, labels, 3, (30, 20, 40, 20), alpha=0.25)
    inside = labels == 3
    expected = np.round(0.75 * rgb[inside] + 0.25 * np.array(color_of(3))).astype(int)
    assert np.abs(out[inside].astype(int) - expected).max() <= 1
    np.testing.assert_array_equal(out[~inside], rgb[~inside])


def test_draw_overlay() -> None:
    rgb = np.full((H, W, 3), 100, np.uint8)
    labels = np.zeros((H, W), np.uint8)
    labels[30:60, 40:90] = 1
    labels[80:100, 10:30] = 2
    s1 = summary(1, (40, 30, 50, 30), 1500, label="cup")
    s2 = summary(2, (10, 80, 20, 20), 400, visible=False)
    out = draw_overlay(rgb, labels, [s1, s2], alpha=0.5)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert (rgb == 100).all()  # the input is left alone
    # object 1: blended inside, box outline in its color
    c1 = np.array(color_of(1))
    assert np.abs(out[45, 65].astype(int) - (0.5 * 100 + 0.5 * c1)).max() <= 1
    assert tuple(out[59, 65]) == color_of(1)  # bottom edge of the box (2 px thick)
    assert tuple(out[45, 40]) == color_of(1)  # left edge
    # the id/label plate above the box is dark
    assert (out[10:28, 40:70] < 100).any()
    # object 2 is not visible: nothing drawn
    np.testing.assert_array_equal(out[78:102, 8:32], rgb[78:102, 8:32])
    # far from everything: untouched
    np.testing.assert_array_equal(out[100:, 100:], rgb[100:, 100:])


def test_alpha_zero_draws_boxes_only() -> None:
    rgb = np.full((H, W, 3), 50, np.uint8)
    labels = np.zeros((H, W), np.uint8)
    labels[50:70, 50:70] = 4
    out = draw_overlay(rgb, labels, [summary(4, (50, 50, 20, 20), 400)], alpha=0.0)
    np.testing.assert_array_equal(out[55:65, 55:65], rgb[55:65, 55:65])
    assert tuple(out[50, 60]) == color_of(4)


def test_nothing_tracked_returns_a_copy() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (H, W, 3)).astype(np.uint8)
    out = draw_overlay(rgb, np.zeros((H, W), np.uint8), [])
    np.testing.assert_array_equal(out, rgb)
    assert not np.shares_memory(out, rgb)


def test_boxes_at_the_image_border() -> None:
    rgb = np.zeros((H, W, 3), np.uint8)
    labels = np.zeros((H, W), np.uint8)
    labels[: H // 2, W - 10 :] = 7
    out = draw_overlay(rgb, labels, [summary(7, (W - 10, 0, 10, H // 2), 10 * H // 2)])
    assert out.shape == rgb.shape and out[0, W - 1].any()
