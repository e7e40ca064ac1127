"""Tiny video object segmentation data sets on disk, in the layouts edgetam_core.eval reads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgetam_core.io import write_label_png
from edgetam_core.synthetic import make_sample_clip, write_frames


def clip_arrays(
    frames: int = 4, height: int = 48, width: int = 64, seed: int = 0, late: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames and label images of the synthetic clip; object 2 is removed from the first
    ``late`` frames' ground truth (an object that appears later)."""
    clip = make_sample_clip(num_frames=frames, height=height, width=width, seed=seed)
    labels = [lab.copy() for lab in clip.labels]
    for lab in labels[:late]:
        lab[lab == 2] = 0
    return clip.frames, labels


def write_davis(
    root: Path,
    sequences: dict[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
    split: Sequence[str] | None = None,
    annotated: Sequence[int] | None = None,
) -> Path:
    """``root/JPEGImages/480p/<seq>``, ``root/Annotations/480p/<seq>`` and
    ``root/ImageSets/2017/val.txt`` (``split``, default all). ``annotated``: only these frames
    get a PNG."""
    for name, (frames, labels) in sequences.items():
        write_frames(root / "JPEGImages" / "480p" / name, frames, ext="jpg")
        for k, lab in enumerate(labels):
            if annotated is None or k in annotated:
                write_label_png(root / "Annotations" / "480p" / name / f"{k:05d}.png", lab)
    sets = root / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "val.txt").write_text("".join(f"{n}\n" for n in (split or list(sequences))))
    return root


def write_sav(
    root: Path, name: str, frames: Sequence[np.ndarray], labels: Sequence[np.ndarray],
    every: int = 2,
) -> Path:
    """SA-V layout: all frames in ``JPEGImages_24fps``; every ``every``-th frame annotated in
    ``Annotations_6fps/<seq>/<obj:03d>/`` as binary PNGs (object id = folder number + 1)."""
    write_frames(root / "JPEGImages_24fps" / name, frames, ext="jpg")
    ids = sorted({int(v) for lab in labels for v in np.unique(lab)} - {0})
    for k in range(0, len(labels), every):
        for oid in ids:
            mask = (labels[k] == oid).astype(np.uint8)
            write_label_png(root / "Annotations_6fps" / name / f"{oid - 1:03d}" / f"{k:05d}.png",
                            mask)
    return root


def micro_checkpoint(path: Path) -> Path:
    """A random-weight checkpoint of tiny_config() at 128 px input: the cheapest model that
    runs the whole pipeline (tests of plumbing only)."""
    from edgetam_core.checkpoint import build_default_model, save_checkpoint
    from edgetam_core.config import tiny_config

    return save_checkpoint(build_default_model(config=tiny_config().replace(image_size=128)),
                           path)
