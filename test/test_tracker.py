"""Streaming tracker behaviour on a tiny config: prompts at any frame, removal, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgetam_core.checkpoint import build_default_model
from edgetam_core.config import EdgeTAMConfig, tiny_config
from edgetam_core.errors import InputError, PromptError
from edgetam_core.model.edgetam import EdgeTAM
from edgetam_core.synthetic import make_sample_clip
from edgetam_core.tracker import MemoryBank, MemoryEntry, Tracker, merge_prompts
from edgetam_core.types import Prompt

H, W = 96, 128


@pytest.fixture(scope="module")
def model() -> EdgeTAM:
    return build_default_model(config=tiny_config())


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return make_sample_clip(num_frames=6, height=H, width=W, seed=1).frames


def click(obj_id: int, x: float = 40.0, y: float = 40.0, label: int = 1) -> Prompt:
    return Prompt.from_clicks(obj_id, [[x, y]], [label])


def _logits_by_id(
    tracker: Tracker, frames: list[np.ndarray], schedule: dict[int, list[Prompt]]
) -> list[dict[int, np.ndarray]]:
    out = []
    for i, frame in enumerate(frames):
        r = tracker.step(frame, schedule.get(i, []))
        out.append({k: v.low_res_logits for k, v in r.objects.items()})
        for obj in r.objects.values():
            # Comparisons below are only meaningful on non-constant predictions.
            assert obj.low_res_logits.std() > 1e-3 and 0 < obj.area < H * W
    return out


def test_results_have_all_fields(model: EdgeTAM, frames: list[np.ndarray]) -> None:
    tracker = Tracker(model)
    r = tracker.step(frames[0], [click(3), Prompt(5, box=(60.0, 20.0, 120.0, 80.0))])
    assert r.frame_index == 0 and (r.height, r.width) == (H, W)
    assert sorted(r.objects) == [3, 5] == tracker.object_ids
    for obj in r.objects.values():
        assert obj.logits.shape == (H, W) and obj.logits.dtype == np.float32
        assert obj.low_res_logits.shape == (64, 64)
        assert 0.0 <= obj.visibility <= 1.0
        assert obj.area == int(obj.mask.sum())
        if obj.area:
            x0, y0, x1, y1 = obj.box  # type: ignore[misc]
            assert obj.mask[y0 : y1 + 1, x0 : x1 + 1].sum() == obj.area
            cx, cy = obj.centroid  # type: ignore[misc]
            assert x0 <= cx <= x1 and y0 <= cy <= y1
    labels = r.label_image()
    assert labels.shape == (H, W) and set(np.unique(labels)) <= {0, 3, 5}
    assert {"image_encoder", "memory_encoder"} <= set(r.timings_ms)


def test_objects_are_independent_in_a_batch(model: EdgeTAM, frames: list[np.ndarray]) -> None:
    """Tracking two objects together gives each what it gets when tracked alone."""
    both = _logits_by_id(
        Tracker(model), frames, {0: [click(1), Prompt(2, box=(60.0, 20.0, 120.0, 80.0))]}
    )
    alone1 = _logits_by_id(Tracker(model), frames, {0: [click(1)]})
    alone2 = _logits_by_id(Tracker(model), frames, {0: [Prompt(2, box=(60.0, 20.0, 120.0, 80.0))]})
    for i in range(len(frames)):
        np.testing.assert_allclose(both[i][1], alone1[i][1], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(both[i][2], alone2[i][2], rtol=1e-4, atol=1e-5)


def test_add_object_mid_stream_keeps_others(model: EdgeTAM, frames: list[np.ndarray]) -> None:
    """A new object at frame 3 starts there; object 1's results are untouched by it."""
    with_new = _logits_by_id(Tracker(model), frames, {0: [click(1)], 3: [click(2, 90.0, 50.0)]})
    without = _logits_by_id(Tracker(model), frames, {0: [click(1)]})
    for i in range(len(frames)):
        assert set(with_new[i]) == ({1, 2} if i >= 3 else {1})
        np.testing.assert_allclose(with_new[i][1], without[i][1], rtol=1e-4, atol=1e-5)
    # The new object started fresh: same as a stream that begins at frame 3.
    fresh = _logits_by_id(Tracker(model), frames[3:], {0: [click(2, 90.0, 50.0)]})
    for j in range(len(fresh)):
        np.testing.assert_allclose(with_new[3 + j][2], fresh[j][2], rtol=1e-4, atol=1e-5)


