"""The backend interface: EdgeTAM's four stateless per-frame steps on some runtime.

    encode_image -> attend_memory -> decode_raw -> encode_memory

A backend computes tensors; the tracker owns every piece of state. The eager backend runs the
PyTorch modules; exported backends (TorchScript, Core ML) replace the four steps with compiled
graphs and keep only cheap glue (mask selection, pointer gating, constants) in PyTorch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

from edgetam_core.config import EdgeTAMConfig
from edgetam_core.model.edgetam import (
    DecoderOutput,
    EdgeTAM,
    ImageFeatures,
    RawDecoderOutput,
)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Steps that a reduced precision (bf16, fp16) applies to; the decoder always runs in float32.
#: It costs ~5 % of a frame, but its mask logits are thresholded at 0: with it in bf16, mask
#: agreement with fp32 on the official-size model (seeded random weights, logits near 0) fell
#: to 98.97 % on the worst frame, against 99.64 % with it in fp32 (docs/benchmarks.md).
REDUCED_PRECISION_STEPS = ("image_encoder", "memory_attention", "memory_encoder")


def step_precision(step: str, precision: str) -> str:
    """The precision a step runs in when the backend's precision is ``precision``."""
    return precision if step in REDUCED_PRECISION_STEPS else "fp32"


log = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


class Backend:
    """Eager PyTorch backend; base class of the others.

    Args:
        model: the network with loaded weights (also the source of small constants).
        precision: ``fp32``, or ``bf16`` (CPUs with AVX512-BF16/AMX, CUDA): the steps in
            ``REDUCED_PRECISION_STEPS`` run under bf16 autocast, the decoder in float32.
        fuse: fold RepViT BatchNorm / re-parameterizable branches for inference. This changes
            the model in place (its state dict no longer has the official layout).
    """

    name = "eager"
    #: (memory frames, object pointers) a fixed-shape runtime needs the bank padded to;
    #: None when any layout works.
    memory_slots: tuple[int, int] | None = None

    def __init__(self, model: EdgeTAM, precision: str = "fp32", fuse: bool = True) -> None:
        if precision not in PRECISIONS:
            raise ValueError(
                f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})"
            )
        self.model = model.eval()
        if fuse:
            model.fuse()
        self.config: EdgeTAMConfig = model.config
        self.device = next(model.parameters()).device
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        if self.dtype == torch.bfloat16 and self.device.type == "cpu" and not cpu_has_native_bf16():
            log.warning(
                "bf16 requested but this CPU has no AVX512-BF16/AMX: bf16 math is emulated "
                "and much slower than fp32 here"
            )

    # -- numeric context ----------------------------------------------------------------
    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self.dtype == torch.float32:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.dtype):
            yield

    # -- the four steps -------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor) -> ImageFeatures:
        """(B, 3, S, S) normalized images -> image features (float32)."""
        with self._autocast():
            f = self.model.encode_image(images)
        return ImageFeatures([h.float() for h in f.high_res], f.top.float(), f.top_pos.float())

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
        with self._autocast():
            out = self.model.attend_memory(
                top, top_pos, memory, memory_pos, num_spatial_mem, num_obj_ptr_tokens, memory_mask
            )
        return out.float()

    def decode_raw(
        self,
        pix_feat: torch.Tensor,
        high_res: list[torch.Tensor],
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        use_mask: torch.Tensor | None = None,
    ) -> RawDecoderOutput:
        # float32 whatever the precision (REDUCED_PRECISION_STEPS).
        return self.model.decode_raw(
            pix_feat, high_res, point_coords, point_labels, mask_input, use_mask
        )

    def encode_memory(
        self, top: torch.Tensor, high_res_logits: torch.Tensor, binarize: torch.Tensor
    ) -> torch.Tensor:
        with self._autocast():
            out = self.model.encode_memory(top, high_res_logits, binarize)
        return out.float()

    # -- glue shared by every backend -----------------------------------------------------
    def decode(
        self,
        pix_feat: torch.Tensor,
        high_res: list[torch.Tensor],
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask: bool = False,
    ) -> DecoderOutput:
        raw = self.decode_raw(pix_feat, high_res, point_coords, point_labels, mask_input)
        return self.model.select_output(raw, multimask)

    def decode_mask_prompt(
        self, pix_feat: torch.Tensor, high_res: list[torch.Tensor], mask: torch.Tensor
    ) -> DecoderOutput:
        """``EdgeTAM.decode_mask_prompt`` with this backend's decoder."""
        from_heads = self.decode(pix_feat, high_res, mask_input=self.model.mask_downsample(mask))
        return self.model.mask_prompt_output(mask, from_heads)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.normalize(images)

    def memory_token_pos(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return self.model.memory_token_pos(device, dtype)

    def pointer_tokens(self, obj_ptrs: torch.Tensor) -> torch.Tensor:
        return self.model.pointer_tokens(obj_ptrs)

    @property
    def maskmem_tpos_enc(self) -> torch.Tensor:
        return self.model.maskmem_tpos_enc.detach()

    def describe(self) -> str:
        return f"{self.name} ({self.precision}, {self.device.type})"


def as_backend(model_or_backend: EdgeTAM | Backend) -> Backend:
    """The backend itself, or an eager fp32 backend over a model (left unfused: unchanged)."""
    if isinstance(model_or_backend, Backend):
        return model_or_backend
    return Backend(model_or_backend, fuse=False)
