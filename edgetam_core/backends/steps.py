"""The four per-frame steps as modules with tensor-only signatures, for export.

Each wraps an ``EdgeTAM`` (sharing its weights) and fixes every shape the exported graph must
not vary. Objects are the batch dimension; the number of prompt points and of memory tokens
may vary (a fixed-shape runtime pads the bank to fixed slots and masks the padding).
"""

from __future__ import annotations

import torch
from torch import nn

from edgetam_core.model.edgetam import EdgeTAM


class ImageEncoderStep(nn.Module):
    """images (B, 3, S, S) normalized -> high_res_0 (B, C/8, 4h, 4w), high_res_1 (B, C/4, 2h, 2w),
    top (B, C, h, w), top_pos (1, C, h, w)."""

    def __init__(self, model: EdgeTAM) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.model.encode_image(images)
        return f.high_res[0], f.high_res[1], f.top, f.top_pos


class MemoryAttentionStep(nn.Module):
    """top (B, C, h, w), top_pos (1, C, h, w), memory (B, M, D), memory_pos (B, M, D),
    valid (B, M) bool, key_cos (M, R), key_sin (M, R) -> conditioned features (B, C, h, w).

    The memory tokens' rotary tables come in as inputs (``MemoryAttention.key_rope``), so the
    graph takes any bank layout: any M, padded or not (R = head_dim / 2).
    """

    def __init__(self, model: EdgeTAM) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        top: torch.Tensor,
        top_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        valid: torch.Tensor,
        key_cos: torch.Tensor,
        key_sin: torch.Tensor,
    ) -> torch.Tensor:
        return self.model.attend_memory(
            top, top_pos, memory, memory_pos, 0, 0, valid, (key_cos, key_sin)
        )


class DecoderStep(nn.Module):
    """Prompt encoder + mask decoder + object pointer and object-score heads.

    pix (B, C, h, w), high_res_0, high_res_1, point_coords (B, N, 2), point_labels (B, N) int32,
    mask_input (B, 1, 4h, 4w), use_mask (B,) bool -> masks (B, 1+K, 4h, 4w), ious (B, 1+K),
    obj_ptrs (B, 1+K, C), object_score (B,). Selection among the K+1 tokens stays outside.
    """

    def __init__(self, model: EdgeTAM) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        pix: torch.Tensor,
        high_res_0: torch.Tensor,
        high_res_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        use_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        raw = self.model.decode_raw(
            pix, [high_res_0, high_res_1], point_coords, point_labels, mask_input, use_mask
        )
        return raw.masks, raw.ious, raw.obj_ptrs, raw.object_score


class MemoryEncoderStep(nn.Module):
    """top (B, C, h, w), high_res_logits (B, 1, S, S), binarize (B,) bool
    -> memory tokens (B, tokens_per_memory, D)."""

    def __init__(self, model: EdgeTAM) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, top: torch.Tensor, high_res_logits: torch.Tensor, binarize: torch.Tensor
    ) -> torch.Tensor:
        return self.model.encode_memory(top, high_res_logits, binarize)


def example_inputs(
    model: EdgeTAM,
    num_memory_slots: int,
    num_pointer_slots: int,
    batch: int = 1,
    num_points: int = 1,
) -> dict[str, tuple[torch.Tensor, ...]]:
    """Example inputs of each step (for tracing and conversion), on the model's device."""
    c = model.config
    dev = next(model.parameters()).device
    h, s, d = c.feat_size, c.image_size, c.hidden_dim
    ptr_tokens = num_pointer_slots * c.ptr_tokens_per_pointer
    m = num_memory_slots * c.tokens_per_memory + ptr_tokens
    key_cos, key_sin = model.memory_attention.key_rope(
        num_memory_slots, ptr_tokens, dev, torch.float32
    )
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(dev)

    top = rand(batch, d, h, h)
    hr0, hr1 = rand(batch, d // 8, 4 * h, 4 * h), rand(batch, d // 4, 2 * h, 2 * h)
    return {
        "image_encoder": (rand(1, 3, s, s),),
        "memory_attention": (
            top,
            rand(1, d, h, h),
            rand(batch, m, c.mem_dim),
            rand(batch, m, c.mem_dim),
            torch.ones(batch, m, dtype=torch.bool, device=dev),
            key_cos,
            key_sin,
        ),
        "decoder": (
            top,
            hr0,
            hr1,
            torch.rand(batch, num_points, 2, generator=g).to(dev) * s,
            torch.ones(batch, num_points, dtype=torch.int32, device=dev),
            rand(batch, 1, 4 * h, 4 * h),
            torch.zeros(batch, dtype=torch.bool, device=dev),
        ),
        "memory_encoder": (
            top,
            rand(batch, 1, s, s),
            torch.zeros(batch, dtype=torch.bool, device=dev),
        ),
    }