def test_refinement_changes_object_and_becomes_conditioning(
    model: EdgeTAM, frames: list[np.ndarray]
) -> None:
    tracker = Tracker(model)
    plain = Tracker(model)
    for i, frame in enumerate(frames):
        prompts = [click(1)] if i == 0 else []
        if i == 2:
            prompts = [click(1, 100.0, 70.0, label=0)]
        r = tracker.step(frame, prompts)
        p = plain.step(frame, [click(1)] if i == 0 else [])
        if i < 2:
            np.testing.assert_array_equal(r.objects[1].low_res_logits, p.objects[1].low_res_logits)
        elif i == 2:
            assert not np.allclose(r.objects[1].low_res_logits, p.objects[1].low_res_logits)
    assert sorted(tracker.bank(1).conditioning) == [0, 2]
    assert sorted(plain.bank(1).conditioning) == [0]


def test_refinement_without_conditioning_option(model: EdgeTAM, frames: list[np.ndarray]) -> None:
    tracker = Tracker(model, refinements_as_conditioning=False)
    for i, frame in enumerate(frames[:4]):
        tracker.step(frame, [click(1)] if i in (0, 2) else [])
    assert sorted(tracker.bank(1).conditioning) == [0]


def test_mask_prompt_is_output_directly(model: EdgeTAM, frames: list[np.ndarray]) -> None:
    mask = np.zeros((H, W), dtype=bool)
    mask[20:60, 30:90] = True
    r = Tracker(model).step(frames[0], [Prompt(4, mask=mask)])
    agreement = np.mean(r.objects[4].mask == mask)
    assert agreement > 0.97
    assert r.objects[4].object_score > 0


def test_remove_and_reset(model: EdgeTAM, frames: list[np.ndarray]) -> None:
    tracker = Tracker(model)
    tracker.step(frames[0], [click(1), click(2, 90.0, 50.0)])
    tracker.remove(1)
    assert tracker.object_ids == [2]
    r = tracker.step(frames[1])
    assert sorted(r.objects) == [2]
    with pytest.raises(PromptError, match="unknown object id 1"):
        tracker.remove(1)
    tracker.reset()
    assert tracker.object_ids == [] and tracker.frame_index == -1 and tracker.frame_size is None
    assert tracker.step(frames[2]).objects == {}


def test_queued_prompt_applies_to_next_frame(model: EdgeTAM, frames: list[np.ndarray]) -> None:
    tracker = Tracker(model)
    tracker.step(frames[0])
    tracker.add_prompt(click(7))
    assert tracker.object_ids == []
    r = tracker.step(frames[1])
    assert sorted(r.objects) == [7]
    direct = Tracker(model)
    direct.step(frames[0])
    d = direct.step(frames[1], [click(7)])
    np.testing.assert_array_equal(r.objects[7].low_res_logits, d.objects[7].low_res_logits)


