"""Position encodings: parity with the reference and per-size caching."""

from __future__ import annotations

from typing import Any

import pytest
import sam2.modeling.position_encoding as sam2_pe
import torch

from edgetam_core.model.position_encoding import PositionEmbeddingRandom, PositionEmbeddingSine


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.detach().abs().max().clamp_min(1e-12)
    return float((actual.detach().float() - expected.detach().float()).abs().max() / scale)


@pytest.mark.parametrize(("channels", "height", "width"), [(256, 16, 24), (64, 64, 64), (8, 3, 5)])
def test_sine_matches_reference(channels: int, height: int, width: int) -> None:
    x = torch.randn(2, 7, height, width)
    ours = PositionEmbeddingSine(channels)(x)
    expected = sam2_pe.PositionEmbeddingSine(channels)(x)
    assert ours.shape == (2, channels, height, width)
    assert rel_err(ours, expected) <= 1e-5


def test_sine_is_cached_per_size() -> None:
    encoding = PositionEmbeddingSine(32)
    first = encoding(torch.zeros(2, 1, 8, 8))
    again = encoding(torch.zeros(3, 1, 8, 8))
    assert first.data_ptr() == again.data_ptr()  # same table, just expanded to the batch
    assert encoding.table(8, 8, torch.device("cpu"), torch.float32) is encoding.table(
        8, 8, torch.device("cpu"), torch.float32
    )
    other = encoding(torch.zeros(1, 1, 4, 6))
    assert other.shape == (1, 32, 4, 6)
    assert rel_err(other, sam2_pe.PositionEmbeddingSine(32)(torch.zeros(1, 1, 4, 6))) <= 1e-5
    # dtype is part of the key
    half = encoding(torch.zeros(1, 1, 8, 8, dtype=torch.bfloat16))
    assert half.dtype == torch.bfloat16
    assert len(encoding._tables) == 3


def _pair(channels: int = 128) -> tuple[PositionEmbeddingRandom, Any]:
    reference = sam2_pe.PositionEmbeddingRandom(channels // 2)
    ours = PositionEmbeddingRandom(channels // 2)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours, reference


def test_random_grid_and_coords_match_reference() -> None:
    ours, reference = _pair()
    for size in [(64, 64), (16, 24)]:
        grid = ours(size)
        assert grid.shape == (128, *size)
        assert rel_err(grid, reference(size)) <= 1e-5
    coords = torch.rand(2, 5, 2) * torch.tensor([640.0, 480.0])
    coords_before = coords.clone()
    encoded = ours.forward_with_coords(coords, (480, 640))
    assert encoded.shape == (2, 5, 128)
    assert rel_err(encoded, reference.forward_with_coords(coords, (480, 640))) <= 1e-5
    assert torch.equal(coords, coords_before)


def test_random_grid_cache_follows_weights() -> None:
    ours, _ = _pair(64)
    grid = ours((8, 8))
    assert ours((8, 8)) is grid
    other = ours((4, 4))
    assert other.shape == (64, 4, 4)

    # Loading new weights must not serve the stale table.
    fresh = sam2_pe.PositionEmbeddingRandom(32)
    ours.load_state_dict(fresh.state_dict(), strict=True)
    reloaded = ours((8, 8))
    assert reloaded is not grid
    assert rel_err(reloaded, fresh((8, 8))) <= 1e-5

    # An ordinary in-place update bumps the tensor version, which is part of the cache key.
    with torch.no_grad():
        ours.positional_encoding_gaussian_matrix.mul_(2.0)
    fresh.positional_encoding_gaussian_matrix.mul_(2.0)
    assert rel_err(ours((8, 8)), fresh((8, 8))) <= 1e-5

    # Edits through .data bypass version tracking: clear_cache() is the documented remedy.
    ours.positional_encoding_gaussian_matrix.data.mul_(0.5)
    fresh.positional_encoding_gaussian_matrix.data.mul_(0.5)
    ours.clear_cache()
    assert rel_err(ours((8, 8)), fresh((8, 8))) <= 1e-5
