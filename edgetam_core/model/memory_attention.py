"""Memory attention: the current frame's features attend to themselves and to the memory bank.

Two pre-norm layers, each self-attention (2D RoPE over the feature grid) -> cross-attention
to memory tokens -> ReLU FFN. Memory tokens come in a fixed layout (see ``MemoryLayout``):
for each spatial memory, ``num_latents`` global perceiver latents (no RoPE) then
``num_latents_2d`` 2D latents (RoPE on their grid); then object-pointer tokens (no RoPE).
All tensors are batch-first: (B, tokens, channels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgetam_core.config import EdgeTAMConfig
from edgetam_core.model.common import token_mlp
from edgetam_core.model.rope import apply_rope, axial_rope_tables


class RoPEAttention(nn.Module):
    """Multi-head attention with optional rotary encodings on queries and keys.

    ``q`` (B, Nq, C), ``k``/``v`` (B, Nk, kv_in_dim) -> (B, Nq, C). Rotary tables are
    (N, head_dim / 2) cos/sin pairs; a key position with cos=1, sin=0 is left unrotated.
    """

    def __init__(self, embedding_dim: int, num_heads: int, kv_in_dim: int | None = None) -> None:
        super().__init__()
        kv_dim = kv_in_dim if kv_in_dim is not None else embedding_dim
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embedding_dim, embedding_dim)
        self.k_proj = nn.Linear(kv_dim, embedding_dim)
        self.v_proj = nn.Linear(kv_dim, embedding_dim)
        self.out_proj = nn.Linear(embedding_dim, embedding_dim)

    @property
    def head_dim(self) -> int:
        return self.q_proj.out_features // self.num_heads

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        q_rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        k_rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        qh = self._heads(self.q_proj(q))
        kh = self._heads(self.k_proj(k))
        vh = self._heads(self.v_proj(v))
        if q_rope is not None:
            qh = apply_rope(qh, *q_rope)
        if k_rope is not None:
            kh = apply_rope(kh, *k_rope)
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=attn_mask)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class MemoryAttentionLayer(nn.Module):
    """One pre-norm layer: RoPE self-attention, RoPE cross-attention to memory, FFN."""

    def __init__(self, config: EdgeTAMConfig) -> None:
        super().__init__()
        d = config.hidden_dim
        heads = config.memory_attention_heads
        self.self_attn = RoPEAttention(d, heads)
        self.cross_attn_image = RoPEAttention(d, heads, kv_in_dim=config.mem_dim)
        self.linear1 = nn.Linear(d, config.memory_attention_ffn_dim)
        self.linear2 = nn.Linear(config.memory_attention_ffn_dim, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_keys: torch.Tensor,
        q_rope: tuple[torch.Tensor, torch.Tensor],
        k_rope: tuple[torch.Tensor, torch.Tensor],
        attn_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, q_rope=q_rope, k_rope=q_rope)
        h = self.norm2(x)
        x = x + self.cross_attn_image(
            h, memory_keys, memory, q_rope=q_rope, k_rope=k_rope, attn_mask=attn_mask
        )
        h = self.norm3(x)
        return x + token_mlp(h, self.linear1, F.relu, self.linear2)


class MemoryAttention(nn.Module):
    """Conditions the current frame's top-level features on the memory bank.

    State-dict names match the official ``memory_attention.*`` keys.
    """

    def __init__(self, config: EdgeTAMConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(config) for _ in range(config.memory_attention_layers)
        )
        self.norm = nn.LayerNorm(config.hidden_dim)
        self._key_rope_cache: dict[
            tuple[int, int, torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]
        ] = {}

    def query_rope(
        self, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary tables of the current frame's feature grid."""
        c = self.config
        head_dim = c.hidden_dim // c.memory_attention_heads
        return axial_rope_tables(head_dim, c.feat_size, c.feat_size, c.rope_theta, device, dtype)

    def key_rope(
        self, num_spatial_mem: int, num_ptr_tokens: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary tables of a memory-token sequence; identity rotation where no RoPE applies."""
        key = (num_spatial_mem, num_ptr_tokens, device, dtype)
        cached = self._key_rope_cache.get(key)
        if cached is not None:
            return cached
        c = self.config
        head_dim = c.hidden_dim // c.memory_attention_heads
        cos2d, sin2d = axial_rope_tables(
            head_dim, c.perceiver_grid, c.perceiver_grid, c.rope_theta, device, dtype
        )
        ones = torch.ones(c.num_latents, head_dim // 2, device=device, dtype=dtype)
        zeros = torch.zeros_like(ones)
        per_mem_cos = torch.cat([ones, cos2d])
        per_mem_sin = torch.cat([zeros, sin2d])
        ptr_ones = torch.ones(num_ptr_tokens, head_dim // 2, device=device, dtype=dtype)
        cos = torch.cat([per_mem_cos.repeat(num_spatial_mem, 1), ptr_ones])
        sin = torch.cat([per_mem_sin.repeat(num_spatial_mem, 1), torch.zeros_like(ptr_ones)])
        self._key_rope_cache[key] = (cos, sin)
        return cos, sin

    def forward(
        self,
        curr: torch.Tensor,
        curr_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_spatial_mem: int,
        num_obj_ptr_tokens: int,
        memory_mask: torch.Tensor | None = None,
        key_rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Fuse features with memory.

        Args:
            curr: (B, HW, C) current frame features (top level, flattened row-major).
            curr_pos: (B or 1, HW, C) their sine position encoding.
            memory: (B, M, mem_dim) memory tokens in the layout described in the module doc.
            memory_pos: (B or 1, M, mem_dim) memory position encodings (incl. temporal).
            num_spatial_mem: number of memory frames in ``memory``.
            num_obj_ptr_tokens: number of trailing object-pointer tokens.
            memory_mask: optional (B, M) bool, True where a memory token is valid.
            key_rope: optional (M, head_dim / 2) cos and sin tables of the memory tokens
                (``key_rope()``); given as inputs, they let an exported graph take any M.
        Returns:
            (B, HW, C) memory-conditioned features.
        """
        x = curr + 0.1 * curr_pos
        keys = memory + memory_pos
        q_rope = self.query_rope(x.device, x.dtype)
        if key_rope is None:
            expected = num_spatial_mem * self.config.tokens_per_memory + num_obj_ptr_tokens
            if memory.shape[1] != expected:
                raise ValueError(f"memory has {memory.shape[1]} tokens, layout expects {expected}")
            key_rope = self.key_rope(num_spatial_mem, num_obj_ptr_tokens, x.device, x.dtype)
        attn_mask = None
        if memory_mask is not None:
            attn_mask = memory_mask[:, None, None, :]
        for layer in self.layers:
            x = layer(x, memory, keys, q_rope, key_rope, attn_mask)
        return self.norm(x)
