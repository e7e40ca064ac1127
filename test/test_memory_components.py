"""Parity of memory attention, memory encoder and spatial perceiver with the reference modules."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from edgetam_core.config import EdgeTAMConfig
from edgetam_core.model.edgetam import EdgeTAM
from edgetam_core.model.memory_attention import MemoryAttention
from edgetam_core.model.memory_encoder import MemoryEncoder
from edgetam_core.model.rope import apply_rope, axial_rope_tables
from edgetam_core.model.spatial_perceiver import SpatialPerceiver


def _sub_state(model: Any, prefix: str) -> dict[str, torch.Tensor]:
    return {
        k[len(prefix) + 1 :]: v for k, v in model.state_dict().items() if k.startswith(prefix + ".")
    }


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def test_real_rope_equals_complex_rotation() -> None:
    from sam2.modeling.position_encoding import apply_rotary_enc, compute_axial_cis

    torch.manual_seed(0)
    q = torch.randn(2, 1, 12 * 12, 32)
    k = torch.randn(2, 1, 12 * 12, 32)
    ref_q, ref_k = apply_rotary_enc(q, k, freqs_cis=compute_axial_cis(32, 12, 12))
    cos, sin = axial_rope_tables(32, 12, 12)
    assert _rel(apply_rope(q, cos, sin), ref_q) < 1e-6
    assert _rel(apply_rope(k, cos, sin), ref_k) < 1e-6


def test_rope_tables_are_cached() -> None:
    a = axial_rope_tables(64, 8, 8)
    assert axial_rope_tables(64, 8, 8)[0] is a[0]
    assert axial_rope_tables(64, 4, 4)[0].shape == (16, 32)


@pytest.mark.parametrize("num_mem,num_ptr_tokens", [(1, 4), (3, 12), (7, 64)])
def test_memory_attention_matches_reference(
    reference_model: Any, num_mem: int, num_ptr_tokens: int
) -> None:
    config = EdgeTAMConfig()
    ours = MemoryAttention(config).eval()
    ours.load_state_dict(_sub_state(reference_model, "memory_attention"))
    torch.manual_seed(num_mem)
    b, hw, m = 2, config.feat_size**2, num_mem * config.tokens_per_memory + num_ptr_tokens
    curr = torch.randn(b, hw, config.hidden_dim)
    curr_pos = torch.randn(1, hw, config.hidden_dim)
    memory = torch.randn(b, m, config.mem_dim)
    memory_pos = torch.randn(b, m, config.mem_dim)
    with torch.inference_mode():
        ref = reference_model.memory_attention(
            curr=[curr.transpose(0, 1)],
            curr_pos=[curr_pos.expand(b, -1, -1).transpose(0, 1)],
            memory=memory.transpose(0, 1),
            memory_pos=memory_pos.transpose(0, 1),
            num_obj_ptr_tokens=num_ptr_tokens,
            num_spatial_mem=num_mem,
        ).transpose(0, 1)
        got = ours(curr, curr_pos, memory, memory_pos, num_mem, num_ptr_tokens)
    assert _rel(got, ref) < 1e-5


def test_memory_attention_mask_ignores_padding(reference_model: Any) -> None:
    """A padded bank with a validity mask computes what the unpadded bank computes."""
    config = EdgeTAMConfig()
    ours = MemoryAttention(config).eval()
    ours.load_state_dict(_sub_state(reference_model, "memory_attention"))
    torch.manual_seed(3)
    hw, t = config.feat_size**2, config.tokens_per_memory
    curr, curr_pos = torch.randn(1, hw, 256), torch.randn(1, hw, 256)
    memory, memory_pos = torch.randn(1, 2 * t, 64), torch.randn(1, 2 * t, 64)
    with torch.inference_mode():
        unpadded = ours(curr, curr_pos, memory[:, :t], memory_pos[:, :t], 1, 0)
        valid = torch.zeros(1, 2 * t, dtype=torch.bool)
        valid[:, :t] = True
        padded = ours(curr, curr_pos, memory, memory_pos, 2, 0, memory_mask=valid)
    assert _rel(padded, unpadded) < 1e-5


def test_memory_attention_rejects_wrong_layout() -> None:
    config = EdgeTAMConfig(image_size=256, num_latents=16, num_latents_2d=16)
    ours = MemoryAttention(config)
    x = torch.zeros(1, 256, 256)
    with pytest.raises(ValueError, match="layout"):
        ours(x, x, torch.zeros(1, 5, 64), torch.zeros(1, 5, 64), 1, 0)


def test_memory_encoder_and_perceiver_match_reference(reference_model: Any) -> None:
    """Our step 4 against the reference's ``_encode_new_memory`` (batch 1: the reference's
    perceiver cannot run batches), and our batch of 2 against two single runs."""
    config = EdgeTAMConfig()
    ours = EdgeTAM(config).eval()
    ours.load_state_dict(reference_model.state_dict())
    torch.manual_seed(5)
    h = config.feat_size
    top = torch.randn(2, config.hidden_dim, h, h)
    logits = torch.randn(2, 1, config.image_size, config.image_size) * 4
    binarize = torch.tensor([True, False])
    with torch.inference_mode():
        got = ours.encode_memory(top, logits, binarize)
        for i in range(2):
            reference_model.binarize_mask_from_pts_for_mem_enc = True
            feats, pos = reference_model._encode_new_memory(
                current_vision_feats=[top[i : i + 1].flatten(2).permute(2, 0, 1)],
                feat_sizes=[(h, h)],
                pred_masks_high_res=logits[i : i + 1],
                object_score_logits=torch.ones(1, 1),
                is_mask_from_pts=bool(binarize[i]),
            )
            assert _rel(got[i : i + 1], feats) < 1e-5
            expected_pos = ours.memory_token_pos(torch.device("cpu"), torch.float32)
            assert _rel(expected_pos, pos[0]) < 1e-6


def test_spatial_perceiver_batches_like_single_runs() -> None:
    """Upstream's perceiver crashes for batch > 1; ours gives each item its single-run result."""
    config = EdgeTAMConfig(image_size=256, num_latents=16, num_latents_2d=16)
    torch.manual_seed(0)
    perceiver = SpatialPerceiver(config).eval()
    x = torch.randn(3, config.mem_dim, config.feat_size, config.feat_size)
    pos = torch.randn(1, config.mem_dim, config.feat_size, config.feat_size)
    with torch.inference_mode():
        batched = perceiver(x, pos)
        singles = torch.cat([perceiver(x[i : i + 1], pos) for i in range(3)])
    assert batched.shape == (3, config.tokens_per_memory, config.mem_dim)
    assert _rel(batched, singles) < 1e-6


def test_memory_encoder_output_shape_tiny_config() -> None:
    config = EdgeTAMConfig(image_size=256, num_latents=16, num_latents_2d=16)
    enc = MemoryEncoder(config)
    out = enc(torch.randn(2, 256, 16, 16), torch.randn(2, 1, 256, 256))
    assert out.shape == (2, config.mem_dim, 16, 16)
