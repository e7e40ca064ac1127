"""J, F and their statistics on hand-made masks; every expected value is worked out here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgetam_core.eval.metrics import (
    boundary_map,
    boundary_radius,
    boundary_score,
    decay_bins,
    disk,
    f_measure,
    frames_to_score,
    g_score,
    jaccard,
    score_sequence,
    statistics,
    summarize,
)


def square(h: int, w: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """Mask with rows[0]..rows[1] and cols[0]..cols[1] (inclusive) set."""
    m = np.zeros((h, w), dtype=bool)
    m[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
    return m


# J ---------------------------------------------------------------------------------------------
def test_jaccard_overlap_and_void() -> None:
    gt = square(10, 10, (2, 4), (2, 4))  # 9 pixels
    pred = square(10, 10, (2, 4), (3, 5))  # 9 pixels, 6 shared (cols 3..4)
    assert jaccard(pred, gt) == pytest.approx(6 / 12)
    # Void over the prediction-only column 5: union 9, intersection 6.
    void = np.zeros((10, 10), dtype=bool)
    void[:, 5] = True
    assert jaccard(pred, gt, void) == pytest.approx(6 / 9)


def test_jaccard_empty_conventions() -> None:
    empty = np.zeros((4, 4), dtype=bool)
    some = square(4, 4, (1, 1), (1, 2))
    assert jaccard(empty, empty) == 1.0  # nothing to find, nothing found
    assert jaccard(some, empty) == 0.0
    assert jaccard(empty, some) == 0.0


# Boundaries ------------------------------------------------------------------------------------
def test_boundary_map_of_a_square_is_the_ring_up_and_left_of_its_edge() -> None:
    # A pixel is a boundary pixel when it differs from its right, lower or lower-right
    # neighbour: for the 2x2 square at rows/cols 1..2 that is the 3x3 ring at rows/cols 0..2.
    m = square(5, 5, (1, 2), (1, 2))
    expected = np.array(
        [
            [1, 1, 1, 0, 0],
            [1, 0, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(boundary_map(m), expected)


def test_boundary_map_at_the_image_border() -> None:
    # The last column only compares with the pixel below: an object filling the last column
    # has its boundary in column 3 (left of it), none in column 4.
    m = np.zeros((5, 5), dtype=bool)
    m[:, 4] = True
    expected = np.zeros((5, 5), dtype=bool)
    expected[:, 3] = True
    np.testing.assert_array_equal(boundary_map(m), expected)
    # A full image has no transition at all.
    assert not boundary_map(np.ones((4, 6), dtype=bool)).any()


def test_boundary_radius_and_disk() -> None:
    assert boundary_radius(30, 40) == 1  # diagonal 50 -> ceil(0.4)
    assert boundary_radius(120, 160) == 2  # diagonal 200 -> ceil(1.6)
    assert boundary_radius(480, 854) == 8  # DAVIS 480p: diagonal 979.65 -> ceil(7.84)
    assert boundary_radius(480, 854, tolerance=3) == 3  # >= 1: pixels
    np.testing.assert_array_equal(disk(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    assert int(disk(2).sum()) == 13  # dx^2 + dy^2 <= 4


def test_f_of_a_shifted_square_depends_on_the_tolerance() -> None:
    # Ground truth: the 10x10 square rows/cols 10..19; its boundary is the outline of the
    # 11x11 square rows/cols 9..19 (40 pixels). The prediction is shifted right.
    gt30 = square(30, 40, (10, 19), (10, 19))
    # Shift 1, radius 1 (30x40 image): every boundary pixel has a partner within 1 -> F = 1.
    pred = square(30, 40, (10, 19), (11, 20))
    assert f_measure(pred, gt30) == 1.0
    assert jaccard(pred, gt30) == pytest.approx(90 / 110)
    # Shift 2, radius 1. Predicted outline: rows 9..19, cols 11..21. Matched: top row
    # cols 11..20 (10 of 11: col 21 is 2 away), bottom likewise 10, left column (col 11) only
    # rows 10 and 18 (next to the true top/bottom rows), right column (col 21) none:
    # 22 of 40. By symmetry the recall is 22/40 too.
    pred2 = square(30, 40, (10, 19), (12, 21))
    score = boundary_score(pred2, gt30)
    assert score.precision == pytest.approx(22 / 40)
    assert score.recall == pytest.approx(22 / 40)
    assert score.f == pytest.approx(22 / 40)
    # The same masks in a 120x160 image: radius 2, so the 2-pixel shift is within tolerance.
    gt120 = square(120, 160, (10, 19), (10, 19))
    assert f_measure(square(120, 160, (10, 19), (12, 21)), gt120) == 1.0


def test_f_precision_and_recall_differ() -> None:
    # Prediction: the truth plus a far-away 1x1 blob. 30x40 image, radius 1.
    gt = square(30, 40, (10, 19), (10, 19))
    pred = gt.copy()
    pred[25, 30] = True
    # boundary of a single pixel at (25, 30): pixels (24,29), (24,30), (25,29) differ from a
    # right/lower/diagonal neighbour, and (25,30) itself differs from its right neighbour.
    assert int(boundary_map(pred).sum()) == 40 + 4
    score = boundary_score(pred, gt)
    assert score.precision == pytest.approx(40 / 44)
    assert score.recall == 1.0
    assert score.f == pytest.approx(2 * (40 / 44) / (40 / 44 + 1))


def test_f_empty_conventions() -> None:
    empty = np.zeros((30, 40), dtype=bool)
    some = square(30, 40, (5, 8), (5, 8))
    assert boundary_score(empty, empty) == boundary_score(some, some)
    assert f_measure(empty, empty) == 1.0
    s = boundary_score(empty, some)  # nothing predicted: precision 1, recall 0
    assert (s.precision, s.recall, s.f) == (1.0, 0.0, 0.0)
    s = boundary_score(some, empty)  # nothing to find: precision 0, recall 1
    assert (s.precision, s.recall, s.f) == (0.0, 1.0, 0.0)


# Statistics ------------------------------------------------------------------------------------
def test_decay_bins_follow_the_davis_split() -> None:
    # n = 8: linspace(1, 8, 5) = 1, 2.75, 4.5, 6.25, 8 -> rounded (halves up) 1, 3, 5, 6, 8
    # -> 0-based edges 0, 2, 4, 5, 7; bin i = edge i .. edge i+1 inclusive.
    assert decay_bins(8) == [(0, 3), (2, 5), (4, 6), (5, 8)]
    # n = 2: 1, 1.25, 1.5, 1.75, 2 -> 1, 1, 2, 2, 2 -> edges 0, 0, 1, 1, 1.
    assert decay_bins(2) == [(0, 1), (0, 2), (1, 2), (1, 2)]
    assert decay_bins(1) == [(0, 1)] * 4
    assert decay_bins(0) == []


def test_statistics_mean_recall_decay() -> None:
    x = [1.0, 1.0, 1.0, 0.8, 0.5, 0.4, 0.2, 0.0]
    s = statistics(x)
    assert s.mean == pytest.approx(4.9 / 8)
    assert s.recall == pytest.approx(4 / 8)  # 1, 1, 1, 0.8 are > 0.5; 0.5 is not
    assert s.decay == pytest.approx(1.0 - (0.4 + 0.2 + 0.0) / 3)  # bins [0:3] and [5:8]
    two = statistics([0.9, 0.3])
    assert two.decay == pytest.approx(0.6)
    assert math.isnan(statistics([]).mean)


def test_frames_to_score_drops_first_and_last() -> None:
    assert frames_to_score([4, 0, 8, 12]) == [4, 8]
    assert frames_to_score([0, 1]) == []
    assert frames_to_score([0, 1], skip_first_last=False) == [0, 1]


# Sequences and data sets ------------------------------------------------------------------------
def test_score_sequence_and_summary() -> None:
    h, w = 30, 40
    a = square(h, w, (10, 19), (10, 19))  # object 1
    b = square(h, w, (2, 5), (30, 33))  # object 2 (4x4)

    def labels(*masks: tuple[np.ndarray, int]) -> np.ndarray:
        out = np.zeros((h, w), dtype=np.uint8)
        for m, oid in masks:
            out[m] = oid
        return out

    truth = {k: labels((a, 1), (b, 2)) for k in range(5)}
    pred = dict(truth)
    pred[2] = labels((a, 1))  # object 2 missed on frame 2: J = F = 0
    pred[3] = labels((square(h, w, (10, 19), (11, 20)), 1), (b, 2), (square(h, w, (25, 26),
                                                                             (2, 3)), 7))
    pred[0] = labels()  # frames 0 and 4 are not scored: their errors do not count
    scores = score_sequence("seq", truth, pred)
    o1, o2 = scores.objects[1], scores.objects[2]
    assert o1.frames == o2.frames == [1, 2, 3]
    assert o1.j == pytest.approx([1.0, 1.0, 90 / 110])
    assert o1.f == [1.0, 1.0, 1.0]
    assert o2.j == [1.0, 0.0, 1.0]
    assert o2.f == [1.0, 0.0, 1.0]
    assert scores.extra_ids == [7]
    # Object 1: J mean (2 + 9/11)/3, F mean 1; object 2: J = F = 2/3.
    j1 = (2 + 9 / 11) / 3
    assert o1.jf_mean == pytest.approx((j1 + 1) / 2)
    summary = summarize([scores])
    assert summary.j.mean == pytest.approx((j1 + 2 / 3) / 2)
    assert summary.f.mean == pytest.approx((1 + 2 / 3) / 2)
    assert summary.jf_mean == pytest.approx(((j1 + 2 / 3) / 2 + (1 + 2 / 3) / 2) / 2)
    # Recall: object 1 all three > 0.5 -> 1; object 2 two of three -> 2/3; mean 5/6.
    assert summary.j.recall == pytest.approx(5 / 6)
    # Decay over 3 frames: edges round(1, 1.5, 2, 2.5, 3) - 1 = 0, 1, 1, 2, 2 -> first bin
    # frames 0..1, last bin frames 2..2. Object 1: (1 + 1)/2 - 9/11; object 2: 1/2 - 1.
    d1, d2 = 1 - 9 / 11, 0.5 - 1
    assert summary.j.decay == pytest.approx((d1 + d2) / 2)
    with pytest.raises(KeyError):
        score_sequence("seq", truth, {k: v for k, v in pred.items() if k != 3})


def test_object_absent_in_truth_and_prediction_scores_one() -> None:
    empty = np.zeros((30, 40), dtype=np.uint8)
    late = empty.copy()
    late[5:9, 5:9] = 3  # object 3 appears on frame 3 only
    truth = {0: empty, 1: empty, 2: empty, 3: late, 4: late}
    scores = score_sequence("s", truth, dict.fromkeys(truth, empty))
    o = scores.objects[3]
    assert o.j == [1.0, 1.0, 0.0] and o.f == [1.0, 1.0, 0.0]  # frames 1, 2, 3


def test_g_score() -> None:
    h, w = 30, 40
    a = square(h, w, (10, 19), (10, 19))
    lab = np.zeros((h, w), dtype=np.uint8)
    lab[a] = 1
    truth = dict.fromkeys(range(3), lab)
    perfect = score_sequence("seen_seq", truth, truth)
    empty = np.zeros_like(lab)
    missed = score_sequence("unseen_seq", truth, dict.fromkeys(range(3), empty))
    g = g_score([perfect, missed], {("unseen_seq", 1)})
    assert (g.j_seen, g.f_seen, g.j_unseen, g.f_unseen) == (1.0, 1.0, 0.0, 0.0)
    assert g.g == 0.5
    assert math.isnan(g_score([perfect], set()).g)  # no unseen object: no G
