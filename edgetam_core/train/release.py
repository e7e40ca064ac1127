"""Compact release checkpoints: floating-point weights stored as float16.

``load_checkpoint`` reads them like any other checkpoint (``load_state_dict`` copies the
float16 values into the float32 model), so a release file is a drop-in replacement at half
the size. Integer buffers (BatchNorm counters) are kept as they are.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from edgetam_core.checkpoint import read_checkpoint


def write_release_checkpoint(
    src: str | Path, dst: str | Path, dtype: torch.dtype = torch.float16
) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with floating tensors in ``dtype``."""
    state, config, _ = read_checkpoint(src)
    payload: dict[str, Any] = {
        "model": {
            k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()
        }
    }
    raw = torch.load(src, map_location="cpu", weights_only=True)
    if "config" in raw:
        payload["config"] = config.to_dict()
    out = Path(dst)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgetam_core.train.release SRC DST``: write a float16 copy of SRC."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("src")
    parser.add_argument("dst")
    args = parser.parse_args(argv)
    out = write_release_checkpoint(args.src, args.dst)
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
