"""One frozen configuration object: the single source of truth for every size in the model.

Field names follow the paper and the official ``edgetam.yaml``; the defaults are that file's
values. Nothing else in the package hard-codes an image size, a feature grid or a bank size.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgetam_core.errors import CheckpointError


@dataclass(frozen=True)
class EdgeTAMConfig:
    """Hyper-parameters of EdgeTAM (defaults = the official ``edgetam.yaml``)."""

    # Image encoder: RepViT trunk (timm, features_only) + FPN neck.
    image_size: int = 1024
    backbone_stride: int = 16
    trunk_name: str = "repvit_m1"
    backbone_channels: tuple[int, ...] = (48, 96, 192, 384)
    # Blocks per trunk stage. None: the timm variant's own depths and widths (official). A
    # tuple builds the same RepViT architecture with these depths and ``backbone_channels`` as
    # stage widths (smaller models, e.g. the bundled demo model); randomly initialized.
    trunk_depth: tuple[int, ...] | None = None
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    scalp: int = 1
    hidden_dim: int = 256
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    # Memory attention (self-attention with 2D RoPE, cross-attention to the bank).
    memory_attention_layers: int = 2
    memory_attention_ffn_dim: int = 2048
    memory_attention_heads: int = 1
    rope_theta: float = 10000.0

    # Memory encoder + 2D Spatial Perceiver.
    mem_dim: int = 64
    perceiver_depth: int = 2
    perceiver_heads: int = 1
    perceiver_dim_head: int = 64
    perceiver_ff_mult: int = 4
    num_latents: int = 256
    num_latents_2d: int = 256

    # SAM heads.
    mask_decoder_depth: int = 2
    mask_decoder_mlp_dim: int = 2048
    mask_decoder_heads: int = 8
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1

    # Memory bank and its policy.
    num_maskmem: int = 7
    max_obj_ptrs_in_encoder: int = 16
    max_cond_frames_in_attn: int = -1
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    binarize_mask_from_pts_for_mem_enc: bool = True
    fill_hole_area: int = 8

    def __post_init__(self) -> None:
        problems = []
        if self.image_size % self.backbone_stride:
            problems.append("image_size must be a multiple of backbone_stride")
        side = math.isqrt(self.num_latents_2d)
        if side * side != self.num_latents_2d:
            problems.append("num_latents_2d must be a perfect square")
        elif self.feat_size % side:
            problems.append("the feature grid must split into sqrt(num_latents_2d) windows")
        if self.hidden_dim % self.mem_dim:
            problems.append("hidden_dim must be a multiple of mem_dim (object pointer split)")
        if self.trunk_depth is not None and len(self.trunk_depth) != len(self.backbone_channels):
            problems.append("trunk_depth needs one entry per backbone_channels entry")
        if self.num_maskmem < 1:
            problems.append("num_maskmem must be >= 1")
        if problems:
            raise ValueError("invalid EdgeTAMConfig: " + "; ".join(problems))

    # Derived sizes -------------------------------------------------------------------------
    @property
    def feat_size(self) -> int:
        """Side of the stride-16 feature grid (64 for 1024 input)."""
        return self.image_size // self.backbone_stride

    @property
    def low_res_mask_size(self) -> int:
        """Side of the decoder's low-resolution logits (256 for 1024 input)."""
        return self.feat_size * 4

    @property
    def perceiver_grid(self) -> int:
        """Side of the 2D latent grid (16 for 256 2D latents)."""
        return math.isqrt(self.num_latents_2d)

    @property
    def tokens_per_memory(self) -> int:
        """Tokens each memory frame contributes after the perceiver (512 by default)."""
        return self.num_latents + self.num_latents_2d

    @property
    def ptr_tokens_per_pointer(self) -> int:
        """Each hidden_dim object pointer is split into this many mem_dim tokens."""
        return self.hidden_dim // self.mem_dim

    # Serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EdgeTAMConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise CheckpointError(f"unknown config fields: {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)

    def replace(self, **changes: Any) -> EdgeTAMConfig:
        return dataclasses.replace(self, **changes)


def tiny_config() -> EdgeTAMConfig:
    """A small config of the same architecture for fast tests (256 px input, 16x16 grid)."""
    return EdgeTAMConfig(image_size=256, num_latents=16, num_latents_2d=16)
