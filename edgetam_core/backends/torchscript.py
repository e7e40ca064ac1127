"""TorchScript backend: the four steps run as traced graphs (CPU or CUDA, any platform)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgetam_core.backends.base import Backend, step_precision
from edgetam_core.backends.export import (
    STEPS,
    check_manifest,
    memory_slots,
    read_manifest,
    step_modules,
    trace_step,
)
from edgetam_core.backends.steps import example_inputs
from edgetam_core.errors import BackendError
from edgetam_core.model.edgetam import EdgeTAM, ImageFeatures, RawDecoderOutput


class TorchScriptBackend(Backend):
    """Runs the four steps as TorchScript graphs.

    Build it from an ``edgetam-export --format torchscript`` directory (``load``) or trace the
    model in memory (``trace``). The eager ``model`` (same checkpoint) supplies the small
    constants and glue; a loaded manifest must match its config and checkpoint.
    """

    name = "torchscript"

    def __init__(
        self,
        model: EdgeTAM,
        steps: dict[str, torch.jit.ScriptModule],
        precision: str,
    ) -> None:
        super().__init__(model, precision="fp32", fuse=False)
        self.precision = precision
        self.steps = steps
        # The profiling executor specializes a graph for every input shape it meets (each
        # bank fill level, each number of objects) and keeps every specialization: on CPU,
        # with no fuser to gain from, that cost 0.9 GB of peak RSS over a 3-object clip
        # (2.3 GB vs 1.4 GB) for no speed. Plain execution there; CUDA keeps the default.
        self._optimize = self.device.type != "cpu"

    def _call(self, step: str, *args: torch.Tensor) -> Any:
        with torch.jit.optimized_execution(self._optimize):
            return self.steps[step](*args)

    @classmethod
    def load(cls, model: EdgeTAM, directory: str | Path) -> TorchScriptBackend:
        manifest = read_manifest(directory)
        check_manifest(manifest, model, "torchscript")
        device = next(model.parameters()).device
        d = Path(directory)
        try:
            steps = {
                name: torch.jit.load(str(d / file), map_location=device).eval()
                for name, file in manifest["files"].items()
            }
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            raise BackendError(f"cannot load TorchScript files from {d} ({first})") from None
        return cls(model, steps, str(manifest["precision"]))

    @classmethod
    def trace(cls, model: EdgeTAM, precision: str = "fp32") -> TorchScriptBackend:
        """Trace the (fused) model in memory: no export directory needed."""
        model.eval().fuse()
        slots = memory_slots(model.config, 1)  # example shapes only: the graph takes any M
        modules = step_modules(model)
        examples = example_inputs(model, *slots)
        with torch.no_grad():
            for name in STEPS:  # fill size-keyed caches so traces embed constants
                modules[name](*examples[name])
        steps = {
            name: trace_step(modules[name], examples[name], step_precision(name, precision))
            for name in STEPS
        }
        return cls(model, steps, precision)

    def encode_image(self, images: torch.Tensor) -> ImageFeatures:
        hr0, hr1, top, top_pos = self._call("image_encoder", images)
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
        if memory_mask is None:
            memory_mask = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device)
        key_cos, key_sin = self.model.memory_attention.key_rope(
            num_spatial_mem, num_obj_ptr_tokens, memory.device, torch.float32
        )
        result: torch.Tensor = self._call(
            "memory_attention", top, top_pos, memory, memory_pos, memory_mask, key_cos, key_sin
        )
        return result

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
        dev = pix_feat.device
        if point_coords is None or point_labels is None:
            point_coords = torch.zeros(b, 1, 2, device=dev)
            point_labels = -torch.ones(b, 1, dtype=torch.int32, device=dev)
        s = 4 * self.config.feat_size
        if mask_input is None:
            mask_input = torch.zeros(b, 1, s, s, device=dev)
            use_mask = torch.zeros(b, dtype=torch.bool, device=dev)
        elif use_mask is None:
            use_mask = torch.ones(b, dtype=torch.bool, device=dev)
        masks, ious, ptrs, score = self._call(
            "decoder",
            pix_feat,
            high_res[0],
            high_res[1],
            point_coords.float(),
            point_labels.int(),
            mask_input,
            use_mask,
        )
        return RawDecoderOutput(masks, ious, ptrs, score)

    def encode_memory(
        self, top: torch.Tensor, high_res_logits: torch.Tensor, binarize: torch.Tensor
    ) -> torch.Tensor:
        result: torch.Tensor = self._call("memory_encoder", top, high_res_logits, binarize)
        return result
