"""``edgetam-track``: track prompted objects through a video or a folder of frames.

    edgetam-track --checkpoint CKPT --input PATH --prompts PROMPTS.json --out DIR
                  [--save-logits] [--device cpu|cuda|mps] [--max-objects N]

PROMPTS.json (pixel coordinates of the input frames)::

    {"prompts": [
        {"frame": 0, "object_id": 1, "points": [[x, y], ...], "labels": [1, 0]},
        {"frame": 0, "object_id": 2, "box": [x0, y0, x1, y1]},
        {"frame": 5, "object_id": 1, "mask": "refine.png"}
    ]}

``frame`` defaults to 0, ``labels`` to all positive (1 = on the object, 0 = not on it). A mask
prompt names a PNG (relative to the prompts file) of the frame's size: its pixels equal to
``object_id`` form the mask, or all non-zero pixels when no pixel has that value. A prompt on
frame k is given to the tracker when frame k is processed; a prompt for a new id starts a new
object there, one for a known id refines it.

Output: ``DIR/00000.png``, ... one indexed PNG per frame (pixel = object id, DAVIS palette) and,
with ``--save-logits``, ``DIR/logits.npz`` holding one float32 (H, W) array per frame and object,
named ``f{frame:05d}_o{object_id}``. Exit status: 0 success, 2 unusable input (one line on
stderr says why), 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetam_core.cli.common import run_cli
from edgetam_core.errors import CheckpointError, EdgeTAMError, InputError, PromptError
from edgetam_core.io import (
    count_frames,
    first_frame_size,
    read_frames,
    read_label_png,
    write_label_png,
)
from edgetam_core.types import FrameResult, Prompt

if TYPE_CHECKING:
    from edgetam_core.tracker import Tracker

PROG = "edgetam-track"
MAX_LABEL_ID = 255  # label PNGs are 8-bit
_PROMPT_KEYS = {"frame", "object_id", "points", "labels", "box", "mask"}


# Prompts file -------------------------------------------------------------------------------------
def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _is_int(value: object) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _parse_entry(index: int, entry: object, base_dir: Path) -> tuple[int, Prompt]:
    where = f"prompts[{index}]"
    if not isinstance(entry, dict):
        raise PromptError(f'{where}: expected an object like {{"object_id": 1, "points": ...}}')
    unknown = sorted(set(entry) - _PROMPT_KEYS)
    if unknown:
        raise PromptError(
            f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(_PROMPT_KEYS))})"
        )

    frame = entry.get("frame", 0)
    if not _is_int(frame) or int(frame) < 0:
        raise PromptError(f"{where}.frame: expected a frame index >= 0, got {frame!r}")
    if "object_id" not in entry:
        raise PromptError(f"{where}: missing field 'object_id'")
    oid = entry["object_id"]
    if not _is_int(oid) or not 1 <= int(oid) <= MAX_LABEL_ID:
        raise PromptError(f"{where}.object_id: expected an integer 1..{MAX_LABEL_ID}, got {oid!r}")
    oid = int(oid)

    points = labels = box = None
    if "points" in entry:
        points = entry["points"]
        if (
            not isinstance(points, list)
            or not points
            or not all(
                isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p)
                for p in points
            )
        ):
            raise PromptError(f"{where}.points: expected a non-empty list of [x, y] number pairs")
        labels = entry.get("labels")
        if labels is not None and (
            not isinstance(labels, list) or not all(_is_int(v) and v in (0, 1) for v in labels)
        ):
            raise PromptError(f"{where}.labels: expected a list of 1 (positive) or 0 (negative)")
        if labels is not None and len(labels) != len(points):
            raise PromptError(
                f"{where}.labels: {len(labels)} labels for {len(points)} points; give one each"
            )
    elif "labels" in entry:
        raise PromptError(f"{where}.labels: labels given without points")
    if "box" in entry:
        box = entry["box"]
        if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
            raise PromptError(f"{where}.box: expected four numbers [x0, y0, x1, y1]")
        if not (box[2] > box[0] and box[3] > box[1]):
            raise PromptError(f"{where}.box: expected x1 > x0 and y1 > y0, got {box}")

    if "mask" in entry:
        if points is not None or box is not None:
            raise PromptError(f"{where}: a mask prompt cannot be combined with points or a box")
        mask_ref = entry["mask"]
        if not isinstance(mask_ref, str) or not mask_ref:
            raise PromptError(f"{where}.mask: expected the path of a PNG file")
        mask_path = Path(mask_ref)
        if not mask_path.is_absolute():
            mask_path = base_dir / mask_path
        if not mask_path.is_file():
            raise PromptError(f"{where}.mask: file not found: {mask_path}")
        label_img = read_label_png(mask_path)
        mask = label_img == oid if np.any(label_img == oid) else label_img > 0
        if not mask.any():
            raise PromptError(f"{where}.mask: {mask_path} is empty (no non-zero pixel)")
        return int(frame), Prompt(object_id=oid, mask=mask)

    if points is None and box is None:
        raise PromptError(f"{where}: needs 'points', 'box' or 'mask'")
    return int(frame), Prompt.from_clicks(oid, points, labels, box=box)


def parse_prompts(data: object, base_dir: str | Path = ".") -> dict[int, list[Prompt]]:
    """Validate parsed prompts-file JSON and group its prompts by frame index.

    Raises PromptError naming the offending entry and field. Two prompts for the same object on
    the same frame are refused (put the points and the box in one prompt).
    """
    if isinstance(data, dict):
        if set(data) - {"prompts"}:
            extra = sorted(set(data) - {"prompts"})[0]
            raise PromptError(f"prompts file: unknown top-level field {extra!r}")
        if "prompts" not in data:
            raise PromptError("prompts file: missing top-level field 'prompts'")
        entries = data["prompts"]
    else:
        entries = data
    if not isinstance(entries, list):
        raise PromptError("prompts file: 'prompts' must be a list of prompt objects")
    if not entries:
        raise PromptError("prompts file: 'prompts' is empty; give at least one prompt")
    by_frame: dict[int, list[Prompt]] = {}
    seen: dict[tuple[int, int], int] = {}
    for index, entry in enumerate(entries):
        frame, prompt = _parse_entry(index, entry, Path(base_dir))
        key = (frame, prompt.object_id)
        if key in seen:
            raise PromptError(
                f"prompts[{index}]: a second prompt for object {prompt.object_id} on frame "
                f"{frame} (see prompts[{seen[key]}]); combine them into one prompt"
            )
        seen[key] = index
        by_frame.setdefault(frame, []).append(prompt)
    return dict(sorted(by_frame.items()))


def parse_prompts_file(path: str | Path) -> dict[int, list[Prompt]]:
    """Read and validate a prompts JSON file; returns ``{frame_index: [Prompt, ...]}``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prompts file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read prompts file {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"prompts file {path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}"
        ) from None
    return parse_prompts(data, base_dir=path.parent)


