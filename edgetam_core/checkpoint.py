"""Loading and saving EdgeTAM weights in the official checkpoint layout.

The official ``edgetam.pt`` is ``{'model': state_dict}``. A checkpoint is data, never code: it
is read with ``torch.load(weights_only=True)`` and a file that would need pickle code execution
is refused. Checkpoints written by this project may carry a ``'config'`` dict (for configs
other than the default, e.g. the small demo model); official ones have none and get the
default config.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from edgetam_core.config import EdgeTAMConfig
from edgetam_core.errors import CheckpointError
from edgetam_core.model.edgetam import EdgeTAM

log = logging.getLogger(__name__)

DEFAULT_MODEL_SEED = 14  # random init with a positive first-frame object score (non-constant masks)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _describe(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    more = f", ... ({len(keys)} in total)" if len(keys) > limit else f" ({len(keys)} in total)"
    return shown + more


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], EdgeTAMConfig, str]:
    """Read and validate a checkpoint file: (state_dict, config, sha256). No model is built."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if not p.is_file():
        raise CheckpointError(f"checkpoint is not a file: {p}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty: {p}")
    try:
        raw: Any = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses any global it does not know: that is code, not data.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise CheckpointError(
                f"refusing {p}: it needs pickle code execution to load ({found.group(1)})"
            ) from None
        raise CheckpointError(f"{p} is not a readable torch checkpoint (corrupt data)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "zip archive" in text or "central directory" in text or isinstance(exc, EOFError):
            raise CheckpointError(f"{p} is truncated or not a torch checkpoint ({text})") from None
        raise CheckpointError(f"{p} is not a readable torch checkpoint ({text})") from None
    if not isinstance(raw, dict) or "model" not in raw or not isinstance(raw["model"], dict):
        raise CheckpointError(f"{p} is not in the official layout {{'model': state_dict}}")
    state = raw["model"]
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{p}: state_dict entries that are not tensors: {_describe(bad)}")
    config = EdgeTAMConfig()
    if "config" in raw:
        if not isinstance(raw["config"], dict):
            raise CheckpointError(f"{p}: 'config' must be a dict of EdgeTAMConfig fields")
        try:
            config = EdgeTAMConfig.from_dict(raw["config"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{p}: invalid config ({exc})") from None
    return state, config, file_sha256(p)


def load_state_strict(
    model: EdgeTAM, state: dict[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Load ``state`` into ``model``; missing/unexpected keys and shape mismatches are errors."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise CheckpointError(f"{source} is missing keys: {_describe(missing)}")
    if unexpected:
        raise CheckpointError(f"{source} has unexpected keys: {_describe(unexpected)}")
    mismatched = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if mismatched:
        raise CheckpointError(f"{source} has shape mismatches: {_describe(mismatched, 3)}")
    model.load_state_dict(state, strict=True)


def load_checkpoint(
    path: str | Path, config: EdgeTAMConfig | None = None, device: str | torch.device = "cpu"
) -> EdgeTAM:
    """Build EdgeTAM and load ``path`` strictly; returns the model in eval mode on ``device``.

    ``config`` overrides the checkpoint's own (or the default) config.
    """
    state, ckpt_config, sha = read_checkpoint(path)
    model = EdgeTAM(config or ckpt_config)
    load_state_strict(model, state, source=str(path))
    log.info("loaded checkpoint %s (sha256 %s)", path, sha)
    model.checkpoint_sha256 = sha  # type: ignore[assignment]
    return model.to(device).eval()


def save_checkpoint(model: EdgeTAM, path: str | Path, include_config: bool = True) -> Path:
    """Write ``model`` in the official layout (plus its config unless it is the default)."""
    if model.is_fused:
        raise CheckpointError("a fused model cannot be saved in the official layout")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}
    }
    if include_config and model.config != EdgeTAMConfig():
        payload["config"] = model.config.to_dict()
    torch.save(payload, p)
    return p


def build_default_model(
    config: EdgeTAMConfig | None = None,
    seed: int = DEFAULT_MODEL_SEED,
    device: str | torch.device = "cpu",
) -> EdgeTAM:
    """The embedded default when no checkpoint is given: a seeded random-weight EdgeTAM.

    It exercises the whole pipeline but does not recognise objects: masks are not meaningful.
    With random weights the object-score head is near zero and often negative, which would
    suppress every mask; its output bias is set to +1 so that masks are visible.
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = EdgeTAM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    with torch.no_grad():
        last = model.sam_mask_decoder.pred_obj_score_head.layers[-1]
        assert isinstance(last, torch.nn.Linear)
        last.bias.fill_(1.0)
    model.checkpoint_sha256 = None  # type: ignore[assignment]
    return model.to(device).eval()


#: The bundled demo model (a few MB, float16): a small EdgeTAM (128 px input, narrower widths)
#: trained from scratch on the synthetic world with ``config/train/demo.yaml``; how it was made
#: and what it scores is in docs/training.md. It tracks that world's textured shapes; for real
#: scenes use the official ``edgetam.pt``.
DEMO_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "edgetam_demo_synthetic.pt"

#: Names accepted wherever a checkpoint path is: ``demo`` (the bundled demo model, also what
#: ``default`` means) and ``random`` (seeded random weights: plumbing tests only).
MODEL_NAMES = ("demo", "default", "random")


def load_demo_model(device: str | torch.device = "cpu") -> EdgeTAM:
    """The bundled demo model (``DEMO_CHECKPOINT``), loaded strictly like any checkpoint."""
    if not DEMO_CHECKPOINT.is_file():
        raise CheckpointError(
            f"the bundled demo model is missing ({DEMO_CHECKPOINT}): reinstall edgetam-ros"
        )
    return load_checkpoint(DEMO_CHECKPOINT, device=device)


def load_named_model(name: str, device: str | torch.device = "cpu") -> tuple[EdgeTAM, str]:
    """A model from a checkpoint path or one of ``MODEL_NAMES``, and a one-line description."""
    if name in ("demo", "default"):
        return load_demo_model(device), "bundled demo model (synthetic world; docs/training.md)"
    if name == "random":
        return build_default_model(device=device), "random weights (masks are not meaningful)"
    return load_checkpoint(name, device=device), f"checkpoint {name}"
