"""Memory encoder: fuses a frame's features with its predicted mask into a memory feature map.

mask (B, 1, S, S) -> MaskDownSampler (conv3 s2 + LayerNorm2d + GELU, x log2(16) times, then
1x1) -> added to projected pixel features -> Fuser (ConvNeXt blocks) -> out_proj to mem_dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgetam_core.config import EdgeTAMConfig
from edgetam_core.model.common import LayerNorm2d, token_mlp


class MaskDownSampler(nn.Module):
    """(B, 1, S, S) mask -> (B, embed_dim, S/stride, S/stride); channels x4 per 2x downsampling."""

    def __init__(self, embed_dim: int, total_stride: int, stride: int = 2) -> None:
        super().__init__()
        steps = round(math.log(total_stride, stride))
        layers: list[nn.Module] = []
        channels = 1
        for _ in range(steps):
            out = channels * stride * stride
            layers += [
                nn.Conv2d(channels, out, kernel_size=3, stride=stride, padding=1),
                LayerNorm2d(out),
                nn.GELU(),
            ]
            channels = out
        layers.append(nn.Conv2d(channels, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(mask)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7 -> LayerNorm -> MLP x4 (GELU) -> layer scale, residual."""

    def __init__(self, dim: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).permute(0, 2, 3, 1)
        h = F.layer_norm(h, (h.shape[-1],), self.norm.weight, self.norm.bias, self.norm.eps)
        tokens = h.flatten(1, 2)  # (B, H*W, C): the MLP acts on each pixel alone
        h = (token_mlp(tokens, self.pwconv1, F.gelu, self.pwconv2) * self.gamma).reshape(h.shape)
        return x + h.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """State-dict names match the official ``memory_encoder.*`` keys."""

    def __init__(self, config: EdgeTAMConfig) -> None:
        super().__init__()
        d = config.hidden_dim
        self.mask_downsampler = MaskDownSampler(d, total_stride=config.backbone_stride)
        self.pix_feat_proj = nn.Conv2d(d, d, kernel_size=1)
        self.fuser = Fuser(d, num_layers=2)
        self.out_proj = nn.Conv2d(d, config.mem_dim, kernel_size=1)

    def forward(self, pix_feat: torch.Tensor, mask_for_mem: torch.Tensor) -> torch.Tensor:
        """Memory features.

        Args:
            pix_feat: (B, C, h, w) top-level image features (without memory conditioning).
            mask_for_mem: (B, 1, S, S) mask already mapped to the encoder's input range.
        Returns:
            (B, mem_dim, h, w).
        """
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(mask_for_mem)
        return self.out_proj(self.fuser(x))
