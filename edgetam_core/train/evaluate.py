"""Held-out synthetic evaluation with the real ``Tracker``: one click per object on frame 0.

Clips come from ``make_world_clip`` with seeds at or above ``HELD_OUT_SEED_BASE`` (training
draws its seeds below ``data.TRAIN_SEED_LIMIT``, so they never overlap; the trainer's
periodic evaluation uses the validation seeds in between). Every object visible
on frame 0 gets one positive click at its innermost pixel (``interior_point``) and is tracked
to the end. J and F are the DAVIS measures of ``edgetam_core.eval.metrics``, per object and
frame, over every frame but the prompted first one. Besides the overall J&F, frames are
grouped by what happened to the object before them (``ObjectTimeline``):

- ``after_occlusion``: frames from the end of the object's first occlusion (>= 50% of it
  hidden by another object) on;
- ``after_reentry``: frames from its first return into the frame (>= 50% inside after having
  been < 2% inside) on;
- ``absent``: frames where it is entirely hidden or outside (the right answer is no mask).

Each group's J&F is the mean over its (object, frame) pairs. ``wrong_object`` says why a
model loses: the fraction of pairs with a non-empty mask whose largest share of pixels lies
on another object (another tracked one or a distractor), i.e. identity swaps and masks kept
on something else while the object is gone.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from edgetam_core.eval.metrics import f_measure, jaccard
from edgetam_core.model.edgetam import EdgeTAM
from edgetam_core.synthetic import SampleClip, WorldSpec, make_world_clip, object_timeline
from edgetam_core.tracker import Tracker
from edgetam_core.types import Prompt

HELD_OUT_SEED_BASE = 1 << 31
# Validation clips (scored during training, used to choose checkpoints and calibrations) sit
# between the training seeds (< 2**30) and the held-out ones, so choosing on them never looks
# at the held-out clips that the reported scores come from.
VALIDATION_SEED_BASE = 3 << 29
GROUPS = ("overall", "after_occlusion", "after_reentry", "absent")


@dataclass
class SyntheticScores:
    """J, F and J&F means per group, with the number of (object, frame) pairs in each."""

    j: dict[str, float]
    f: dict[str, float]
    counts: dict[str, int]
    clips: int
    objects: int
    wrong_object: float = float("nan")

    @property
    def jf(self) -> dict[str, float]:
        return {g: (self.j[g] + self.f[g]) / 2 for g in GROUPS}

    def as_dict(self) -> dict[str, object]:
        def clean(d: dict[str, float]) -> dict[str, float | None]:
            return {k: (None if math.isnan(v) else round(v, 4)) for k, v in d.items()}

        return {
            "jf": clean(self.jf),
            "j": clean(self.j),
            "f": clean(self.f),
            "pairs": self.counts,
            "clips": self.clips,
            "objects": self.objects,
            "wrong_object": None if math.isnan(self.wrong_object) else round(self.wrong_object, 4),
        }

    def line(self) -> str:
        jf = self.jf

        def fmt(g: str) -> str:
            return "n/a" if math.isnan(jf[g]) else f"{jf[g]:.3f}"

        return (
            f"J&F {fmt('overall')} (J {self.j['overall']:.3f}, F {self.f['overall']:.3f}); "
            f"after occlusion {fmt('after_occlusion')} [{self.counts['after_occlusion']}], "
            f"after re-entry {fmt('after_reentry')} [{self.counts['after_reentry']}], "
            f"absent {fmt('absent')} [{self.counts['absent']}]; "
            f"on another object {self.wrong_object:.1%} of masks; "
            f"{self.clips} clips, {self.objects} objects"
        )


def held_out_clips(
    num_clips: int,
    num_frames: int = 24,
    height: int = 120,
    width: int = 160,
    spec: WorldSpec | None = None,
    seed_base: int = HELD_OUT_SEED_BASE,
) -> list[SampleClip]:
    return [
        make_world_clip(num_frames, height, width, seed=seed_base + i, spec=spec)
        for i in range(num_clips)
    ]


def track_clip(model: EdgeTAM, clip: SampleClip) -> dict[int, list[np.ndarray]]:
    """Masks per object and frame from one click per object on frame 0."""
    tracker = Tracker(model, max_objects=max(1, len(clip.object_ids)))
    prompts = [Prompt.from_clicks(oid, [list(clip.clicks[oid])], [1]) for oid in clip.object_ids]
    masks: dict[int, list[np.ndarray]] = {oid: [] for oid in clip.object_ids}
    for k, frame in enumerate(clip.frames):
        result = tracker.step(frame, prompts=prompts if k == 0 else ())
        for oid in clip.object_ids:
            obj = result.objects.get(oid)
            masks[oid].append(obj.mask if obj is not None else np.zeros(clip.size, dtype=bool))
    return masks


def score_clips(model: EdgeTAM, clips: Sequence[SampleClip]) -> SyntheticScores:
    """Track every clip and pool per-frame J and F into the groups of the module docstring."""
    j: dict[str, list[float]] = {g: [] for g in GROUPS}
    f: dict[str, list[float]] = {g: [] for g in GROUPS}
    objects = 0
    masks_shown = masks_elsewhere = 0
    was_training = model.training
    model.eval()
    try:
        for clip in clips:
            masks = track_clip(model, clip)
            for oid in clip.object_ids:
                objects += 1
                timeline = object_timeline(clip, oid)
                occ = timeline.occlusion_ends()
                back = timeline.reentries()
                for k in range(1, len(clip.frames)):
                    truth = clip.labels[k] == oid
                    pred = masks[oid][k]
                    jv = jaccard(pred, truth)
                    fv = f_measure(pred, truth)
                    if pred.any():
                        masks_shown += 1
                        masks_elsewhere += int(_mostly_on_another_object(pred, clip.labels[k], oid))
                    groups = ["overall"]
                    if occ and k >= occ[0]:
                        groups.append("after_occlusion")
                    if back and k >= back[0]:
                        groups.append("after_reentry")
                    if not truth.any():
                        groups.append("absent")
                    for g in groups:
                        j[g].append(jv)
                        f[g].append(fv)
    finally:
        model.train(was_training)
        release_inference_tensors(model)

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return SyntheticScores(
        {g: mean(v) for g, v in j.items()},
        {g: mean(v) for g, v in f.items()},
        {g: len(v) for g, v in j.items()},
        len(clips),
        objects,
        masks_elsewhere / masks_shown if masks_shown else float("nan"),
    )


def _mostly_on_another_object(pred: np.ndarray, labels: np.ndarray, oid: int) -> bool:
    """Whether the label covering the largest share of ``pred`` is another object's (neither
    ``oid`` nor background)."""
    counts = np.bincount(labels[pred].ravel().astype(np.int64))
    top = int(counts.argmax())
    return top not in (0, oid)


def release_inference_tensors(model: torch.nn.Module) -> None:
    """Drop cached constant tables that were built under ``torch.inference_mode``.

    The tracker runs in inference mode; tables it caches (sine/Fourier position encodings,
    RoPE) are inference tensors, which autograd refuses to save. Training after tracking in
    the same process needs them rebuilt, so this clears every such cache (they are rebuilt on
    demand, identical).
    """
    from edgetam_core.model import rope

    for module in model.modules():
        for name in ("_tables", "_grids", "_key_rope_cache"):
            cache = getattr(module, name, None)
            if isinstance(cache, dict):
                cache.clear()
    rope._TABLE_CACHE.clear()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgetam_core.train.evaluate CKPT``: held-out synthetic J&F of a checkpoint."""
    from edgetam_core.checkpoint import load_checkpoint

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--json", help="also write the scores to this file")
    parser.add_argument(
        "--validation",
        action="store_true",
        help="score the validation clips (for choosing checkpoints) instead of the held-out ones",
    )
    args = parser.parse_args(argv)
    model = load_checkpoint(args.checkpoint)
    base = VALIDATION_SEED_BASE if args.validation else HELD_OUT_SEED_BASE
    clips = held_out_clips(args.clips, args.frames, args.height, args.width, seed_base=base)
    scores = score_clips(model, clips)
    print(scores.line())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(scores.as_dict(), fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