def test_bad_input_changes_nothing(model: EdgeTAM, frames: list[np.ndarray]) -> None:
    tracker = Tracker(model, max_objects=2)
    tracker.step(frames[0], [click(1)])
    bank_len = len(tracker.bank(1))
    bad = [
        Prompt.from_clicks(2, [[W + 5.0, 3.0]], [1]),
        Prompt.from_clicks(2, [[float("nan"), 3.0]], [1]),
        Prompt.from_clicks(2, [[3.0, 3.0]], [7]),
        Prompt(2, box=(50.0, 50.0, 10.0, 10.0)),
        Prompt(0, box=(1.0, 1.0, 10.0, 10.0)),
        Prompt(2),
    ]
    for p in bad:
        with pytest.raises(PromptError):
            tracker.step(frames[1], [p])
        with pytest.raises(PromptError):
            tracker.add_prompt(p)
    with pytest.raises(PromptError, match="too many objects"):
        tracker.step(frames[1], [click(2), click(3)])
    with pytest.raises(InputError):
        tracker.step(np.zeros((H, W), dtype=np.uint8))
    with pytest.raises(InputError):
        tracker.step(np.zeros((H, W, 3), dtype=np.float32))
    with pytest.raises(InputError):
        tracker.step(np.zeros((0, W, 3), dtype=np.uint8))
    assert tracker.frame_index == 0 and tracker.object_ids == [1]
    assert len(tracker.bank(1)) == bank_len
    assert sorted(tracker.step(frames[1]).objects) == [1]


def test_frame_size_change_clears_memory_and_reports(
    model: EdgeTAM, frames: list[np.ndarray]
) -> None:
    tracker = Tracker(model)
    tracker.step(frames[0], [click(1)])
    small = np.ascontiguousarray(frames[1][: H // 2, : W // 2])
    r = tracker.step(small)
    assert r.objects == {} and tracker.object_ids == []
    assert any("frame size changed" in e for e in r.events)
    r = tracker.step(small, [click(2, 10.0, 10.0)])
    assert sorted(r.objects) == [2]


def test_memory_stays_bounded_over_a_long_stream() -> None:
    """Banks never exceed their bound, whatever the number of frames or refinements."""
    config = EdgeTAMConfig(
        image_size=128, num_latents=4, num_latents_2d=4, num_maskmem=3, max_obj_ptrs_in_encoder=4
    )
    model = build_default_model(config=config)
    frames = make_sample_clip(num_frames=4, height=48, width=64, seed=2).frames
    tracker = Tracker(model, max_conditioning_frames=2)
    sizes = []
    for i in range(60):
        prompts = [click(1, 20.0, 20.0)] if i % 7 == 0 else []
        if i == 5:
            prompts.append(click(2, 40.0, 30.0))
        tracker.step(frames[i % 4], prompts)
        for obj_id in tracker.object_ids:
            bank = tracker.bank(obj_id)
            with_features = [e for e in bank.recent if e.features.shape[0] > 0]
            assert len(bank.recent) <= config.max_obj_ptrs_in_encoder - 1
            assert len(with_features) <= config.num_maskmem - 1
            assert len(bank.conditioning) <= 2 + config.max_obj_ptrs_in_encoder
            assert all(e.features.dtype == torch.bfloat16 for e in with_features)
        sizes.append(sum(tracker.bank(i).nbytes() for i in tracker.object_ids))
    assert max(sizes[30:]) <= max(sizes[10:30])


def test_memory_bank_selects_like_the_reference() -> None:
    from sam2.modeling.sam2_utils import select_closest_cond_frames

    bank = MemoryBank(num_recent_memories=6, num_recent_pointers=15, max_conditioning=3)
    for t in (0, 4, 9, 15, 20):
        bank.add(MemoryEntry(t, torch.zeros(2, 1), torch.zeros(4)), conditioning=True)
    for frame in (5, 16, 21, 40):
        selected, unselected = bank.select_conditioning(frame)
        ref_sel, ref_unsel = select_closest_cond_frames(frame, dict(bank.conditioning), 3)
        assert [e.frame_index for e in selected] == sorted(ref_sel)
        assert sorted(unselected) == sorted(ref_unsel)


def test_merge_prompts_appends_clicks() -> None:
    merged = merge_prompts(
        [click(1, 1.0, 2.0), Prompt(1, box=(0.0, 0.0, 5.0, 5.0)), click(1, 3.0, 4.0, 0)]
    )
    p = merged[1]
    assert p.points is not None and p.points.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert p.labels is not None and p.labels.tolist() == [1, 0]
    assert p.box == (0.0, 0.0, 5.0, 5.0)
