"""``edgetam-train``: train or fine-tune EdgeTAM from a YAML config (see docs/training.md)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from edgetam_core.errors import EdgeTAMError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgetam-train",
        description="Train EdgeTAM (image stage, video stages, distillation) from a YAML config.",
    )
    parser.add_argument("--config", required=True, help="YAML training config")
    parser.add_argument("--resume", help="training state (state.pt) to continue from")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (overrides the config)")
    parser.add_argument("--out", help="output folder (overrides the config's out_dir)")
    parser.add_argument("--max-steps", type=int, help="stop (and save) after this many steps")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(message)s",
    )
    from edgetam_core.train.config import ConfigError, load_train_config
    from edgetam_core.train.trainer import Trainer

    try:
        cfg = load_train_config(args.config, device=args.device, out_dir=args.out)
        trainer = Trainer(
            cfg, resume=args.resume, progress=not args.no_progress, max_steps=args.max_steps
        )
        path = trainer.run()
    except (ConfigError, EdgeTAMError, FileNotFoundError) as exc:
        print(f"edgetam-train: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one line unless debugging
        if os.environ.get("EDGETAM_DEBUG"):
            traceback.print_exc()
        print(f"edgetam-train: unexpected error: {exc!r}", file=sys.stderr)
        return 1
    print(f"model: {path} ({trainer.global_step} steps, {trainer.elapsed:.0f} s of training)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
