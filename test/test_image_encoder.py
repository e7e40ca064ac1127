"""Image encoder: parity with the reference's RepViT + FPN neck, and inference-time fusing."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from edgetam_core.config import EdgeTAMConfig
from edgetam_core.model.image_encoder import ImageEncoder

SIZE = 256  # the encoder is size-agnostic; a small input keeps the test fast


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.detach().abs().max().clamp_min(1e-12)
    return float((actual.detach().float() - expected.detach().float()).abs().max() / scale)


@pytest.fixture(scope="module")
def encoders(reference_model: Any) -> tuple[ImageEncoder, nn.Module]:
    reference = reference_model.image_encoder
    ours = ImageEncoder(EdgeTAMConfig())
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours.eval(), reference


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, SIZE, SIZE, generator=generator)


def test_state_dict_names_match(encoders: tuple[ImageEncoder, nn.Module]) -> None:
    ours, reference = encoders
    assert list(ours.state_dict()) == list(reference.state_dict())


def test_matches_reference(encoders: tuple[ImageEncoder, nn.Module], images: torch.Tensor) -> None:
    ours, reference = encoders
    with torch.no_grad():
        features, encodings = ours(images)
        expected = reference(images)
    assert len(features) == len(encodings) == 3
    for level, (feature, encoding) in enumerate(zip(features, encodings, strict=True)):
        side = SIZE // 4 // 2**level
        assert feature.shape == encoding.shape == (2, 256, side, side)
        assert rel_err(feature, expected["backbone_fpn"][level]) <= 1e-5
        assert rel_err(encoding, expected["vision_pos_enc"][level]) <= 1e-5


def _randomize_batchnorm(module: nn.Module, seed: int) -> None:
    """Give every BatchNorm non-trivial statistics so that folding them is really exercised."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, nn.BatchNorm2d):
                shape = norm.running_mean.shape
                norm.running_mean.copy_(0.1 * torch.randn(shape, generator=generator))
                norm.running_var.copy_(0.5 + torch.rand(shape, generator=generator))
                norm.weight.copy_(1.0 + 0.1 * torch.randn(shape, generator=generator))
                norm.bias.copy_(0.1 * torch.randn(shape, generator=generator))


def test_fuse_preserves_outputs(
    encoders: tuple[ImageEncoder, nn.Module], images: torch.Tensor
) -> None:
    model = copy.deepcopy(encoders[0])
    _randomize_batchnorm(model, seed=1)
    with torch.no_grad():
        before, _ = model(images)
        assert model.fuse() is model
        after, encodings = model(images)
    assert model.is_fused
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(model.state_dict()) < len(encoders[0].state_dict())
    for fused, unfused in zip(after, before, strict=True):
        assert rel_err(fused, unfused) <= 1e-5
    assert len(encodings) == 3
    assert model.fuse() is model  # idempotent


def test_fused_model_folds_the_fine_laterals_into_the_high_res_projections() -> None:
    from edgetam_core.config import tiny_config
    from edgetam_core.model.edgetam import EdgeTAM
    from edgetam_core.model.image_encoder import PixelMLP

    torch.manual_seed(0)
    plain = EdgeTAM(tiny_config()).eval()
    _randomize_batchnorm(plain, seed=2)
    fused = copy.deepcopy(plain).fuse()
    assert fused.image_encoder.neck.passthrough == frozenset({0, 1})
    assert any(isinstance(m, PixelMLP) for m in fused.modules())
    size = plain.config.image_size
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = plain.encode_image(images), fused.encode_image(images)
    for x, y in zip([*a.high_res, a.top, a.top_pos], [*b.high_res, b.top, b.top_pos], strict=True):
        assert x.shape == y.shape
        assert rel_err(y, x) <= 1e-5
    assert fused.fuse() is fused  # idempotent: nothing folded twice
    assert fused.image_encoder.neck.passthrough == frozenset({0, 1})


def test_fold_lateral_refuses_levels_of_the_top_down_path() -> None:
    encoder = ImageEncoder(EdgeTAMConfig())
    consumer = nn.Conv2d(256, 32, kernel_size=1)
    with pytest.raises(ValueError, match="top-down"):
        encoder.neck.fold_lateral(2, consumer)  # receives the stride-32 map
    with pytest.raises(ValueError, match="1x1"):
        encoder.neck.fold_lateral(0, nn.Conv2d(256, 32, kernel_size=3, padding=1))
    assert encoder.neck.passthrough == frozenset()


def test_token_mlp_in_slices_equals_the_plain_mlp(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.nn.functional as F

    from edgetam_core.model import common

    torch.manual_seed(0)
    first, second = nn.Linear(8, 32), nn.Linear(32, 8)
    x = torch.randn(3, 150, 8)
    expected = second(F.gelu(first(x))).detach()
    calls: list[int] = []
    counting_first = nn.Linear(8, 32)
    counting_first.load_state_dict(first.state_dict())
    counting_first.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[1]))
    monkeypatch.setattr(common, "MLP_CHUNK_ELEMENTS", 32 * 3 * 100)  # 100 tokens per slice
    with torch.no_grad():
        sliced = common.token_mlp(x, counting_first, F.gelu, second)
    assert calls == [100, 50]
    torch.testing.assert_close(sliced, expected, rtol=0, atol=1e-6)
    calls.clear()
    with torch.enable_grad():  # training: one plain pass, gradients flow
        out = common.token_mlp(x, counting_first, F.gelu, second)
        out.sum().backward()
    assert calls == [150]
    assert counting_first.weight.grad is not None
