"""Video object segmentation metrics as the DAVIS benchmark defines them: J, F, J&F, G.

Per object and frame:

- **J** (region similarity): intersection over union of the predicted and the ground-truth
  mask. Both empty -> 1 (nothing to find, nothing found).
- **F** (boundary F-measure): each mask's boundary is the set of pixels whose value differs
  from the right, lower or lower-right neighbour (one pixel per transition: "width 1"; in the
  last row only the right neighbour counts, in the last column only the lower one, and the
  bottom-right pixel is never a boundary pixel). A predicted boundary pixel is matched when a
  ground-truth boundary pixel lies within ``ceil(0.008 * image diagonal)`` pixels (a disk of
  that radius: ``dx^2 + dy^2 <= r^2``), and the other way round. Precision = matched predicted
  / predicted boundary pixels, recall = matched ground truth / ground-truth boundary pixels,
  F = 2PR / (P + R) (0 when P + R = 0). Empty boundaries: none predicted and none true ->
  P = R = 1 (F = 1); none predicted but some true -> P = 1, R = 0 (F = 0); some predicted but
  none true -> P = 0, R = 1 (F = 0).
- Optional void pixels are left out of both (set to background before anything is computed).

Per object over the scored frames (``statistics``), as the DAVIS toolkit reports them:

- **Mean**: the mean value.
- **Recall**: the fraction of frames whose value is above 0.5.
- **Decay**: the frames are cut into 4 bins at the indices ``round(linspace(1, n, 5)) - 1``
  (halves rounded up); bin ``i`` runs from edge ``i`` to edge ``i + 1`` inclusive (neighbouring
  bins share their edge frame). Decay = mean of the first bin - mean of the last bin.

Which frames are scored is the caller's choice (``frames_to_score``): the DAVIS toolkit (and
the MOSE and SA-V evaluators built on it) scores every annotated frame except the first and the
last. Over a data set: J-Mean/Recall/Decay (and F's) are means over all objects of all
sequences; J&F-Mean = (J-Mean + F-Mean) / 2. YouTube-VOS' **G** is the mean of J and F over
seen and unseen objects: (J_seen + F_seen + J_unseen + F_unseen) / 4.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

#: Boundary matching tolerance as a fraction of the image diagonal (DAVIS).
BOUNDARY_TOLERANCE = 0.008
#: Score above which a frame counts for Recall.
RECALL_THRESHOLD = 0.5
#: Bins of the Decay statistic.
DECAY_BINS = 4


def _check_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred).astype(bool, copy=False)
    t = np.asarray(truth).astype(bool, copy=False)
    if p.ndim != 2 or p.shape != t.shape:
        raise ValueError(f"masks must be 2-D and of one size, got {p.shape} and {t.shape}")
    return p, t


def jaccard(pred: np.ndarray, truth: np.ndarray, void: np.ndarray | None = None) -> float:
    """J: intersection over union of two (H, W) masks; 1.0 when both are empty."""
    p, t = _check_pair(pred, truth)
    if void is not None:
        keep = ~np.asarray(void, dtype=bool)
        p, t = p & keep, t & keep
    union = int(np.count_nonzero(p | t))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(p & t)) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The width-1 boundary of an (H, W) mask (see the module docstring), as bool."""
    m = np.asarray(mask, dtype=bool)
    right = np.zeros_like(m)
    below = np.zeros_like(m)
    diag = np.zeros_like(m)
    right[:, :-1] = m[:, 1:]
    below[:-1, :] = m[1:, :]
    diag[:-1, :-1] = m[1:, 1:]
    edge = (m ^ right) | (m ^ below) | (m ^ diag)
    edge[-1, :] = m[-1, :] ^ right[-1, :]
    edge[:, -1] = m[:, -1] ^ below[:, -1]
    edge[-1, -1] = False
    return edge


def boundary_radius(height: int, width: int, tolerance: float = BOUNDARY_TOLERANCE) -> int:
    """Matching distance in pixels: ``ceil(tolerance * diagonal)``; a tolerance >= 1 is pixels."""
    if tolerance >= 1:
        return int(tolerance)
    return int(math.ceil(tolerance * math.hypot(height, width)))


@lru_cache(maxsize=32)
def disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) uint8 structuring element: 1 where ``dx^2 + dy^2 <= r^2``."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    out = ((xx * xx + yy * yy) <= radius * radius).astype(np.uint8)
    out.setflags(write=False)
    return out


