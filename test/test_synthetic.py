"""The synthetic sample clip (edgetam_core.synthetic): deterministic, consistent ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgetam_core.io import read_frames, read_label_png
from edgetam_core.synthetic import (
    MotionPath,
    SampleClip,
    interior_point,
    make_sample_clip,
    make_sprite,
    render_clip,
    write_frames,
    write_labels,
)


@pytest.fixture(scope="module")
def clip() -> SampleClip:
    return make_sample_clip(num_frames=8, height=120, width=160, seed=0)


def test_shapes_and_types(clip: SampleClip) -> None:
    assert len(clip.frames) == len(clip.labels) == 8
    assert clip.size == (120, 160)
    for frame, labels in zip(clip.frames, clip.labels, strict=True):
        assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8
        assert labels.shape == (120, 160) and labels.dtype == np.uint8
        assert set(np.unique(labels).tolist()) == {0, 1, 2}
    assert clip.object_ids == [1, 2]


def test_deterministic_and_seed_dependent() -> None:
    a = make_sample_clip(num_frames=3, height=64, width=96, seed=5)
    b = make_sample_clip(num_frames=3, height=64, width=96, seed=5)
    c = make_sample_clip(num_frames=3, height=64, width=96, seed=6)
    for fa, fb in zip(a.frames + a.labels, b.frames + b.labels, strict=True):
        np.testing.assert_array_equal(fa, fb)
    assert a.clicks == b.clicks and a.boxes == b.boxes
    assert not np.array_equal(a.frames[0], c.frames[0])


def test_default_clip_size() -> None:
    clip = make_sample_clip(num_frames=1)
    assert clip.frames[0].shape == (480, 640, 3)


def test_prompts_lie_on_their_objects(clip: SampleClip) -> None:
    first = clip.labels[0]
    for oid in clip.object_ids:
        x, y = clip.clicks[oid]
        assert first[int(y), int(x)] == oid
        ys, xs = np.nonzero(first == oid)
        assert clip.boxes[oid] == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        clip.click_prompt(oid).validate(*clip.size)
        clip.box_prompt(oid).validate(*clip.size)
    prompts = clip.prompts_json("box")["prompts"]
    assert [p["object_id"] for p in prompts] == [1, 2] and all(p["frame"] == 0 for p in prompts)


def test_objects_move_smoothly_and_stay_apart(clip: SampleClip) -> None:
    for oid in clip.object_ids:
        centres = []
        for lab in clip.labels:
            ys, xs = np.nonzero(lab == oid)
            centres.append((xs.mean(), ys.mean()))
        steps = np.linalg.norm(np.diff(np.asarray(centres), axis=0), axis=1)
        assert steps.max() < 0.1 * 160  # smooth: small per-frame motion
        assert steps.sum() > 1.0  # but it moves
    # Object 1 lives in the left half, object 2 in the right half: they never touch.
    for lab in clip.labels:
        assert not (lab[:, 80:] == 1).any() and not (lab[:, :80] == 2).any()


def test_texture_moves_with_the_object() -> None:
    rng = np.random.default_rng(0)
    sprite = make_sprite(rng, 1, "rectangle", 20, MotionPath(start=(20.0, 30.0), velocity=(3, 0)))
    clip = render_clip([sprite], num_frames=3, height=60, width=80, noise_std=0)
    m0, m2 = clip.labels[0] == 1, clip.labels[2] == 1
    np.testing.assert_array_equal(np.roll(m0, 6, axis=1), m2)  # moved by exactly 6 pixels
    np.testing.assert_array_equal(clip.frames[0][m0], clip.frames[2][m2])


def test_sprite_can_leave_the_frame() -> None:
    rng = np.random.default_rng(1)
    path = MotionPath(start=(20.0, 20.0), velocity=(30.0, 0.0))
    clip = render_clip([make_sprite(rng, 3, "ellipse", 16, path)], 4, 40, 60, noise_std=0)
    areas = [int((lab == 3).sum()) for lab in clip.labels]
    assert areas[0] > 0 and areas[-1] == 0


def test_interior_point_of_non_convex_mask() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[5:35, 5:12] = True  # a "U": its centroid lies in the gap
    mask[5:35, 28:35] = True
    mask[28:35, 5:35] = True
    x, y = interior_point(mask)
    assert mask[int(y), int(x)]


def test_write_frames_and_labels_round_trip(tmp_path: Path, clip: SampleClip) -> None:
    paths = write_frames(tmp_path / "png", clip.frames[:3], ext="png")
    assert [p.name for p in paths] == ["00000.png", "00001.png", "00002.png"]
    for a, b in zip(read_frames(tmp_path / "png"), clip.frames, strict=False):
        np.testing.assert_array_equal(a, b)
    jpgs = write_frames(tmp_path / "jpg", clip.frames[:2])
    assert jpgs[0].suffix == ".jpg"
    first = next(read_frames(tmp_path / "jpg"))
    assert np.abs(first.astype(int) - clip.frames[0]).mean() < 4
    labels = write_labels(tmp_path / "gt", clip.labels[:2])
    np.testing.assert_array_equal(read_label_png(labels[1]), clip.labels[1])
    with pytest.raises(ValueError):
        write_frames(tmp_path / "x", clip.frames[:1], ext="gif")


def test_a_window_of_a_longer_world_renders_those_instants() -> None:
    from edgetam_core.synthetic import make_world_clip, object_timeline

    whole = make_world_clip(24, 64, 80, seed=11)
    same = make_world_clip(24, 64, 80, seed=11, times=[float(t) for t in range(24)])
    for a, b in zip(whole.frames + whole.labels, same.frames + same.labels, strict=True):
        np.testing.assert_array_equal(a, b)
    paths = [s.path for s in whole.sprites]
    checked = 0
    for start in (0, 5, 9, 13):
        times = [float(start + 2 * i) for i in range(4)]
        try:
            window = make_world_clip(24, 64, 80, seed=11, times=times)
        except RuntimeError:  # no layout with every object visible enough at that start
            continue
        assert window.times == times and len(window.frames) == 4
        if [s.path for s in window.sprites] != paths:
            continue  # another layout of the same seed (frame `start` failed the first one)
        checked += 1
        for i, t in enumerate(times):
            np.testing.assert_array_equal(window.labels[i], whole.labels[int(t)])
            np.testing.assert_array_equal(window.frames[i], whole.frames[int(t)])
        for oid in window.object_ids:  # timelines follow the window's times
            np.testing.assert_array_equal(
                object_timeline(window, oid).visible,
                object_timeline(whole, oid).visible[[int(t) for t in times]],
            )
    assert checked >= 1  # start 0 always shares the whole clip's layout
    with pytest.raises(ValueError, match="times"):
        make_world_clip(24, 64, 80, seed=11, times=[])
