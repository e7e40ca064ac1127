"""``edgetam-demo`` (what ``make demo`` runs): the whole pipeline on a generated clip, offline.

1. Generates the synthetic sample clip (two moving textured objects) into ``OUT/frames``.
2. Builds the model: ``--checkpoint`` if given, else the bundled demo model (trained on the
   synthetic world, ``edgetam_core/assets``; see docs/training.md).
3. Clicks the centre of object 1 on frame 0 and tracks it through the clip.
4. Writes DAVIS-style label PNGs to ``OUT/masks`` and an overlay strip ``OUT/overlay.png``
   (top row: frames with the tracked mask; bottom row: ground truth), then prints one line
   saying where, with the mean IoU against the ground truth.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgetam_core.errors import EdgeTAMError, InputError
from edgetam_core.io import overlay_labels, read_frames
from edgetam_core.synthetic import make_sample_clip, write_frames, write_labels

PROG = "edgetam-demo"


def mask_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Jaccard index of two bool masks (1.0 when both are empty)."""
    union = np.logical_or(pred, truth).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, truth).sum() / union)


def overlay_strip(
    frames: Sequence[np.ndarray],
    predicted: Sequence[np.ndarray],
    truth: Sequence[np.ndarray] | None = None,
    tiles: int = 6,
    tile_width: int = 320,
) -> np.ndarray:
    """Side-by-side tiles of up to ``tiles`` evenly spaced frames with their label overlays.

    Top row: predicted labels; bottom row (when ``truth`` is given): ground truth.
    """
    n = len(frames)
    k = min(tiles, n)
    picks = sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)})
    rows = [predicted] if truth is None else [predicted, truth]
    height, width = frames[0].shape[:2]
    tile_height = max(1, round(height * tile_width / width))
    grid = []
    for labels in rows:
        row = []
        for i in picks:
            img = Image.fromarray(overlay_labels(frames[i], labels[i]))
            tile = np.asarray(img.resize((tile_width, tile_height), Image.Resampling.BILINEAR))
            row.append(np.pad(tile, ((2, 2), (2, 2), (0, 0)), constant_values=255))
        grid.append(np.concatenate(row, axis=1))
    return np.concatenate(grid, axis=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Track a clicked object through a generated sample clip and write masks "
        "plus an overlay strip. Runs offline; without --checkpoint it uses the bundled demo "
        "model (a small EdgeTAM trained on the synthetic world only: it tracks these clips' "
        "shapes, not real scenes; docs/training.md).",
    )
    parser.add_argument("--frames", type=int, default=12, help="clip length (default 12)")
    parser.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="model checkpoint (.pt), 'demo' (the default: the bundled demo model) or 'random'",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"))
    parser.add_argument("--seed", type=int, default=0, help="sample clip seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _load_model(checkpoint: str | None, device: str) -> tuple[Any, str]:
    from edgetam_core.checkpoint import MODEL_NAMES
    from edgetam_core.cli.track import resolve_model

    name = checkpoint or "demo"
    model, desc = resolve_model(name, device)
    return model, desc if name in MODEL_NAMES else f"checkpoint {desc}"


def run(args: argparse.Namespace) -> str:
    from edgetam_core.cli.track import track_video
    from edgetam_core.tracker import Tracker

    if args.frames < 1:
        raise InputError(f"--frames must be >= 1, got {args.frames}")
    out = Path(args.out)
    clip = make_sample_clip(num_frames=args.frames, seed=args.seed)
    frames_dir, masks_dir = out / "frames", out / "masks"
    for old in (*frames_dir.glob("*.jpg"), *masks_dir.glob("*.png")):
        old.unlink()  # a previous, longer run must not leave stale frames behind
    write_frames(frames_dir, clip.frames, ext="jpg")
    write_labels(out / "ground_truth", clip.labels)

    model, model_desc = _load_model(args.checkpoint, args.device)
    tracker = Tracker(model, max_objects=4)
    object_id = clip.object_ids[0]
    prompt = clip.click_prompt(object_id)
    x, y = clip.clicks[object_id]

    frames: list[np.ndarray] = []
    predicted: list[np.ndarray] = []

    def keep(index: int, frame: np.ndarray, result: Any) -> None:
        frames.append(frame)
        predicted.append(result.label_image())

    summary = track_video(
        tracker,
        read_frames(frames_dir),
        {0: [prompt]},
        masks_dir,
        total=len(clip.frames),
        progress=False if args.quiet else None,
        on_result=keep,
    )
    truth = [(lab == object_id).astype(np.uint8) * object_id for lab in clip.labels]
    ious = [mask_iou(p == object_id, t == object_id) for p, t in zip(predicted, truth, strict=True)]
    strip_path = out / "overlay.png"
    Image.fromarray(overlay_strip(frames, predicted, truth)).save(strip_path)
    return (
        f"{PROG}: tracked object {object_id} (clicked at {x:.0f}, {y:.0f} on frame 0) through "
        f"{summary.frames} frames at {summary.ms_per_frame:.0f} ms/frame with the {model_desc}; "
        f"mean IoU vs ground truth {np.mean(ious):.2f}; frames in {frames_dir}, masks in "
        f"{masks_dir}, overlay in {strip_path}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        line = run(args)
    except EdgeTAMError as exc:
        text = str(exc).strip().splitlines()
        print(f"{PROG}: error: {text[0] if text else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("EDGETAM_DEBUG"):
            raise
        text = str(exc).strip().splitlines()
        first = text[0] if text else ""
        print(f"{PROG}: unexpected error: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
