"""Evaluation protocols: how a tracker is prompted on a sequence, and the run itself.

- ``semi`` (semi-supervised VOS): each object's ground-truth mask on the first frame where it
  is annotated as visible is its prompt (a mask prompt), given on that frame; objects that
  appear later are added on their first frame.
- ``clicks1`` / ``clicks3`` / ``clicks5``: clicks simulated from the ground truth on the same
  frame (interactive protocol of the SAM 2 / EdgeTAM papers). The first click is the point
  of the object farthest from its boundary; each further click goes into the largest error
  region of the tracker's own prediction with the clicks so far (positive in a missed region,
  negative in a false one), at that region's point farthest from its boundary. The tracker
  predicts each round afresh on that frame, so the clicks are those the tracker would get.
- ``box``: the tight box of the object's ground truth on that frame.
- ``corrections`` (any protocol): after a full pass, the scored frame and object with the
  lowest J gets a correction click in its largest error region, and the sequence is tracked
  again with it; repeated ``corrections`` times (offline correction, as SAM 2's evaluation of
  interactive video segmentation picks the frame of largest error).

"Farthest from the boundary" uses the exact Euclidean distance transform with everything
outside the image counted as boundary; among equally far pixels the one nearest to their mean
position wins (then the first in raster order). Clicks are pixel centres ``(col + 0.5,
row + 0.5)``. Everything here is deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgetam_core.errors import InputError
from edgetam_core.eval.datasets import VOSSequence
from edgetam_core.eval.metrics import frames_to_score, jaccard
from edgetam_core.types import Prompt

if TYPE_CHECKING:
    from edgetam_core.tracker import Tracker

PROTOCOLS = ("semi", "clicks1", "clicks3", "clicks5", "box")
CLICK_COUNTS = {"clicks1": 1, "clicks3": 3, "clicks5": 5}

PromptsByFrame = dict[int, list[Prompt]]


# Click geometry -----------------------------------------------------------------------------
def distance_to_boundary(mask: np.ndarray) -> np.ndarray:
    """(H, W) float32: each mask pixel's Euclidean distance to the nearest non-mask pixel,
    the outside of the image counting as non-mask (0 outside the mask)."""
    padded = np.pad(np.asarray(mask, dtype=np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.asarray(dist[1:-1, 1:-1], dtype=np.float32)


def farthest_from_boundary(mask: np.ndarray) -> tuple[float, float]:
    """The click ``(x, y)`` (pixel centre) of the point of ``mask`` farthest from its
    boundary; ValueError for an empty mask."""
    dist = distance_to_boundary(mask)
    top = float(dist.max())
    if top <= 0:
        raise ValueError("empty mask: no point to click")
    ys, xs = np.nonzero(dist >= top - 1e-4)
    cy, cx = ys.mean(), xs.mean()
    k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return float(xs[k]) + 0.5, float(ys[k]) + 0.5


@dataclass(frozen=True)
class Click:
    x: float
    y: float
    positive: bool


def correction_click(pred: np.ndarray, truth: np.ndarray) -> Click | None:
    """A click in the largest (by area) connected error region of ``pred`` vs ``truth``:
    positive in a missed region, negative in a false one; None when there is no error.

    Ties in area go to the missed region, then to the region found first (raster order).
    """
    p, t = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    best: tuple[int, np.ndarray, bool] | None = None
    for error, positive in ((t & ~p, True), (p & ~t, False)):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            error.astype(np.uint8), connectivity=8
        )
        for comp in range(1, count):
            area = int(stats[comp, cv2.CC_STAT_AREA])
            if best is None or area > best[0]:
                best = (area, labels == comp, positive)
    if best is None:
        return None
    x, y = farthest_from_boundary(best[1])
    return Click(x, y, best[2])


def tight_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of a non-empty mask: pixel edges, x1/y1 one past the last pixel."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise ValueError("empty mask: no box")
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


# Prompts ------------------------------------------------------------------------------------
def mask_prompts(sequence: VOSSequence) -> PromptsByFrame:
    """Semi-supervised: each object's ground-truth mask on its first annotated frame."""
    out: PromptsByFrame = {}
    for oid, k in sequence.first_appearances().items():
        out.setdefault(k, []).append(Prompt(oid, mask=sequence.labels(k) == oid))
    return out


def box_prompts(sequence: VOSSequence) -> PromptsByFrame:
    out: PromptsByFrame = {}
    for oid, k in sequence.first_appearances().items():
        box = tight_box(sequence.labels(k) == oid)
        out.setdefault(k, []).append(Prompt.from_clicks(oid, None, box=box))
    return out


def _click_prompt(oid: int, clicks: Sequence[Click]) -> Prompt:
    return Prompt.from_clicks(
        oid, [[c.x, c.y] for c in clicks], [1 if c.positive else 0 for c in clicks]
    )


def simulate_clicks(
    tracker: Tracker, frame: np.ndarray, truth: Mapping[int, np.ndarray], n_clicks: int
) -> dict[int, list[Click]]:
    """``n_clicks`` clicks per object on ``frame`` (module docstring); resets ``tracker``.

    Objects newly prompted on a frame are decoded without memory, so a fresh tracker given
    only this frame predicts exactly what the tracker will on the real run.
    """
    clicks = {oid: [Click(*farthest_from_boundary(m), True)] for oid, m in truth.items()}
    for _ in range(n_clicks - 1):
        tracker.reset()
        result = tracker.step(frame, prompts=[_click_prompt(o, c) for o, c in clicks.items()])
        for oid, obj_clicks in clicks.items():
            nxt = correction_click(result.objects[oid].mask, truth[oid])
            if nxt is not None:
                obj_clicks.append(nxt)
    tracker.reset()
    return clicks


