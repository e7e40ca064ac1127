"""``edgetam-eval``: J&F of EdgeTAM (or of any tracker's saved results) on a VOS data set.

    edgetam-eval --dataset DIR [--format davis|mose|sav] [--split FILE] [--sequences S ...]
                 --checkpoint CKPT|default [--protocol semi|clicks1|clicks3|clicks5|box]
                 [--corrections N] --out DIR [--overlay-video] [--device cpu|cuda|mps]
                 [--max-frames N] [--unseen FILE] [--all-frames]
    edgetam-eval --dataset DIR --predictions RESULTS --out DIR       # score existing results

With a checkpoint (``demo`` or ``default`` = the bundled demo model) the tracker runs every sequence
under the protocol and its masks are written to ``OUT/predictions/<seq>/<frame>.png`` (the
DAVIS results convention, so ``--predictions`` can score them again). With ``--predictions``
nothing runs: ``RESULTS/<seq>/<frame>.png`` (one indexed PNG per annotated frame) are scored
as the DAVIS toolkit does. Scored frames: every annotated frame but the first and the last of
each sequence (``--all-frames``: all annotated frames). ``--unseen FILE`` (lines ``<seq>`` or
``<seq>/<object id>``) marks YouTube-VOS-style unseen objects and adds G to the report.

Output (``OUT/``): ``report.json``, ``global_results.csv``, ``per-sequence_results.csv``,
``per-frame_results.csv``, ``plots/<seq>.png`` and, with ``--overlay-video``,
``videos/<seq>.mp4``. Exit status: 0 success, 2 unusable input (one line on stderr), 1
unexpected failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetam_core.cli.common import run_cli
from edgetam_core.errors import InputError
from edgetam_core.eval.datasets import FORMATS, VOSSequence, read_dataset, read_predictions
from edgetam_core.eval.metrics import GScore, SequenceScores, g_score, score_sequence, summarize
from edgetam_core.eval.protocols import PROTOCOLS, run_sequence
from edgetam_core.eval.report import ReportPaths, write_overlay_video, write_report
from edgetam_core.io import write_label_png

PROG = "edgetam-eval"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Evaluate EdgeTAM on a video object segmentation data set (J, F, J&F as "
        "the DAVIS benchmark defines them), or score an existing results folder.",
    )
    p.add_argument("--dataset", required=True, help="data set root folder")
    p.add_argument("--format", default="davis", choices=FORMATS, help="folder layout")
    p.add_argument("--split", help="file of sequence names (DAVIS: may be relative to ImageSets)")
    p.add_argument("--resolution", default="480p", help="DAVIS resolution folder (default 480p)")
    p.add_argument("--sequences", nargs="+", help="only these sequences")
    p.add_argument(
        "--checkpoint",
        help="model checkpoint (.pt), or 'demo' (= 'default': the bundled synthetic-world "
        "demo model) or 'random' (random weights, plumbing only)",
    )
    p.add_argument(
        "--predictions",
        help="score this results folder (<seq>/<frame>.png) instead of running the tracker",
    )
    p.add_argument(
        "--protocol",
        default="semi",
        choices=PROTOCOLS,
        help="how objects are prompted (default semi: first-frame masks)",
    )
    p.add_argument(
        "--corrections",
        type=int,
        default=0,
        help="correction clicks per sequence at the frame of largest error",
    )
    p.add_argument("--out", required=True, help="output folder for the report")
    p.add_argument("--overlay-video", action="store_true", help="also write videos/<seq>.mp4")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"))
    p.add_argument(
        "--backend",
        default="eager",
        choices=("eager", "torchscript"),
        help="runtime of the model steps (torchscript: traced at start-up)",
    )
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--max-frames", type=int, help="only the first N frames of each sequence")
    p.add_argument("--max-objects", type=int, default=255, help="tracker capacity (default 255)")
    p.add_argument("--unseen", help="file of unseen '<seq>' or '<seq>/<id>' lines: adds G")
    p.add_argument(
        "--all-frames", action="store_true", help="score the first and last annotated frames too"
    )
    p.add_argument("--no-plots", action="store_true", help="skip the per-sequence plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no summary line")
    return p


@dataclass
class EvalResult:
    paths: ReportPaths
    scores: list[SequenceScores]
    report_line: str


def read_unseen(path: Path, sequences: Sequence[VOSSequence]) -> set[tuple[str, int]]:
    """(sequence, object id) pairs named by an unseen file (``seq`` = all of its objects)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputError(f"cannot read --unseen file {path}: {exc.strerror or exc}") from None
    by_name = {s.name: s for s in sequences}
    out: set[tuple[str, int]] = set()
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, oid = line.partition("/")
        if name not in by_name:
            continue  # a sequence not evaluated in this run
        if oid:
            if not oid.isdigit():
                raise InputError(f"--unseen {path}: bad object id in line {line!r}")
            out.add((name, int(oid)))
        else:
            out.update((name, o) for o in by_name[name].object_ids())
    return out


def _load_tracker(
    checkpoint: str, device: str, max_objects: int, backend: str = "eager", precision: str = "fp32"
) -> tuple[Any, str]:
    from edgetam_core.backends import create_backend
    from edgetam_core.cli.track import resolve_model
    from edgetam_core.tracker import Tracker

    model, desc = resolve_model(checkpoint, device)
    runtime = create_backend(backend, model, precision=precision)
    return Tracker(runtime, max_objects=max_objects), desc


def backend_name(tracker: Any) -> str:
    """The name of the inference backend a tracker runs (``eager`` when it does not say)."""
    return str(getattr(getattr(tracker, "backend", None), "name", None) or "eager")