def check_prompts(
    prompts_by_frame: Mapping[int, Sequence[Prompt]],
    num_frames: int,
    frame_size: tuple[int, int],
    max_objects: int | None = None,
) -> None:
    """Check prompts against the input before any tracking: frame indices, image bounds, count.

    ``frame_size`` is ``(H, W)`` of the input's frames.
    """
    height, width = frame_size
    for frame, prompts in sorted(prompts_by_frame.items()):
        if frame >= num_frames:
            raise PromptError(
                f"prompt for object {prompts[0].object_id} is on frame {frame}, but the input "
                f"has {num_frames} frame{'s' if num_frames != 1 else ''} (0..{num_frames - 1})"
            )
        for prompt in prompts:
            try:
                prompt.validate(height, width)
            except PromptError as exc:
                raise PromptError(
                    f"prompt for object {prompt.object_id} on frame {frame}: {exc}"
                ) from None
    if max_objects is not None:
        ids = {p.object_id for ps in prompts_by_frame.values() for p in ps}
        if len(ids) > max_objects:
            raise PromptError(
                f"the prompts name {len(ids)} objects but --max-objects is {max_objects}"
            )


# Tracking ----------------------------------------------------------------------------------------
class NpzWriter:
    """Writes arrays one at a time into an ``.npz`` (what ``np.savez`` writes, without holding
    every array in memory)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._zip = zipfile.ZipFile(self.path, mode="w", compression=zipfile.ZIP_STORED)
        self.names: list[str] = []

    def add(self, name: str, array: np.ndarray) -> None:
        with self._zip.open(f"{name}.npy", mode="w", force_zip64=True) as fh:
            np.lib.format.write_array(fh, np.ascontiguousarray(array), allow_pickle=False)
        self.names.append(name)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> NpzWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class TrackSummary:
    frames: int
    object_ids: list[int]
    seconds: float  # time spent in tracker.step
    out_dir: Path
    logits_path: Path | None = None

    @property
    def ms_per_frame(self) -> float:
        return 1000.0 * self.seconds / max(1, self.frames)

    def line(self) -> str:
        ids = ", ".join(str(i) for i in self.object_ids) or "none"
        text = (
            f"tracked {self.frames} frames, {len(self.object_ids)} objects ({ids}), "
            f"{self.ms_per_frame:.0f} ms/frame; masks in {self.out_dir}"
        )
        if self.logits_path is not None:
            text += f", logits in {self.logits_path}"
        return text


def track_video(
    tracker: Tracker,
    frames: Iterable[np.ndarray],
    prompts_by_frame: Mapping[int, Sequence[Prompt]],
    out_dir: str | Path,
    save_logits: bool = False,
    total: int | None = None,
    progress: bool | None = False,
    on_result: Any = None,
) -> TrackSummary:
    """Run ``tracker`` over ``frames``, giving it each frame's prompts, and write the results.

    Writes ``out_dir/{index:05d}.png`` (label image, DAVIS palette) per frame and, with
    ``save_logits``, ``out_dir/logits.npz``. ``progress``: True shows a tqdm bar on stderr,
    None shows it only on a terminal. ``on_result(index, frame, result)`` is called per frame.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    logits_path = out / "logits.npz" if save_logits else None
    writer = NpzWriter(logits_path) if logits_path is not None else None
    seen_ids: set[int] = set()
    seconds = 0.0
    count = 0
    bar = tqdm(
        total=total,
        unit="frame",
        file=sys.stderr,
        disable=(not progress) if progress is not None else None,
        desc=PROG,
        leave=False,
    )
    try:
        for index, frame in enumerate(frames):
            prompts = list(prompts_by_frame.get(index, ()))
            for prompt in prompts:
                prompt.validate(frame.shape[0], frame.shape[1])
            start = time.perf_counter()
            result: FrameResult = (
                tracker.step(frame, prompts=prompts) if prompts else tracker.step(frame)
            )
            seconds += time.perf_counter() - start
            write_label_png(out / f"{index:05d}.png", result.label_image())
            if writer is not None:
                for oid, obj in sorted(result.objects.items()):
                    writer.add(f"f{index:05d}_o{oid}", np.asarray(obj.logits, dtype=np.float32))
            seen_ids.update(result.objects)
            if on_result is not None:
                on_result(index, frame, result)
            count += 1
            bar.update(1)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    if count == 0:
        raise InputError("the input has no frames")
    unused = sorted(f for f in prompts_by_frame if f >= count)
    if unused:
        raise PromptError(f"prompts for frame {unused[0]}, but the input has only {count} frames")
    return TrackSummary(count, sorted(seen_ids), seconds, out, logits_path)