def _dilate(edges: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return edges
    return cv2.dilate(edges.astype(np.uint8), disk(radius)).astype(bool)


@dataclass(frozen=True)
class BoundaryScore:
    precision: float
    recall: float

    @property
    def f(self) -> float:
        total = self.precision + self.recall
        return 0.0 if total == 0 else 2.0 * self.precision * self.recall / total


def boundary_score(
    pred: np.ndarray,
    truth: np.ndarray,
    void: np.ndarray | None = None,
    tolerance: float = BOUNDARY_TOLERANCE,
) -> BoundaryScore:
    """Boundary precision and recall of ``pred`` against ``truth`` (module docstring)."""
    p, t = _check_pair(pred, truth)
    if void is not None:
        keep = ~np.asarray(void, dtype=bool)
        p, t = p & keep, t & keep
    radius = boundary_radius(p.shape[0], p.shape[1], tolerance)
    pb, tb = boundary_map(p), boundary_map(t)
    n_pred, n_true = int(np.count_nonzero(pb)), int(np.count_nonzero(tb))
    if n_pred == 0 and n_true == 0:
        return BoundaryScore(1.0, 1.0)
    if n_pred == 0:
        return BoundaryScore(1.0, 0.0)
    if n_true == 0:
        return BoundaryScore(0.0, 1.0)
    matched_pred = int(np.count_nonzero(pb & _dilate(tb, radius)))
    matched_true = int(np.count_nonzero(tb & _dilate(pb, radius)))
    return BoundaryScore(matched_pred / n_pred, matched_true / n_true)


def f_measure(
    pred: np.ndarray,
    truth: np.ndarray,
    void: np.ndarray | None = None,
    tolerance: float = BOUNDARY_TOLERANCE,
) -> float:
    """F: the boundary F-measure of two (H, W) masks (module docstring)."""
    return boundary_score(pred, truth, void, tolerance).f


# Statistics over frames ---------------------------------------------------------------------
@dataclass(frozen=True)
class Stats:
    """Mean, Recall and Decay of one measure over frames (NaN when no frame was scored)."""

    mean: float
    recall: float
    decay: float

    def as_dict(self) -> dict[str, float | None]:
        return {
            k: _none_if_nan(v)
            for k, v in (("mean", self.mean), ("recall", self.recall), ("decay", self.decay))
        }


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def decay_bins(n: int, bins: int = DECAY_BINS) -> list[tuple[int, int]]:
    """(start, stop) index ranges (stop exclusive) of the Decay bins of ``n`` frames."""
    if n <= 0:
        return []
    edges = [int(math.floor(v + 0.5)) - 1 for v in np.linspace(1, n, bins + 1)]
    return [(edges[i], edges[i + 1] + 1) for i in range(bins)]


def statistics(values: Sequence[float] | np.ndarray) -> Stats:
    """Mean, Recall (fraction > 0.5) and Decay (first bin - last bin) of per-frame values."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        nan = float("nan")
        return Stats(nan, nan, nan)
    ranges = decay_bins(x.size)
    first, last = ranges[0], ranges[-1]
    decay = float(x[first[0] : first[1]].mean() - x[last[0] : last[1]].mean())
    return Stats(float(x.mean()), float(np.mean(x > RECALL_THRESHOLD)), decay)


# Frames, objects, sequences -----------------------------------------------------------------
def frames_to_score(annotated: Iterable[int], skip_first_last: bool = True) -> list[int]:
    """The annotated frame indices that are scored: all but the first and the last (DAVIS)."""
    frames = sorted(set(annotated))
    if skip_first_last:
        return frames[1:-1]
    return frames


def object_ids_of(labels: Iterable[np.ndarray], void_label: int | None = None) -> list[int]:
    """Every object id (> 0, not ``void_label``) in any of the label images."""
    ids: set[int] = set()
    for lab in labels:
        ids.update(int(v) for v in np.unique(lab))
    ids.discard(0)
    if void_label is not None:
        ids.discard(void_label)
    return sorted(ids)


@dataclass
class ObjectScores:
    """J and F of one object on each scored frame."""

    object_id: int
    frames: list[int] = field(default_factory=list)
    j: list[float] = field(default_factory=list)
    f: list[float] = field(default_factory=list)

    @property
    def j_stats(self) -> Stats:
        return statistics(self.j)

    @property
    def f_stats(self) -> Stats:
        return statistics(self.f)

    @property
    def jf_mean(self) -> float:
        return (self.j_stats.mean + self.f_stats.mean) / 2.0


@dataclass
class SequenceScores:
    """Per-object scores of one sequence (``extra_ids``: predicted ids not in the truth)."""

    name: str
    objects: dict[int, ObjectScores] = field(default_factory=dict)
    extra_ids: list[int] = field(default_factory=list)

    @property
    def jf_mean(self) -> float:
        values = [o.jf_mean for o in self.objects.values() if not math.isnan(o.jf_mean)]
        return float(np.mean(values)) if values else float("nan")


def score_sequence(
    name: str,
    truth: Mapping[int, np.ndarray],
    predicted: Mapping[int, np.ndarray],
    object_ids: Sequence[int] | None = None,
    skip_first_last: bool = True,
    void_label: int | None = None,
    tolerance: float = BOUNDARY_TOLERANCE,
) -> SequenceScores:
    """J and F of every object on every scored frame of one sequence.

    ``truth`` and ``predicted`` map frame index -> (H, W) label image (pixel = object id).
    Scored frames: the annotated ones (keys of ``truth``), less the first and the last with
    ``skip_first_last``; each needs a prediction (KeyError names the missing frame). Objects:
    ``object_ids``, else every id in the truth. An object absent from a frame's truth and
    prediction scores J = F = 1 there, as in the DAVIS toolkit. Pixels equal to
    ``void_label`` in the truth are left out.
    """
    ids = list(object_ids) if object_ids is not None else object_ids_of(truth.values(), void_label)
    scores = SequenceScores(name, {oid: ObjectScores(oid) for oid in ids})
    extra: set[int] = set()
    for k in frames_to_score(truth, skip_first_last):
        if k not in predicted:
            raise KeyError(k)
        gt, pr = np.asarray(truth[k]), np.asarray(predicted[k])
        if gt.shape != pr.shape:
            raise ValueError(
                f"{name} frame {k}: prediction is {pr.shape[1]}x{pr.shape[0]}, "
                f"ground truth {gt.shape[1]}x{gt.shape[0]}"
            )
        void = (gt == void_label) if void_label is not None else None
        extra.update(int(v) for v in np.unique(pr) if v != 0 and int(v) not in scores.objects)
        for oid, obj in scores.objects.items():
            p, t = pr == oid, gt == oid
            obj.frames.append(int(k))
            obj.j.append(jaccard(p, t, void))
            obj.f.append(f_measure(p, t, void, tolerance))
    scores.extra_ids = sorted(extra)
    return scores


@dataclass(frozen=True)
class Summary:
    """Data-set level J and F statistics (means over all objects of all sequences)."""

    j: Stats
    f: Stats
    objects: int

    @property
    def jf_mean(self) -> float:
        return (self.j.mean + self.f.mean) / 2.0


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def summarize(sequences: Iterable[SequenceScores]) -> Summary:
    """Means over every object of ``sequences`` of its Mean, Recall and Decay, for J and F.

    Objects without scored frames (NaN statistics) are left out.
    """
    objs = [o for s in sequences for o in s.objects.values()]
    js, fs = [o.j_stats for o in objs], [o.f_stats for o in objs]

    def mean_of(stats: list[Stats], name: str) -> float:
        return _nanmean([getattr(s, name) for s in stats])

    j = Stats(mean_of(js, "mean"), mean_of(js, "recall"), mean_of(js, "decay"))
    f = Stats(mean_of(fs, "mean"), mean_of(fs, "recall"), mean_of(fs, "decay"))
    return Summary(j, f, sum(1 for o in objs if not math.isnan(o.j_stats.mean)))


@dataclass(frozen=True)
class GScore:
    """YouTube-VOS overall score: G = (J_seen + F_seen + J_unseen + F_unseen) / 4."""

    j_seen: float
    f_seen: float
    j_unseen: float
    f_unseen: float

    @property
    def g(self) -> float:
        return (self.j_seen + self.f_seen + self.j_unseen + self.f_unseen) / 4.0


def g_score(sequences: Iterable[SequenceScores], unseen: set[tuple[str, int]]) -> GScore:
    """G with the objects ``(sequence, object_id)`` in ``unseen`` as the unseen group.

    Each of the four terms is the mean over that group's objects of their mean J (or F); an
    empty group gives NaN (and so does G).
    """
    groups: dict[bool, list[ObjectScores]] = {False: [], True: []}
    for s in sequences:
        for oid, o in s.objects.items():
            groups[(s.name, oid) in unseen].append(o)

    def mean(objs: list[ObjectScores], j: bool) -> float:
        return _nanmean([(o.j_stats if j else o.f_stats).mean for o in objs])

    return GScore(
        mean(groups[False], True),
        mean(groups[False], False),
        mean(groups[True], True),
        mean(groups[True], False),
    )
