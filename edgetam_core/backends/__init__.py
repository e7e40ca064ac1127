"""Interchangeable runtimes for EdgeTAM's four per-frame steps.

``create_backend`` is what the CLI and the ROS node call: ``eager`` (PyTorch modules),
``torchscript`` (traced graphs, from an export directory or traced in memory) and ``coreml``
(exported ``mlprogram`` packages; prediction needs macOS).
"""

from __future__ import annotations

from pathlib import Path

from edgetam_core.backends.base import PRECISIONS, Backend, as_backend
from edgetam_core.errors import BackendError
from edgetam_core.model.edgetam import EdgeTAM

BACKENDS = ("eager", "torchscript", "coreml")

__all__ = ["BACKENDS", "PRECISIONS", "Backend", "as_backend", "create_backend"]


def create_backend(
    name: str,
    model: EdgeTAM,
    export_dir: str | Path | None = None,
    precision: str = "fp32",
) -> Backend:
    """A backend by name, ready for ``Tracker`` (the model is fused for inference in place).

    ``torchscript`` loads ``export_dir`` when given, else traces the model in memory;
    ``coreml`` needs ``export_dir``. ``precision`` applies to eager and in-memory traces
    (an export directory carries its own).
    """
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if name == "eager":
        return Backend(model, precision=precision, fuse=True)
    if name == "torchscript":
        from edgetam_core.backends.torchscript import TorchScriptBackend

        if export_dir is not None:
            return TorchScriptBackend.load(model, export_dir)
        return TorchScriptBackend.trace(model, precision)
    from edgetam_core.backends.coreml import CoreMLBackend

    if export_dir is None:
        raise BackendError(
            "the coreml backend needs an export directory (edgetam-export --format coreml)"
        )
    return CoreMLBackend(model, export_dir)
