"""edgetam_ros.prompts: clicks and prompt fields -> core prompts, camera projection (no ROS)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from edgetam_core.errors import PromptError
from edgetam_ros.params import PARAMS, validate_parameter
from edgetam_ros.prompts import (
    MAX_CLICKS_PER_OBJECT,
    ClickPrompter,
    check_pixel,
    next_free_id,
    project_to_pixel,
    prompt_from_fields,
    quaternion_to_matrix,
    transform_point,
)

SIZE = (480, 640)  # (H, W)


def test_check_pixel() -> None:
    assert check_pixel(0, 0, 640, 480) == (0.0, 0.0)
    assert check_pixel(639.5, 479.5, 640, 480) == (639.5, 479.5)
    for x, y in [(640, 5), (5, 480), (-0.1, 5), (5, -3)]:
        with pytest.raises(PromptError, match="outside the 640x480 image"):
            check_pixel(x, y, 640, 480)
    for x, y in [(math.nan, 1), (1, math.inf)]:
        with pytest.raises(PromptError, match="not finite"):
            check_pixel(x, y, 640, 480)
    with pytest.raises(PromptError, match="not a number"):
        check_pixel("left", 1, 640, 480)  # type: ignore[arg-type]


def test_next_free_id() -> None:
    assert next_free_id([]) == 1
    assert next_free_id({1, 2, 4}) == 3
    with pytest.raises(PromptError, match="no free object id"):
        next_free_id(range(1, 4), limit=3)


def test_prompt_from_fields() -> None:
    pts = [SimpleNamespace(x=10.0, y=20.0, z=0.0), SimpleNamespace(x=30.0, y=40.0, z=0.0)]
    p = prompt_from_fields(4, pts, [], [], SIZE)
    assert p.object_id == 4 and p.points is not None and p.labels is not None
    assert p.points.tolist() == [[10, 20], [30, 40]] and p.labels.tolist() == [1, 1]
    p = prompt_from_fields(4, pts, [1, 0], [1, 2, 300, 200], SIZE)
    assert p.labels is not None and p.labels.tolist() == [1, 0]
    assert p.box == (1.0, 2.0, 300.0, 200.0)
    p = prompt_from_fields(2, [], [], [5, 5, 50, 60], SIZE)
    assert p.points is None and p.box == (5.0, 5.0, 50.0, 60.0)


@pytest.mark.parametrize(
    ("object_id", "points", "labels", "box", "message"),
    [
        (0, [(1, 1)], [], [], "object id must be in 1..255"),
        (256, [(1, 1)], [], [], "object id must be in 1..255"),
        (1, [(1, 1)], [1, 0], [], "1 points but 2 point_labels"),
        (1, [(1, 1)], [2], [], "point_labels must be 1"),
        (1, [], [], [1, 2, 3], "box must be empty or"),
        (1, [], [], [], "has no points, box or mask"),
        (1, [(700, 1)], [], [], "outside the 640x480 image"),
        (1, [(math.nan, 1)], [], [], "finite"),
        (1, [], [], [50, 50, 10, 10], "must have x1 > x0"),
        (1, [], [], [0, 0, 700, 10], "outside the 640x480 image"),
    ],
)
def test_prompt_from_fields_errors(object_id: int, points: list[tuple[float, float]],
                                   labels: list[int], box: list[float], message: str) -> None:
    with pytest.raises(PromptError, match=message):
        prompt_from_fields(object_id, points, labels, box, SIZE)


def test_click_modes() -> None:
    cp = ClickPrompter()
    p = cp.click(10, 20, "new", set(), 4, SIZE)
    assert p.object_id == 1 and p.labels is not None and p.labels.tolist() == [1]
    p = cp.click(30, 40, "new", {1}, 4, SIZE)
    assert p.object_id == 2
    # refine: the last prompted object, with every click so far
    p = cp.click(35, 45, "refine", {1, 2}, 4, SIZE)
    assert p.object_id == 2 and p.points is not None and p.points.tolist() == [[30, 40], [35, 45]]
    # negative on the selected object (parameter wins over "last prompted")
    p = cp.click(12, 22, "negative", {1, 2}, 4, SIZE, selected=1)
    assert p.object_id == 1 and p.labels is not None and p.labels.tolist() == [1, 0]
    # selected but not tracked: falls back to the last prompted
    p = cp.click(13, 23, "refine", {1, 2}, 4, SIZE, selected=9)
    assert p.object_id == 1
    # refine with nothing tracked starts a new object; negative refuses
    fresh = ClickPrompter()
    assert fresh.click(5, 5, "refine", set(), 4, SIZE).object_id == 1
    with pytest.raises(PromptError, match="no object is selected"):
        ClickPrompter().click(5, 5, "negative", set(), 4, SIZE)
    with pytest.raises(PromptError, match="max_objects is 2"):
        cp.click(5, 5, "new", {1, 2}, 2, SIZE)
    with pytest.raises(PromptError, match="click_mode must be one of"):
        cp.click(5, 5, "double", {1}, 2, SIZE)
    with pytest.raises(PromptError, match="outside"):
        cp.click(5000, 5, "new", set(), 2, SIZE)


def test_click_history_is_bounded_and_forgotten() -> None:
    cp = ClickPrompter()
    cp.click(1, 1, "new", set(), 4, SIZE)
    for k in range(MAX_CLICKS_PER_OBJECT + 5):
        p = cp.click(2 + k, 2, "refine", {1}, 4, SIZE)
    assert p.points is not None and len(p.points) == MAX_CLICKS_PER_OBJECT
    assert p.points[-1].tolist() == [2 + MAX_CLICKS_PER_OBJECT + 4, 2]
    cp.prompted(3, np.array([[9.0, 9.0]]), np.array([0]), replace=True)
    assert cp.history[3] == [(9.0, 9.0, 0)] and cp.last_prompted == 3
    cp.keep_only({1})
    assert set(cp.history) == {1} and cp.last_prompted == 0
    cp.forget(1)
    assert cp.history == {}
    cp.click(1, 1, "new", set(), 4, SIZE)
    cp.forget()
    assert cp.history == {} and cp.last_prompted == 0


def camera_info(k: list[float], d: list[float], model: str = "plumb_bob",
                p: list[float] | None = None) -> SimpleNamespace:
    return SimpleNamespace(k=k, d=d, distortion_model=model, p=p or [0.0] * 12)


K = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]


def test_projection_pinhole() -> None:
    info = camera_info(K, [0.0] * 5)
    assert project_to_pixel((0.0, 0.0, 2.0), info) == (320.0, 240.0)
    u, v = project_to_pixel((0.2, -0.1, 1.0), info)
    assert (u, v) == pytest.approx((420.0, 189.0))


@pytest.mark.parametrize(
    ("model", "d"),
    [
        ("plumb_bob", [-0.28, 0.07, 0.001, -0.002, 0.01]),
        ("rational_polynomial", [0.1, -0.05, 0.001, 0.002, 0.01, 0.05, -0.02, 0.003]),
    ],
)
def test_projection_with_distortion_matches_opencv(model: str, d: list[float]) -> None:
    info = camera_info(K, d, model)
    pts = np.array([[0.3, -0.2, 1.5], [-0.5, 0.4, 2.0], [0.01, 0.02, 0.5]])
    ref, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), np.array(K).reshape(3, 3),
                               np.array(d))
    for p, r in zip(pts, ref.reshape(-1, 2), strict=True):
        assert project_to_pixel(p, info) == pytest.approx(tuple(r), abs=1e-6)


def test_projection_rectified_uses_p() -> None:
    p = [400.0, 0.0, 300.0, -40.0, 0.0, 400.0, 200.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info = camera_info(K, [0.5, 0, 0, 0, 0], p=p)
    u, v = project_to_pixel((0.1, 0.1, 2.0), info, rectified=True)
    assert (u, v) == pytest.approx(((400 * 0.1 + 300 * 2 - 40) / 2, (400 * 0.1 + 200 * 2) / 2))


def test_projection_errors() -> None:
    info = camera_info(K, [])
    with pytest.raises(PromptError, match="behind the camera"):
        project_to_pixel((0, 0, -1), info)
    with pytest.raises(PromptError, match="behind the camera"):
        project_to_pixel((0, 0, 0), info)
    with pytest.raises(PromptError, match="not finite"):
        project_to_pixel((math.nan, 0, 1), info)
    with pytest.raises(PromptError, match="no intrinsic matrix"):
        project_to_pixel((0, 0, 1), camera_info([0.0] * 9, []))
    with pytest.raises(PromptError, match="no projection matrix"):
        project_to_pixel((0, 0, 1), info, rectified=True)
    with pytest.raises(PromptError, match="distortion model 'equidistant'"):
        project_to_pixel((0, 0, 1), camera_info(K, [0.1, 0, 0, 0], "equidistant"))


def transform(t: tuple[float, float, float], q: tuple[float, float, float, float]
              ) -> SimpleNamespace:
    tr = SimpleNamespace(
        translation=SimpleNamespace(x=t[0], y=t[1], z=t[2]),
        rotation=SimpleNamespace(x=q[0], y=q[1], z=q[2], w=q[3]),
    )
    return SimpleNamespace(transform=tr)  # a TransformStamped


def test_transform_point() -> None:
    s = math.sqrt(0.5)
    tf = transform((1.0, 2.0, 3.0), (0.0, 0.0, s, s))  # 90 degrees about z
    assert transform_point((1.0, 0.0, 0.0), tf) == pytest.approx((1.0, 3.0, 3.0))
    # the usual base -> optical rotation (x right, y down, z forward) from REP 103
    q = (-0.5, 0.5, -0.5, 0.5)
    r = quaternion_to_matrix(*q)
    forward_in_optical = r.T @ np.array([1.0, 0.0, 0.0])
    assert forward_in_optical == pytest.approx([0.0, 0.0, 1.0])
    with pytest.raises(PromptError, match="invalid rotation"):
        transform_point((0, 0, 0), transform((0, 0, 0), (0, 0, 0, 0)))


def test_parameters_are_described_and_validated() -> None:
    names = {p.name for p in PARAMS}
    assert {"checkpoint", "device", "backend", "max_objects", "compressed_input",
            "publish_overlay", "click_mode", "mask_threshold", "qos_depth"} <= names
    assert all(p.description for p in PARAMS)
    assert validate_parameter("device", "cuda:1") is None
    assert validate_parameter("device", "tpu") is not None
    assert validate_parameter("backend", "eager") is None
    assert "not available" in (validate_parameter("backend", "tensorrt") or "")
    assert validate_parameter("click_mode", "refine") is None
    assert validate_parameter("click_mode", "twice") is not None
    assert validate_parameter("max_objects", 7) is None  # ranges: rclpy, from descriptors
