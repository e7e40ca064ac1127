"""Prompt encoder: parity with the reference for every prompt combination."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from edgetam_core.config import EdgeTAMConfig, tiny_config
from edgetam_core.model.prompt_encoder import PromptEncoder


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.detach().abs().max().clamp_min(1e-12)
    return float((actual.detach().float() - expected.detach().float()).abs().max() / scale)


def _build(config: EdgeTAMConfig) -> PromptEncoder:
    grid = config.feat_size
    return PromptEncoder(
        config.hidden_dim,
        (grid, grid),
        (config.image_size, config.image_size),
        config.mask_in_chans,
    )


@pytest.fixture(scope="module")
def encoders(reference_model: Any) -> tuple[PromptEncoder, nn.Module]:
    reference = reference_model.sam_prompt_encoder
    ours = _build(EdgeTAMConfig())
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours.eval(), reference


def _compare(
    pair: tuple[PromptEncoder, nn.Module],
    points: tuple[torch.Tensor, torch.Tensor] | None,
    boxes: torch.Tensor | None,
    masks: torch.Tensor | None,
    expected_tokens: int,
) -> None:
    ours, reference = pair
    with torch.no_grad():
        sparse, dense = ours(points, boxes, masks)
        ref_sparse, ref_dense = reference(points=points, boxes=boxes, masks=masks)
    assert sparse.shape == ref_sparse.shape
    assert sparse.shape[1] == expected_tokens
    assert dense.shape == ref_dense.shape
    if sparse.numel():
        assert rel_err(sparse, ref_sparse) <= 1e-5
    assert rel_err(dense, ref_dense) <= 1e-5


def _clicks(batch: int, count: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    coords = torch.rand(batch, count, 2, generator=generator) * size
    labels = torch.randint(0, 2, (batch, count), generator=generator, dtype=torch.int32)
    labels[0, -1] = -1  # an explicit padding point in the middle of a batch
    return coords, labels


def _boxes(batch: int, size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    corners = torch.rand(batch, 2, 2, generator=generator) * size
    return torch.cat((corners.min(dim=1).values, corners.max(dim=1).values), dim=1)


def test_state_dict_names_match(encoders: tuple[PromptEncoder, nn.Module]) -> None:
    ours, reference = encoders
    assert list(ours.state_dict()) == list(reference.state_dict())
    assert ours.mask_input_size == tuple(reference.mask_input_size) == (256, 256)


def test_points_only(encoders: tuple[PromptEncoder, nn.Module]) -> None:
    _compare(encoders, _clicks(2, 3, 1024, seed=0), None, None, expected_tokens=4)


def test_box_only(encoders: tuple[PromptEncoder, nn.Module]) -> None:
    _compare(encoders, None, _boxes(2, 1024, seed=1), None, expected_tokens=2)


def test_box_as_corner_points(encoders: tuple[PromptEncoder, nn.Module]) -> None:
    """The video predictor passes a box as two points labelled 2 and 3, before the clicks."""
    box = _boxes(2, 1024, seed=2).reshape(2, 2, 2)
    coords, labels = _clicks(2, 2, 1024, seed=3)
    corner_labels = torch.tensor([[2, 3], [2, 3]], dtype=torch.int32)
    points = (torch.cat((box, coords), dim=1), torch.cat((corner_labels, labels), dim=1))
    _compare(encoders, points, None, None, expected_tokens=5)


def test_points_and_box(encoders: tuple[PromptEncoder, nn.Module]) -> None:
    # with a box, no padding point is appended after the clicks
    _compare(encoders, _clicks(2, 2, 1024, seed=4), _boxes(2, 1024, seed=5), None, 4)


def test_mask_input(encoders: tuple[PromptEncoder, nn.Module]) -> None:
    masks = torch.randn(2, 1, 256, 256, generator=torch.Generator().manual_seed(6)) * 5
    _compare(encoders, _clicks(2, 1, 1024, seed=7), None, masks, expected_tokens=2)
    _compare(encoders, None, None, masks, expected_tokens=0)


def test_padding_only_points(encoders: tuple[PromptEncoder, nn.Module]) -> None:
    """What the model feeds when a frame has no clicks: one (0, 0) point labelled -1."""
    points = (torch.zeros(2, 1, 2), -torch.ones(2, 1, dtype=torch.int32))
    _compare(encoders, points, None, None, expected_tokens=2)


def test_nothing(encoders: tuple[PromptEncoder, nn.Module]) -> None:
    _compare(encoders, None, None, None, expected_tokens=0)


def test_dense_pe_matches_and_is_cached(encoders: tuple[PromptEncoder, nn.Module]) -> None:
    ours, reference = encoders
    pe = ours.get_dense_pe()
    assert pe.shape == (1, 256, 64, 64)
    assert rel_err(pe, reference.get_dense_pe()) <= 1e-5
    assert ours.get_dense_pe().data_ptr() == pe.data_ptr()


def test_tiny_sizes_match_reference() -> None:
    """Sizes come from the arguments: the tiny config (16x16 grid, 256 px input) also matches."""
    from sam2.modeling.sam.prompt_encoder import PromptEncoder as ReferencePromptEncoder

    config = tiny_config()
    ours = _build(config)
    reference = ReferencePromptEncoder(
        embed_dim=config.hidden_dim,
        image_embedding_size=(16, 16),
        input_image_size=(256, 256),
        mask_in_chans=config.mask_in_chans,
    )
    ours.load_state_dict(reference.state_dict(), strict=True)
    masks = torch.randn(2, 1, 64, 64)
    _compare((ours, reference), _clicks(2, 3, 256, seed=8), _boxes(2, 256, seed=9), masks, 5)
    assert rel_err(ours.get_dense_pe(), reference.get_dense_pe()) <= 1e-5