def _score(seq: VOSSequence, predictions: dict, skip: bool, where: str) -> SequenceScores:
    try:
        return score_sequence(seq.name, seq.ground_truth(), predictions, skip_first_last=skip)
    except KeyError as exc:
        stem = seq.frame_paths[int(exc.args[0])].stem
        raise InputError(f"{where}: no prediction for {seq.name} frame {stem}") from None
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


def run(args: argparse.Namespace) -> EvalResult:
    """Everything ``main`` does, raising EdgeTAMError on unusable input."""
    from tqdm import tqdm

    if args.predictions is None and args.checkpoint is None:
        raise InputError("give --checkpoint (a .pt file or 'default') or --predictions DIR")
    if args.predictions is not None and args.checkpoint is not None:
        raise InputError("--predictions scores saved results: do not give --checkpoint too")
    if args.corrections < 0:
        raise InputError(f"--corrections must be >= 0, got {args.corrections}")
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {args.max_frames}")
    if not 1 <= args.max_objects <= 255:
        raise InputError(f"--max-objects must be in 1..255, got {args.max_objects}")
    sequences = read_dataset(
        args.dataset, args.format, args.split, args.sequences, resolution=args.resolution
    )
    if args.max_frames is not None:
        sequences = [s.truncated(args.max_frames) for s in sequences]
    for s in sequences:
        if not s.annotations:
            raise InputError(f"sequence {s.name} has no annotated frame in its first frames")
    unseen = read_unseen(Path(args.unseen), sequences) if args.unseen else None
    out = Path(args.out)
    skip = not args.all_frames
    settings: dict[str, Any] = {
        "tool": PROG,
        "dataset": str(args.dataset),
        "format": args.format,
        "scored_frames": "annotated frames except the first and the last of each sequence"
        if skip
        else "all annotated frames",
    }
    per_sequence: dict[str, dict[str, Any]] = {}
    scores: list[SequenceScores] = []
    all_predictions: dict[str, dict] = {}
    progress = False if args.quiet else None

    if args.predictions is not None:
        settings.update({"predictions": str(args.predictions), "protocol": None})
        for seq in tqdm(
            sequences,
            desc=PROG,
            unit="seq",
            disable=(not progress) if progress is not None else None,
            file=sys.stderr,
            leave=False,
        ):
            preds = read_predictions(args.predictions, seq)
            all_predictions[seq.name] = preds
            scores.append(_score(seq, preds, skip, str(args.predictions)))
        timing = ""
    else:
        tracker, ckpt_desc = _load_tracker(
            args.checkpoint, args.device, args.max_objects, args.backend, args.precision
        )
        backend = backend_name(tracker)
        total = sum(s.num_frames * (1 + args.corrections) for s in sequences)
        bar = tqdm(
            total=total,
            desc=PROG,
            unit="frame",
            file=sys.stderr,
            leave=False,
            disable=(not progress) if progress is not None else None,
        )
        seconds = 0.0
        frames = 0
        try:
            for seq in sequences:
                bar.set_postfix_str(seq.name)
                result = run_sequence(
                    tracker,
                    seq,
                    args.protocol,
                    args.corrections,
                    skip,
                    on_frame=lambda _k: bar.update(1),
                )
                pred_dir = out / "predictions" / seq.name
                for k, labels in result.predictions.items():
                    write_label_png(pred_dir / f"{seq.frame_paths[k].stem}.png", labels)
                all_predictions[seq.name] = result.predictions
                scores.append(_score(seq, result.predictions, skip, PROG))
                seconds += result.seconds
                frames += result.frames
                per_sequence[seq.name] = {
                    "frames": result.frames,
                    "ms_per_frame": round(result.ms_per_frame, 3),
                    "corrections": [
                        {"frame": k, "object": o, "x": c.x, "y": c.y, "positive": c.positive}
                        for k, o, c in result.corrections
                    ],
                }
        finally:
            bar.close()
        ms = 1000.0 * seconds / max(1, frames)
        settings.update(
            {
                "protocol": args.protocol,
                "corrections": args.corrections,
                "checkpoint": ckpt_desc,
                "backend": backend,
                "device": str(tracker.device),
                "frames": frames,
                "ms_per_frame": round(ms, 3),
            }
        )
        timing = f", {ms:.0f} ms/frame ({backend} on {tracker.device})"
    g: GScore | None = g_score(scores, unseen) if unseen is not None else None
    paths = write_report(out, scores, settings, per_sequence, g, plots=not args.no_plots)
    if args.overlay_video:
        for seq in sequences:
            paths.videos.append(
                write_overlay_video(
                    out / "videos" / f"{seq.name}.mp4",
                    seq.frames(),
                    all_predictions[seq.name],
                    seq.ground_truth(),
                )
            )
    summary = summarize(scores)
    where = f"report in {paths.json}"
    if paths.plots:
        where += f", plots in {out / 'plots'}"
    if paths.videos:
        where += f", videos in {out / 'videos'}"
    g_text = f", G {g.g:.3f}" if g is not None else ""
    line = (
        f"{PROG}: J&F {summary.jf_mean:.3f} (J {summary.j.mean:.3f}, F {summary.f.mean:.3f})"
        f"{g_text} over {summary.objects} objects in {len(scores)} sequences{timing}; {where}"
    )
    return EvalResult(paths, scores, line)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code, result = run_cli(PROG, lambda: run(args))
    if result is not None and not args.quiet:
        print(result.report_line)
    return code


if __name__ == "__main__":
    sys.exit(main())
