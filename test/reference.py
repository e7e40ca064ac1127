"""Build the reference EdgeTAM (PyPI ``edgetam-dimos``, import ``sam2``) offline, as a test oracle.

The reference creates its timm trunk with ``pretrained=True`` (a download); we force
``pretrained=False`` and seed the RNG so that its random init is reproducible. Nothing here is
used by the product: it exists only so parity tests can compare against the official code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

REFERENCE_SEED = 14  # with this seed the first-frame object score is positive (non-constant masks)


def reference_available() -> bool:
    try:
        import sam2  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _offline_timm() -> Iterator[None]:
    import sam2.modeling.backbones.timm as ref_timm
    import timm.models

    original = timm.models.create_model

    def create_model(*args: Any, **kwargs: Any) -> Any:
        kwargs["pretrained"] = False
        return original(*args, **kwargs)

    ref_timm.create_model = create_model
    try:
        yield
    finally:
        ref_timm.create_model = original


def build_reference_video_predictor(
    seed: int = REFERENCE_SEED, checkpoint: Path | None = None
) -> Any:
    """The reference ``SAM2VideoPredictor`` for ``edgetam.yaml`` in fp32 on CPU, eval mode."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from sam2.build_sam import build_sam2_video_predictor

    if not GlobalHydra.instance().is_initialized():
        initialize_config_module("sam2", version_base="1.2")
    torch.manual_seed(seed)
    with _offline_timm(), contextlib.redirect_stdout(None):
        model = build_sam2_video_predictor(
            "edgetam.yaml", ckpt_path=str(checkpoint) if checkpoint else None, device="cpu"
        )
    return model.eval()


def save_reference_checkpoint(model: Any, path: Path) -> Path:
    """Save the reference's weights in the official layout ``{'model': state_dict}``."""
    torch.save({"model": model.state_dict()}, path)
    return path
