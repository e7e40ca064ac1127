"""Mask decoder: parity with the reference (multimask, single mask with stability fallback)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from edgetam_core.config import EdgeTAMConfig
from edgetam_core.model.mask_decoder import MaskDecoder, select_best_mask

BATCH = 2
GRID = 32  # the decoder is size-agnostic; half the full 64x64 grid keeps the test fast


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.detach().abs().max().clamp_min(1e-12)
    return float((actual.detach().float() - expected.detach().float()).abs().max() / scale)


@pytest.fixture(scope="module")
def decoders(reference_model: Any) -> tuple[MaskDecoder, nn.Module, torch.Tensor]:
    reference = reference_model.sam_mask_decoder
    ours = MaskDecoder(EdgeTAMConfig())
    ours.load_state_dict(reference.state_dict(), strict=True)
    image_pe = reference_model.sam_prompt_encoder.pe_layer((GRID, GRID)).unsqueeze(0).detach()
    return ours.eval(), reference, image_pe


@pytest.fixture(scope="module")
def inputs() -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    return {
        "image_embeddings": randn(BATCH, 256, GRID, GRID),
        "sparse": randn(BATCH, 3, 256),
        "dense": randn(BATCH, 256, GRID, GRID),
        "high_res_features": [
            randn(BATCH, 32, 4 * GRID, 4 * GRID),
            randn(BATCH, 64, 2 * GRID, 2 * GRID),
        ],
    }


def _run_both(
    decoders: tuple[MaskDecoder, nn.Module, torch.Tensor], inputs: dict[str, Any], multimask: bool
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    ours, reference, image_pe = decoders
    with torch.no_grad():
        mine = ours(
            inputs["image_embeddings"],
            image_pe,
            inputs["sparse"],
            inputs["dense"],
            multimask,
            inputs["high_res_features"],
        )
        theirs = reference(
            image_embeddings=inputs["image_embeddings"],
            image_pe=image_pe,
            sparse_prompt_embeddings=inputs["sparse"],
            dense_prompt_embeddings=inputs["dense"],
            multimask_output=multimask,
            repeat_image=False,
            high_res_features=inputs["high_res_features"],
        )
    return mine, theirs


def test_state_dict_names_match(decoders: tuple[MaskDecoder, nn.Module, torch.Tensor]) -> None:
    assert list(decoders[0].state_dict()) == list(decoders[1].state_dict())


@pytest.mark.parametrize("multimask", [True, False])
def test_matches_reference(
    decoders: tuple[MaskDecoder, nn.Module, torch.Tensor], inputs: dict[str, Any], multimask: bool
) -> None:
    mine, theirs = _run_both(decoders, inputs, multimask)
    outputs = 3 if multimask else 1
    masks, ious, tokens, scores = mine
    assert masks.shape == (BATCH, outputs, 4 * GRID, 4 * GRID)
    assert ious.shape == (BATCH, outputs)
    assert tokens.shape == (BATCH, outputs, 256)
    assert scores.shape == (BATCH, 1)
    for ours, expected in zip(mine, theirs, strict=True):
        assert ours.shape == expected.shape
        assert rel_err(ours, expected) <= 1e-5


def test_single_mask_in_training_mode_uses_token_zero(
    decoders: tuple[MaskDecoder, nn.Module, torch.Tensor], inputs: dict[str, Any]
) -> None:
    ours, reference, _ = decoders
    ours.train()
    reference.train()
    try:
        mine, theirs = _run_both(decoders, inputs, multimask=False)
    finally:
        ours.eval()
        reference.eval()
    for a, b in zip(mine, theirs, strict=True):
        assert rel_err(a, b) <= 1e-5


def test_stability_fallback_matches_reference(
    decoders: tuple[MaskDecoder, nn.Module, torch.Tensor],
) -> None:
    """Item 0 has a stable single mask (kept), item 1 an unstable one (best multimask taken)."""
    ours, reference, _ = decoders
    generator = torch.Generator().manual_seed(3)
    masks = torch.randn(2, 4, 32, 32, generator=generator)
    masks[0, 0] = torch.where(masks[0, 0] > 0, 10.0, -10.0)
    masks[1, 0] *= 0.05
    ious = torch.rand(2, 4, generator=generator)
    picked, picked_ious = ours._stable_or_best_multimask(masks, ious)
    expected, expected_ious = reference._dynamic_multimask_via_stability(masks, ious)
    assert torch.equal(picked, expected) and torch.equal(picked_ious, expected_ious)
    assert torch.equal(picked[0, 0], masks[0, 0])
    best = int(ious[1, 1:].argmax()) + 1
    assert torch.equal(picked[1, 0], masks[1, best])


def test_high_res_projection_matches_reference(
    decoders: tuple[MaskDecoder, nn.Module, torch.Tensor],
) -> None:
    ours, reference, _ = decoders
    fpn_s4, fpn_s8 = torch.randn(BATCH, 256, 32, 32), torch.randn(BATCH, 256, 16, 16)
    with torch.no_grad():
        s0, s1 = ours.project_high_res_features(fpn_s4, fpn_s8)
        assert rel_err(s0, reference.conv_s0(fpn_s4)) <= 1e-5
        assert rel_err(s1, reference.conv_s1(fpn_s8)) <= 1e-5
    assert s0.shape == (BATCH, 32, 32, 32) and s1.shape == (BATCH, 64, 16, 16)


def test_select_best_mask() -> None:
    masks = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 2, 2)
    ious = torch.tensor([[0.1, 0.9, 0.2], [0.7, 0.1, 0.3]])
    tokens = torch.randn(2, 3, 8)
    best_masks, best_ious, best_tokens = select_best_mask(masks, ious, tokens)
    assert torch.equal(best_masks[:, 0], torch.stack((masks[0, 1], masks[1, 0])))
    assert torch.equal(best_ious[:, 0], torch.tensor([0.9, 0.7]))
    assert best_tokens is not None
    assert torch.equal(best_tokens, torch.stack((tokens[0, 1], tokens[1, 0])))
    _, _, single = select_best_mask(masks, ious, tokens[:, :1])
    assert single is not None and torch.equal(single, tokens[:, 0])
