"""Initializations for training from scratch (no pretrained weights anywhere).

``align_prompt_attention``: in SAM's mask decoder a prompt finds its object by attention. A
point token carries the position encoding of its click, and the image keys carry the
position encoding of their cell. The token -> image (and image -> token) cross-attentions
score ``(W_q (t + pe_click)) . (W_k (x + pe_cell))``. With independent random ``W_q`` and
``W_k`` that score says nothing about where the click is, and learning to attend where the
click is only pays once it already happens: on the synthetic world a from-scratch decoder
sat at a training IoU of ~0.26 (the union of the salient objects, clicks ignored) for 700
steps. Setting ``W_k = W_q`` (scaled) makes ``W_q^T W_k`` positive semi-definite, so matching
position encodings score high from step 0; the same probe then left the plateau by step 150
and reached 0.58 by step 250 (docs/training.md, trap 6). The architecture is unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from edgetam_core.model.edgetam import EdgeTAM
from edgetam_core.model.mask_decoder import Attention, TwoWayAttentionBlock


@torch.no_grad()
def align_prompt_attention(model: EdgeTAM, scale: float) -> int:
    """Tie the key projections of the decoder's cross-attentions to their query projections.

    Every token <-> image cross-attention of the two-way transformer (and the final
    token -> image attention) gets ``q_proj.weight *= scale`` and ``k_proj.weight =
    q_proj.weight``. Returns the number of attentions changed.
    """
    if scale <= 0:
        raise ValueError(f"align_prompt_attention scale must be > 0, not {scale}")
    transformer = model.sam_mask_decoder.transformer
    attentions: list[nn.Module] = [transformer.final_attn_token_to_image]
    for layer in transformer.layers:
        assert isinstance(layer, TwoWayAttentionBlock)
        attentions += [layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
    for attention in attentions:
        assert isinstance(attention, Attention)
        attention.q_proj.weight.mul_(scale)
        attention.k_proj.weight.copy_(attention.q_proj.weight)
    return len(attentions)
