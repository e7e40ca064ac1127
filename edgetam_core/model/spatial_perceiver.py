"""2D Spatial Perceiver: compresses a memory feature map into a few hundred tokens.

Two groups of learned latents read the (B, C, h, w) memory map through shared Perceiver
layers: ``num_latents`` global latents attend to the whole map (with its position encoding
added to keys and values), and ``num_latents_2d`` 2D latents each attend only to their own
window of a g x g partition of the map (g = sqrt(num_latents_2d)), which keeps their spatial
order so they can carry 2D RoPE in memory attention. Output: (B, num_latents +
num_latents_2d, C) tokens and their position encodings (zeros for the global latents).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgetam_core.config import EdgeTAMConfig
from edgetam_core.model.position_encoding import PositionEmbeddingSine


def _feed_forward(dim: int, mult: int) -> nn.Sequential:
    # Indices 0/1/3 are the official state-dict names (2 is the parameter-free GELU).
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, dim * mult, bias=False),
        nn.GELU(),
        nn.Linear(dim * mult, dim, bias=False),
    )


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head SDPA on (B, N, heads * d) tensors."""
    qh, kh, vh = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))
    return F.scaled_dot_product_attention(qh, kh, vh).transpose(1, 2).flatten(2)


class PerceiverAttention(nn.Module):
    """Latents (B, L, C) attend to inputs (B, N, C); optional ``pos`` added to keys and values."""

    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm_x = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(
        self, latents: torch.Tensor, x: torch.Tensor, pos: torch.Tensor | None = None
    ) -> torch.Tensor:
        q = self.to_q(self.norm_latents(latents))
        k, v = self.to_kv(self.norm_x(x)).chunk(2, dim=-1)
        if pos is not None:
            k, v = k + pos, v + pos
        return self.to_out(_attend(q, k, v, self.heads))


class SelfAttention(nn.Module):
    """Pre-norm self-attention among latents."""

    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        k, v = self.to_kv(h).chunk(2, dim=-1)
        return self.to_out(_attend(self.to_q(h), k, v, self.heads))


class PerceiverLayer(nn.Module):
    """Cross-attention to inputs + FFN, then self-attention among latents + FFN (residuals)."""

    def __init__(self, dim: int, dim_head: int, heads: int, ff_mult: int) -> None:
        super().__init__()
        self.attn = PerceiverAttention(dim, dim_head, heads)
        self.ff = _feed_forward(dim, ff_mult)
        self.self_attn = SelfAttention(dim, dim_head, heads)
        self.self_ff = _feed_forward(dim, ff_mult)

    def forward(
        self, latents: torch.Tensor, x: torch.Tensor, pos: torch.Tensor | None = None
    ) -> torch.Tensor:
        latents = latents + self.attn(latents, x, pos)
        latents = latents + self.ff(latents)
        latents = latents + self.self_attn(latents)
        return latents + self.self_ff(latents)


class SpatialPerceiver(nn.Module):
    """State-dict names match the official ``spatial_perceiver.*`` keys."""

    def __init__(self, config: EdgeTAMConfig) -> None:
        super().__init__()
        dim = config.mem_dim
        self.config = config
        self.latents = nn.Parameter(torch.randn(config.num_latents, dim))
        self.latents_2d = nn.Parameter(torch.randn(config.num_latents_2d, dim))
        self.layers = nn.ModuleList(
            PerceiverLayer(
                dim, config.perceiver_dim_head, config.perceiver_heads, config.perceiver_ff_mult
            )
            for _ in range(config.perceiver_depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.position_encoding = PositionEmbeddingSine(dim)

    def output_pos(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(1, num_latents + num_latents_2d, C) position encodings of the output tokens.

        They depend only on the config, so the memory bank never stores them.
        """
        g = self.config.perceiver_grid
        probe = torch.empty(1, self.config.mem_dim, g, g, device=device, dtype=dtype)
        pos_2d = self.position_encoding(probe).flatten(2).transpose(1, 2)
        zeros = torch.zeros(
            1, self.config.num_latents, self.config.mem_dim, device=device, dtype=dtype
        )
        return torch.cat([zeros, pos_2d.to(dtype)], dim=1)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Compress memory maps.

        Args:
            x: (B, C, h, w) memory features.
            pos: (B or 1, C, h, w) their position encoding (used by the global latents).
        Returns:
            (B, num_latents + num_latents_2d, C) memory tokens.
        """
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        pos_tokens = pos.flatten(2).transpose(1, 2).expand(b, -1, -1)
        global_latents = self.latents.unsqueeze(0).expand(b, -1, -1)
        for layer in self.layers:
            global_latents = layer(global_latents, tokens, pos_tokens)

        # Each 2D latent reads one window: -> (B * g * g, s * s, C), windows and the pixels in
        # them in row-major order. (Reshapes stay at rank <= 5 for Core ML.)
        g = self.config.perceiver_grid
        s = h // g
        windows = x.reshape(b * c, g, s, g, s).permute(0, 1, 3, 2, 4)
        windows = windows.reshape(b, c, g * g, s * s).permute(0, 2, 3, 1)
        windows = windows.reshape(b * g * g, s * s, c)
        latents_2d = self.latents_2d.repeat(b, 1).unsqueeze(1)
        for layer in self.layers:
            latents_2d = layer(latents_2d, windows)
        latents_2d = latents_2d.reshape(b, g * g, c)
        return self.norm(torch.cat([global_latents, latents_2d], dim=1))