def protocol_prompts(tracker: Tracker, sequence: VOSSequence, protocol: str) -> PromptsByFrame:
    """The prompts of ``protocol`` for ``sequence`` (clicks are simulated with ``tracker``)."""
    if protocol == "semi":
        return mask_prompts(sequence)
    if protocol == "box":
        return box_prompts(sequence)
    if protocol not in CLICK_COUNTS:
        raise InputError(f"unknown protocol {protocol!r} (one of {', '.join(PROTOCOLS)})")
    by_frame: dict[int, dict[int, np.ndarray]] = {}
    for oid, k in sequence.first_appearances().items():
        by_frame.setdefault(k, {})[oid] = sequence.labels(k) == oid
    out: PromptsByFrame = {}
    for k, truth in sorted(by_frame.items()):
        clicks = simulate_clicks(tracker, sequence.frame(k), truth, CLICK_COUNTS[protocol])
        out[k] = [_click_prompt(oid, c) for oid, c in sorted(clicks.items())]
    return out


# Running ------------------------------------------------------------------------------------
@dataclass
class SequenceRun:
    """A tracker's predictions on one sequence."""

    name: str
    predictions: dict[int, np.ndarray]  # frame index -> (H, W) uint8 label image
    prompts: PromptsByFrame
    seconds: float = 0.0  # time in tracker.step over the final pass
    frames: int = 0
    corrections: list[tuple[int, int, Click]] = field(default_factory=list)  # frame, object

    @property
    def ms_per_frame(self) -> float:
        return 1000.0 * self.seconds / max(1, self.frames)


def track_sequence(
    tracker: Tracker,
    sequence: VOSSequence,
    prompts: PromptsByFrame,
    on_frame: Callable[[int], None] | None = None,
) -> tuple[dict[int, np.ndarray], float]:
    """One pass from a reset tracker: label image per frame, seconds spent in ``step``."""
    tracker.reset()
    out: dict[int, np.ndarray] = {}
    seconds = 0.0
    for k, frame in enumerate(sequence.frames()):
        given = prompts.get(k, [])
        t0 = time.perf_counter()
        result = tracker.step(frame, prompts=given)
        seconds += time.perf_counter() - t0
        out[k] = result.label_image()
        if on_frame is not None:
            on_frame(k)
    return out, seconds


def worst_frame(
    sequence: VOSSequence,
    predictions: Mapping[int, np.ndarray],
    exclude: set[tuple[int, int]],
    skip_first_last: bool = True,
) -> tuple[int, int, Click] | None:
    """(frame, object, click) of the scored frame and object with the lowest J that has an
    error to correct, skipping ``exclude``d (frame, object) pairs; None when nothing is wrong.
    Ties: the earlier frame, then the smaller id."""
    ids = sequence.object_ids()
    candidates = []
    for k in frames_to_score(sequence.annotated_frames, skip_first_last):
        truth, pred = sequence.labels(k), predictions[k]
        for oid in ids:
            if (k, oid) in exclude:
                continue
            j = jaccard(pred == oid, truth == oid)
            if j < 1.0:
                candidates.append((j, k, oid))
    for _, k, oid in sorted(candidates):
        click = correction_click(predictions[k] == oid, sequence.labels(k) == oid)
        if click is not None:
            return k, oid, click
    return None


def _add_correction(prompts: PromptsByFrame, k: int, oid: int, click: Click) -> PromptsByFrame:
    """``prompts`` plus a correction click; it joins a click prompt on the same frame."""
    out = {f: list(ps) for f, ps in prompts.items()}
    same = [p for p in out.get(k, []) if p.object_id == oid and p.mask is None]
    if same:
        old = same[0]
        pts = [] if old.points is None else [list(map(float, xy)) for xy in old.points]
        lbl = [] if old.labels is None else [int(v) for v in old.labels]
        out[k].remove(old)
        out[k].append(
            Prompt.from_clicks(
                oid, [*pts, [click.x, click.y]], [*lbl, int(click.positive)], box=old.box
            )
        )
    else:
        out.setdefault(k, []).append(_click_prompt(oid, [click]))
    return out


def run_sequence(
    tracker: Tracker,
    sequence: VOSSequence,
    protocol: str,
    corrections: int = 0,
    skip_first_last: bool = True,
    on_frame: Callable[[int], None] | None = None,
) -> SequenceRun:
    """Prompt and track ``sequence`` by ``protocol``, with ``corrections`` correction rounds."""
    if corrections < 0:
        raise InputError(f"corrections must be >= 0, got {corrections}")
    prompts = protocol_prompts(tracker, sequence, protocol)
    predictions, seconds = track_sequence(tracker, sequence, prompts, on_frame)
    done: list[tuple[int, int, Click]] = []
    first = sequence.first_appearances()
    for _ in range(corrections):
        exclude = {(k, o) for k, o, _ in done} | {(k, o) for o, k in first.items()}
        pick = worst_frame(sequence, predictions, exclude, skip_first_last)
        if pick is None:
            break
        done.append(pick)
        prompts = _add_correction(prompts, *pick)
        predictions, seconds = track_sequence(tracker, sequence, prompts, on_frame)
    return SequenceRun(
        sequence.name, predictions, prompts, seconds, sequence.num_frames, corrections=done
    )