# Command line ------------------------------------------------------------------------------------
def check_device(device: str) -> None:
    """InputError unless torch can use ``device`` here."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: CUDA is not available on this machine")
    if device == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps: MPS is not available on this machine")


def load_model(checkpoint: str | Path, device: str) -> Any:
    """``load_checkpoint`` with every failure reported as a one-line CheckpointError."""
    from edgetam_core.checkpoint import load_checkpoint

    try:
        return load_checkpoint(checkpoint, device=device)
    except EdgeTAMError:
        raise
    except Exception as exc:  # a corrupt file may raise anything from torch/pickle/zip
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"cannot load checkpoint {checkpoint}: {msg}") from None


def resolve_model(checkpoint: str, device: str) -> tuple[Any, str]:
    """The model a ``--checkpoint`` value names, and a description of it.

    A ``.pt`` path, or one of ``checkpoint.MODEL_NAMES`` (``demo``/``default``: the bundled
    demo model; ``random``). Failures are one-line ``CheckpointError``/``InputError``.
    """
    from edgetam_core.checkpoint import MODEL_NAMES, load_named_model

    check_device(device)
    if checkpoint in MODEL_NAMES:
        return load_named_model(checkpoint, device)
    if not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint not found: {checkpoint}")
    return load_model(checkpoint, device), str(checkpoint)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Track prompted objects through a video or a folder of frames with EdgeTAM "
        "and write one DAVIS-style label PNG per frame.",
        epilog='Prompts file: {"prompts": [{"frame": 0, "object_id": 1, "points": [[x, y]], '
        '"labels": [1]}, {"frame": 0, "object_id": 2, "box": [x0, y0, x1, y1]}]}',
    )
    parser.add_argument("--checkpoint", required=True, help="model checkpoint (.pt)")
    parser.add_argument(
        "--input", required=True, help="folder of .jpg/.png frames, an image, or a video file"
    )
    parser.add_argument("--prompts", required=True, help="prompts JSON file (see below)")
    parser.add_argument("--out", required=True, help="output folder for the label PNGs")
    parser.add_argument(
        "--save-logits", action="store_true", help="also write mask logits to OUT/logits.npz"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"))
    parser.add_argument(
        "--max-objects", type=int, default=16, help="most objects tracked at once (default 16)"
    )
    parser.add_argument(
        "--backend",
        default="eager",
        choices=("eager", "torchscript", "coreml"),
        help="runtime of the model steps (default eager; torchscript traces in memory unless "
        "--export-dir is given; coreml needs --export-dir and macOS)",
    )
    parser.add_argument("--export-dir", help="directory written by edgetam-export for --backend")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16"),
        help="eager / in-memory torchscript precision (bf16: CPUs with AVX512-BF16, CUDA)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    return parser


def run(args: argparse.Namespace) -> TrackSummary:
    """Everything ``main`` does, raising EdgeTAMError on unusable input."""
    checkpoint, source = Path(args.checkpoint), Path(args.input)
    if not checkpoint.is_file():
        raise CheckpointError(f"checkpoint not found: {checkpoint}")
    if not source.exists():
        raise InputError(f"input not found: {source}")
    if args.max_objects < 1:
        raise InputError(f"--max-objects must be >= 1, got {args.max_objects}")
    prompts_by_frame = parse_prompts_file(args.prompts)
    num_frames = count_frames(source)
    check_prompts(prompts_by_frame, num_frames, first_frame_size(source), args.max_objects)
    check_device(args.device)

    from edgetam_core.backends import create_backend
    from edgetam_core.tracker import Tracker

    model = load_model(checkpoint, args.device)
    backend = create_backend(args.backend, model, args.export_dir, args.precision)
    tracker = Tracker(backend, max_objects=args.max_objects)
    return track_video(
        tracker,
        read_frames(source),
        prompts_by_frame,
        args.out,
        save_logits=args.save_logits,
        total=num_frames,
        progress=False if args.quiet else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code, summary = run_cli(PROG, lambda: run(args))
    if summary is not None and not args.quiet:
        print(f"{PROG}: {summary.line()}")
    return code


if __name__ == "__main__":
    sys.exit(main())
