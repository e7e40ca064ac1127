"""Data-set readers and evaluation protocols (no model: a scripted stand-in tracker)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from edgetam_core.errors import InputError
from edgetam_core.eval.datasets import read_dataset, read_predictions
from edgetam_core.eval.protocols import (
    Click,
    box_prompts,
    correction_click,
    farthest_from_boundary,
    mask_prompts,
    protocol_prompts,
    run_sequence,
    tight_box,
)
from edgetam_core.io import write_label_png
from edgetam_core.types import FrameResult, ObjectResult, Prompt
from vos_data import clip_arrays, write_davis, write_sav


def rect(h: int, w: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
    return m


# Readers --------------------------------------------------------------------------------------
def test_read_davis(tmp_path: Path) -> None:
    frames, labels = clip_arrays(frames=3)
    frames_b, labels_b = clip_arrays(frames=4, seed=1, late=2)
    root = write_davis(tmp_path / "DAVIS", {"a": (frames, labels), "b": (frames_b, labels_b)},
                       split=["b"])
    seqs = read_dataset(root, "davis", split="2017/val.txt")
    assert [s.name for s in seqs] == ["b"]
    b = seqs[0]
    assert b.num_frames == 4 and b.annotated_frames == [0, 1, 2, 3]
    np.testing.assert_array_equal(b.frame(0).shape, (48, 64, 3))
    np.testing.assert_array_equal(b.labels(3), labels_b[3])
    assert b.object_ids() == [1, 2]
    assert b.first_appearances() == {1: 0, 2: 2}
    assert [s.name for s in read_dataset(root, "davis")] == ["a", "b"]  # no split: all
    assert [s.name for s in read_dataset(root, "davis", sequences=["a"])] == ["a"]
    assert b.truncated(2).annotated_frames == [0, 1]
    with pytest.raises(InputError, match="sequence zz is not in"):
        read_dataset(root, "davis", sequences=["zz"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="missing folder"):
        read_dataset(tmp_path / "empty", "mose")
    with pytest.raises(InputError, match="split file not found"):
        read_dataset(root, "davis", split="nope.txt")


def test_read_mose_and_sav_sparse(tmp_path: Path) -> None:
    frames, labels = clip_arrays(frames=5)
    mose = tmp_path / "MOSE"
    for k, lab in enumerate(labels):
        write_label_png(mose / "Annotations" / "s" / f"{k:05d}.png", lab)
    from edgetam_core.synthetic import write_frames

    write_frames(mose / "JPEGImages" / "s", frames)
    (seq,) = read_dataset(mose, "mose")
    np.testing.assert_array_equal(seq.labels(4), labels[4])

    sav = write_sav(tmp_path / "SAV", "v", frames, labels, every=2)
    (seq,) = read_dataset(sav, "sav")
    assert seq.num_frames == 5 and seq.annotated_frames == [0, 2, 4]
    np.testing.assert_array_equal(seq.labels(2), labels[2])  # folders 000, 001 -> ids 1, 2
    # A stray annotation without a frame is refused.
    write_label_png(sav / "Annotations_6fps" / "v" / "000" / "00099.png", labels[0])
    with pytest.raises(InputError, match="00099.png has no frame"):
        read_dataset(sav, "sav")


def test_read_predictions(tmp_path: Path) -> None:
    frames, labels = clip_arrays(frames=3)
    root = write_davis(tmp_path / "D", {"a": (frames, labels)})
    (seq,) = read_dataset(root, "davis")
    for k, lab in enumerate(labels):
        write_label_png(tmp_path / "res" / "a" / f"{k:05d}.png", lab)
    preds = read_predictions(tmp_path / "res", seq)
    assert sorted(preds) == [0, 1, 2]
    np.testing.assert_array_equal(preds[1], labels[1])
    with pytest.raises(InputError, match="no predictions for sequence a"):
        read_predictions(tmp_path / "other", seq)


# Click geometry ---------------------------------------------------------------------------------
def test_farthest_from_boundary() -> None:
    # 7x13 rectangle rows 2..8, cols 2..14: distance 4 (to rows 1 and 9) on row 5 for cols
    # 5..11 (cols 2..4 and 12..14 are closer to the side); the middle one is col 8.
    assert farthest_from_boundary(rect(12, 20, (2, 8), (2, 14))) == (8.5, 5.5)
    # The image edge counts as boundary: a mask filling a 3x5 image -> its centre (2, 1).
    assert farthest_from_boundary(np.ones((3, 5), dtype=bool)) == (2.5, 1.5)
    with pytest.raises(ValueError):
        farthest_from_boundary(np.zeros((3, 3), dtype=bool))


def test_correction_click_picks_the_largest_error_region() -> None:
    truth = rect(12, 20, (2, 8), (2, 14))
    pred = rect(12, 20, (2, 8), (2, 7)) | rect(12, 20, (10, 11), (15, 19))
    # Missed: rows 2..8 x cols 8..14 (49 px), centre (row 5, col 11) at distance 4.
    # False: rows 10..11 x cols 15..19 (10 px). The missed region is larger -> positive.
    assert correction_click(pred, truth) == Click(11.5, 5.5, True)
    # Only the false region left: every pixel is at distance 1; nearest to the mean (10.5, 17)
    # are (10, 17) and (11, 17): the first in raster order.
    assert correction_click(truth | rect(12, 20, (10, 11), (15, 19)), truth) == Click(
        17.5, 10.5, False
    )
    assert correction_click(truth, truth) is None


def test_tight_box() -> None:
    assert tight_box(rect(12, 20, (2, 8), (3, 14))) == (3.0, 2.0, 15.0, 9.0)


# Protocols with a scripted tracker ---------------------------------------------------------------
class ScriptedTracker:
    """Stands in for Tracker: ``predict(frame_index, prompts_so_far)`` -> {id: mask}."""

    def __init__(self, predict: Callable[[int, dict[int, list[Prompt]]], dict[int, np.ndarray]]):
        self.predict = predict
        self.calls: list[tuple[int, list[Prompt]]] = []
        self.reset()

    def reset(self) -> None:
        self.k = -1
        self.given: dict[int, list[Prompt]] = {}

    def step(self, frame: np.ndarray, prompts: Sequence[Prompt] = ()) -> FrameResult:
        self.k += 1
        self.calls.append((self.k, list(prompts)))
        for p in prompts:
            self.given.setdefault(p.object_id, []).append(p)
        h, w = frame.shape[:2]
        result = FrameResult(self.k, h, w)
        for oid, mask in self.predict(self.k, self.given).items():
            logits = np.where(mask, 1.0, -1.0).astype(np.float32)
            result.objects[oid] = ObjectResult(oid, logits, logits, 1.0, 1.0)
        return result


def _one_sequence(tmp_path: Path, labels: list[np.ndarray]) -> object:
    frames = [np.full((*labels[0].shape, 3), 100, dtype=np.uint8) for _ in labels]
    root = write_davis(tmp_path / "D", {"s": (frames, labels)})
    return read_dataset(root, "davis")[0]


def test_simulated_clicks(tmp_path: Path) -> None:
    truth = rect(12, 20, (2, 8), (2, 14))
    lab = truth.astype(np.uint8)
    seq = _one_sequence(tmp_path, [lab, lab, lab])
    blob = rect(12, 20, (10, 11), (15, 19))

    def predict(k: int, given: dict[int, list[Prompt]]) -> dict[int, np.ndarray]:
        n = len(given[1][-1].points)  # clicks in the latest prompt
        if n == 1:
            return {1: rect(12, 20, (2, 8), (2, 7)) | blob}
        if n == 2:
            return {1: truth | blob}
        return {1: truth}

    tracker = ScriptedTracker(predict)
    prompts = protocol_prompts(tracker, seq, "clicks3")  # type: ignore[arg-type]
    (p,) = prompts[0]
    # 1: farthest point of the truth; 2: centre of the missed right half; 3: in the false blob.
    np.testing.assert_array_equal(p.points, [[8.5, 5.5], [11.5, 5.5], [17.5, 10.5]])
    np.testing.assert_array_equal(p.labels, [1, 1, 0])
    assert len(tracker.calls) == 2  # two simulation rounds on frame 0
    assert tracker.k == -1  # left reset
    (one,) = protocol_prompts(ScriptedTracker(predict), seq, "clicks1")[0]  # type: ignore[arg-type]
    np.testing.assert_array_equal(one.points, [[8.5, 5.5]])


def test_mask_and_box_prompts_add_late_objects_on_their_first_frame(tmp_path: Path) -> None:
    a = rect(12, 20, (1, 3), (1, 4)).astype(np.uint8)
    both = a.copy()
    both[rect(12, 20, (6, 9), (10, 12))] = 2
    seq = _one_sequence(tmp_path, [a, a, both, both])
    semi = mask_prompts(seq)  # type: ignore[arg-type]
    assert sorted(semi) == [0, 2]
    assert [p.object_id for p in semi[0]] == [1] and [p.object_id for p in semi[2]] == [2]
    np.testing.assert_array_equal(semi[2][0].mask, both == 2)
    boxes = box_prompts(seq)  # type: ignore[arg-type]
    assert boxes[0][0].box == (1.0, 1.0, 5.0, 4.0)
    assert boxes[2][0].box == (10.0, 6.0, 13.0, 10.0)


def test_run_sequence_with_a_correction(tmp_path: Path) -> None:
    truth = rect(12, 20, (2, 8), (2, 14))
    lab = truth.astype(np.uint8)
    seq = _one_sequence(tmp_path, [lab] * 4)

    def predict(k: int, given: dict[int, list[Prompt]]) -> dict[int, np.ndarray]:
        corrected = any(p.points is not None for p in given[1])
        if k == 2 and not corrected:
            return {1: rect(12, 20, (2, 8), (2, 7))}  # right part lost on frame 2
        return {1: truth}

    tracker = ScriptedTracker(predict)
    run = run_sequence(tracker, seq, "semi", corrections=2)  # type: ignore[arg-type]
    # Frame 2 (scored, J < 1) gets a positive click in the missed part; the second round
    # finds nothing left to correct.
    assert run.corrections == [(2, 1, Click(11.5, 5.5, True))]
    assert [p.object_id for p in run.prompts[2]] == [1]
    np.testing.assert_array_equal(run.predictions[2], lab)
    assert run.frames == 4
    passes = [k for k, _ in tracker.calls].count(0)
    assert passes == 2  # the first pass and one re-run
