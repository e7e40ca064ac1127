"""``edgetam-export``: export the whole video tracker's four steps to TorchScript or Core ML.

    edgetam-export --checkpoint CKPT --format torchscript|coreml --out DIR
                   [--precision fp32|fp16|bf16] [--max-objects N] [--max-conditioning-frames K]

Writes one file per step (image encoder; memory attention over a padded bank; prompt encoder +
mask decoder + pointer/score heads; memory encoder + spatial perceiver) and ``manifest.json``.
Use the result with ``edgetam-track --backend torchscript --export-dir DIR`` or the ROS node's
``backend``/``export_dir`` parameters, with the same checkpoint. Exit status: 0 success,
2 unusable input (one line on stderr), 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from edgetam_core.cli.common import run_cli
from edgetam_core.cli.track import resolve_model
from edgetam_core.errors import InputError

PROG = "edgetam-export"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Export EdgeTAM's four per-frame steps (the whole video tracker) to "
        "TorchScript or Core ML, with a manifest.json describing them.",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint to export (.pt, official layout), or 'default' for the embedded model",
    )
    parser.add_argument(
        "--format", required=True, choices=("torchscript", "coreml"), help="target runtime"
    )
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "fp16", "bf16"),
        help="torchscript: fp32 or bf16; coreml: fp32 or fp16 (default fp32)",
    )
    parser.add_argument(
        "--max-objects",
        type=int,
        default=16,
        help="largest batch of objects the exported steps accept (default 16)",
    )
    parser.add_argument(
        "--max-conditioning-frames",
        type=int,
        default=4,
        help="prompted frames per object the padded memory bank holds (default 4; the "
        "tracker must not use more)",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="trace on")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def run(args: argparse.Namespace) -> Path:
    from edgetam_core.backends.export import ExportOptions, export_model

    if args.max_objects < 1:
        raise InputError(f"--max-objects must be >= 1, got {args.max_objects}")
    if args.max_conditioning_frames < 1:
        raise InputError("--max-conditioning-frames must be >= 1")
    model, _ = resolve_model(args.checkpoint, args.device)
    options = ExportOptions(
        format=args.format,
        precision=args.precision,
        max_objects=args.max_objects,
        max_conditioning_frames=args.max_conditioning_frames,
    )
    say = (lambda _m: None) if args.quiet else (lambda m: print(f"{PROG}: {m}", file=sys.stderr))
    return export_model(model, args.out, options, getattr(model, "checkpoint_sha256", None), say)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code, manifest = run_cli(PROG, lambda: run(args))
    if manifest is not None and not args.quiet:
        print(f"{PROG}: exported to {manifest.parent}")
    return code


if __name__ == "__main__":
    sys.exit(main())
