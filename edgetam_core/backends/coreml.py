"""Core ML backend: the four steps as ``mlprogram`` packages for Apple hardware.

Conversion (coremltools, from the TorchScript traces) runs on any OS; prediction needs macOS,
so on other systems ``CoreMLBackend`` refuses to start with a clear error. Core ML takes no
bool tensors: validity/flag inputs are float32 (1 = true) at this boundary.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from edgetam_core.backends.base import Backend, step_precision
from edgetam_core.backends.export import check_manifest, read_manifest, step_signatures, trace_step
from edgetam_core.config import EdgeTAMConfig
from edgetam_core.errors import BackendError
from edgetam_core.model.edgetam import EdgeTAM, ImageFeatures, RawDecoderOutput

if TYPE_CHECKING:
    from edgetam_core.backends.export import ExportOptions

# Upper bound of the prompt-point dimension in converted decoders.
MAX_POINTS = 32
_FLAG_INPUTS = {"valid", "use_mask", "binarize"}


class _FloatFlags(nn.Module):
    """Takes float 0/1 tensors where the traced step expects bool (Core ML has no bool I/O)."""

    def __init__(self, step: nn.Module, flag_positions: list[int]) -> None:
        super().__init__()
        self.step = step
        self.flag_positions = flag_positions

    def forward(self, *args: torch.Tensor) -> Any:
        fixed = [a > 0.5 if i in self.flag_positions else a for i, a in enumerate(args)]
        return self.step(*fixed)


def convert_step(
    name: str,
    step: nn.Module,
    config: EdgeTAMConfig,
    mem_slots: int,
    ptr_slots: int,
    options: ExportOptions,
    path: Path,
) -> None:
    """Convert one traced step to an ``mlprogram`` package at ``path``."""
    try:
        import coremltools as ct
    except ImportError:
        raise BackendError(
            "Core ML export needs coremltools (pip install coremltools==9.0)"
        ) from None
    sig = step_signatures(config, mem_slots, ptr_slots)[name]
    flags = [i for i, io in enumerate(sig["inputs"]) if io["name"] in _FLAG_INPUTS]
    batch = ct.RangeDim(lower_bound=1, upper_bound=options.max_objects, default=1)
    points = ct.RangeDim(lower_bound=1, upper_bound=MAX_POINTS, default=1)
    inputs, examples = [], []
    for io in sig["inputs"]:
        shape = [batch if d == "B" else points if d == "N" else int(d) for d in io["shape"]]
        dtype = np.int32 if io["dtype"] == "int32" else np.float32
        inputs.append(ct.TensorType(name=io["name"], shape=ct.Shape(shape), dtype=dtype))
        concrete = [1 if not isinstance(d, int) else d for d in shape]
        examples.append(
            torch.ones(concrete, dtype=torch.int32) if dtype == np.int32 else torch.rand(concrete)
        )
    module = _FloatFlags(step, flags).eval()
    with torch.no_grad():
        wrapped = trace_step(module, tuple(examples), "fp32", freeze=False)
    reduced = step_precision(name, options.precision) == "fp16"  # the decoder stays float32
    precision = ct.precision.FLOAT16 if reduced else ct.precision.FLOAT32
    mlmodel = ct.convert(
        wrapped,
        inputs=inputs,
        outputs=[ct.TensorType(name=io["name"]) for io in sig["outputs"]],
        convert_to="mlprogram",
        compute_precision=precision,
        minimum_deployment_target=ct.target.macOS14,
    )
    mlmodel.short_description = f"EdgeTAM {name} step (edgetam-ros export)"
    mlmodel.save(str(path))


def package_description(path: str | Path) -> dict[str, list[str]]:
    """Input and output names of a saved ``.mlpackage`` (works without macOS)."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    return {
        "inputs": [i.name for i in spec.description.input],
        "outputs": [o.name for o in spec.description.output],
    }


def coreml_prediction_available() -> bool:
    return sys.platform == "darwin"


class CoreMLBackend(Backend):
    """Runs an ``edgetam-export --format coreml`` directory (macOS only)."""

    name = "coreml"

    def __init__(self, model: EdgeTAM, directory: str | Path, compute_units: str = "ALL") -> None:
        manifest = read_manifest(directory)
        check_manifest(manifest, model, "coreml")
        if not coreml_prediction_available():
            raise BackendError(
                f"Core ML prediction needs macOS (this is {platform.system()}); "
                "use the torchscript or eager backend here"
            )
        import coremltools as ct

        super().__init__(model, precision="fp32", fuse=False)
        self.precision = str(manifest["precision"])
        mem_slots, ptr_slots = manifest["memory_slots"]
        self.memory_slots = (int(mem_slots), int(ptr_slots))
        units = getattr(ct.ComputeUnit, compute_units)
        d = Path(directory)
        self.models = {
            n: ct.models.MLModel(str(d / f), compute_units=units)
            for n, f in manifest["files"].items()
        }
        self.signatures = manifest["steps"]

    def _run(self, step: str, *args: torch.Tensor) -> list[torch.Tensor]:
        names = [io["name"] for io in self.signatures[step]["inputs"]]
        feed = {
            n: a.detach().cpu().numpy().astype(np.int32 if a.dtype == torch.int32 else np.float32)
            for n, a in zip(names, args, strict=True)
        }
        out = self.models[step].predict(feed)
        return [
            torch.from_numpy(np.asarray(out[io["name"]], dtype=np.float32)).to(self.device)
            for io in self.signatures[step]["outputs"]
        ]

    def encode_image(self, images: torch.Tensor) -> ImageFeatures:
        hr0, hr1, top, top_pos = self._run("image_encoder", images)
        return ImageFeatures([hr0, hr1], top, top_pos)

    def attend_memory(
        self,
        top: torch.Tensor,
        top_pos: torch.Tensor,
        memory: torch.Tensor | None,
        memory_pos: torch.Tensor | None,
        num_spatial_mem: int,
        num_obj_ptr_tokens: int,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if memory is None:
            return self.model.attend_memory(top, top_pos, None, None, 0, 0)
        assert memory_pos is not None
        valid = torch.ones(memory.shape[:2]) if memory_mask is None else memory_mask.float()
        key_cos, key_sin = self.model.memory_attention.key_rope(
            num_spatial_mem, num_obj_ptr_tokens, memory.device, torch.float32
        )
        return self._run(
            "memory_attention", top, top_pos, memory, memory_pos, valid, key_cos, key_sin
        )[0]

    def decode_raw(
        self,
        pix_feat: torch.Tensor,
        high_res: list[torch.Tensor],
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        use_mask: torch.Tensor | None = None,
    ) -> RawDecoderOutput:
        b = pix_feat.shape[0]
        if point_coords is None or point_labels is None:
            point_coords = torch.zeros(b, 1, 2)
            point_labels = -torch.ones(b, 1, dtype=torch.int32)
        s = 4 * self.config.feat_size
        flags = (
            torch.zeros(b)
            if mask_input is None
            else (torch.ones(b) if use_mask is None else use_mask.float())
        )
        if mask_input is None:
            mask_input = torch.zeros(b, 1, s, s)
        masks, ious, ptrs, score = self._run(
            "decoder",
            pix_feat,
            high_res[0],
            high_res[1],
            point_coords,
            point_labels.int(),
            mask_input,
            flags,
        )
        return RawDecoderOutput(masks, ious, ptrs, score)

    def encode_memory(
        self, top: torch.Tensor, high_res_logits: torch.Tensor, binarize: torch.Tensor
    ) -> torch.Tensor:
        return self._run("memory_encoder", top, high_res_logits, binarize.float())[0]
