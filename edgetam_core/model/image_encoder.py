"""Image encoder: RepViT trunk (timm, ``features_only``) followed by a light FPN neck.

State-dict layout (under the top-level ``image_encoder.`` prefix):
``trunk.body.*`` (timm's RepViT feature extractor, with unfused BatchNorm) and
``neck.convs.N.conv.{weight,bias}``, where ``N = 0`` is the lateral 1x1 conv of the *deepest*
trunk level and ``N = L - 1`` the one of the finest.
"""

from __future__ import annotations

from typing import Any, cast

import timm
import torch
import torch.nn.functional as F
from torch import nn

from edgetam_core.config import EdgeTAMConfig
from edgetam_core.model.common import token_mlp
from edgetam_core.model.position_encoding import PositionEmbeddingSine


class Trunk(nn.Module):
    """The timm backbone, held as ``body`` so its weights live under ``trunk.body.*``."""

    def __init__(
        self, name: str, channels: tuple[int, ...], depth: tuple[int, ...] | None = None
    ) -> None:
        super().__init__()
        # With ``depth`` the variant is rebuilt with these stage depths and ``channels`` as
        # stage widths (same block types and state-dict names, fewer/narrower blocks).
        overrides: dict[str, Any] = (
            {} if depth is None else {"embed_dim": tuple(channels), "depth": tuple(depth)}
        )
        self.body = timm.create_model(
            name,
            pretrained=False,
            features_only=True,
            out_indices=tuple(range(len(channels))),
            **overrides,
        )
        found = tuple(cast(Any, self.body).feature_info.channels())
        if found != tuple(channels):
            raise ValueError(f"trunk {name!r} has channels {found}, config says {channels}")

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) -> one map per level, finest first: (B, C_i, S / 2^(i+2), ...)."""
        return list(self.body(images))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold BatchNorm and parallel RepVGG branches of every timm block that can ``fuse``."""
        _fuse_children(self.body)


def _fuse_children(parent: nn.Module) -> None:
    for name, child in list(parent.named_children()):
        fuse = getattr(child, "fuse", None)
        if callable(fuse):
            replacement = fuse()
            setattr(parent, name, replacement)
            _fuse_children(replacement)
        else:
            _fuse_children(child)
            if _is_pointwise_mlp(child):  # only once its ConvNorms are folded
                conv1, act, conv2 = (cast(nn.Module, getattr(child, n)) for n in _MLP_PARTS)
                setattr(parent, name, PixelMLP(cast(nn.Conv2d, conv1), act, cast(nn.Conv2d, conv2)))


_MLP_PARTS = ("conv1", "act", "conv2")


def _is_pointwise_mlp(module: nn.Module) -> bool:
    """A RepViT channel mixer whose two 1x1 ConvNorms are already folded into plain convs."""
    convs = [getattr(module, n, None) for n in ("conv1", "conv2")]
    return (
        len(list(module.children())) == 3
        and isinstance(getattr(module, "act", None), nn.Module)
        and all(
            isinstance(c, nn.Conv2d)
            and c.kernel_size == (1, 1)
            and c.groups == 1
            and c.stride == (1, 1)
            and c.bias is not None
            for c in convs
        )
    )


class PixelMLP(nn.Module):
    """``conv2(act(conv1(x)))`` with two 1x1 convs, as a per-pixel MLP over ``token_mlp``.

    The fused form of RepViT's channel mixer: on channels-last maps the pixels are already
    rows of a matrix, and slicing them keeps the widened activation (96 channels at S/4 in
    the first stage) in cache instead of streaming it through memory three times.
    """

    def __init__(self, conv1: nn.Conv2d, act: nn.Module, conv2: nn.Conv2d) -> None:
        super().__init__()
        self.fc1 = _as_linear(conv1)
        self.act = act
        self.fc2 = _as_linear(conv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(b, h * w, -1)  # a view when channels-last
        out = token_mlp(tokens, self.fc1, self.act, self.fc2)
        return out.view(b, h, w, -1).permute(0, 3, 1, 2)  # (B, C, H, W), channels-last


@torch.no_grad()
def _as_linear(conv: nn.Conv2d) -> nn.Linear:
    linear = nn.Linear(conv.in_channels, conv.out_channels).to(conv.weight)
    linear.weight.copy_(conv.weight.flatten(1))
    assert conv.bias is not None and linear.bias is not None
    linear.bias.copy_(conv.bias)
    return linear


class Lateral(nn.Module):
    """One 1x1 lateral projection, held as ``conv`` (state-dict ``convs.N.conv.*``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FpnNeck(nn.Module):
    """Feature pyramid without output convs: 1x1 laterals plus nearest-neighbour top-down sums.

    Only levels listed in ``top_down_levels`` (0 = finest) receive the upsampled coarser map;
    the others are purely lateral. The ``scalp`` deepest levels are computed (they may feed the
    top-down path) but not returned, and get no position encoding.
    """

    def __init__(
        self,
        backbone_channels: tuple[int, ...],
        d_model: int,
        top_down_levels: tuple[int, ...],
        scalp: int,
    ) -> None:
        super().__init__()
        if not 0 <= scalp < len(backbone_channels):
            raise ValueError(f"scalp must be in [0, {len(backbone_channels)}), got {scalp}")
        self.d_model = d_model
        self.top_down_levels = frozenset(top_down_levels)
        self.scalp = scalp
        self.position_encoding = PositionEmbeddingSine(d_model)
        # convs[0] is the lateral of the deepest level (the checkpoint's order).
        self.convs = nn.ModuleList(Lateral(c, d_model) for c in reversed(backbone_channels))
        # Levels whose lateral was folded into their only consumer (``fold_lateral``): they are
        # returned as the trunk's map itself.
        self.passthrough: frozenset[int] = frozenset()

    @property
    def num_levels(self) -> int:
        return len(self.convs)

    def forward(self, levels: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Trunk maps (finest first) -> (kept features, their position encodings), finest first.

        Each kept feature is (B, d_model, h_i, w_i) and each encoding (B, d_model, h_i, w_i).
        """
        count = self.num_levels
        if len(levels) != count:
            raise ValueError(f"expected {count} trunk levels, got {len(levels)}")
        kept = count - self.scalp
        outputs: list[torch.Tensor | None] = [None] * count
        coarser: torch.Tensor | None = None
        for level in range(count - 1, -1, -1):
            if level in self.passthrough:
                outputs[level] = coarser = levels[level]
                continue
            feature = self.convs[count - 1 - level](levels[level])
            if coarser is not None and level in self.top_down_levels:
                feature = feature + F.interpolate(coarser, scale_factor=2.0, mode="nearest")
            outputs[level] = feature
            coarser = feature
        features = [f for f in outputs[:kept] if f is not None]
        encodings = [self.position_encoding(f) for f in features]
        return features, encodings

    @torch.no_grad()
    def fold_lateral(self, level: int, consumer: nn.Conv2d) -> nn.Conv2d:
        """A 1x1 conv equal to ``consumer(lateral(x))`` for the trunk map ``x`` of ``level``.

        From then on ``forward`` returns that level's trunk map unprojected, so the caller
        must apply the returned conv instead of ``consumer``. Exact (up to rounding) only for
        a purely lateral level that feeds no top-down sum, which is checked: the two fine
        levels of the SAM 2 neck are such, and their 256-channel lateral maps at S/4 and S/8
        were the largest tensors of the image encoder, made only to be projected down again.
        """
        count = self.num_levels
        if not 0 <= level < count - self.scalp:
            raise ValueError(f"level {level} is not a kept level")
        if level in self.top_down_levels or (level - 1) in self.top_down_levels:
            raise ValueError(f"level {level} takes part in the top-down path; cannot fold")
        if consumer.kernel_size != (1, 1) or consumer.groups != 1:
            raise ValueError("only a dense 1x1 convolution can absorb the lateral")
        lateral = cast(Lateral, self.convs[count - 1 - level]).conv
        w_l = lateral.weight.double().flatten(1)  # (d_model, C_in)
        w_c = consumer.weight.double().flatten(1)  # (C_out, d_model)
        b_l = lateral.bias.double() if lateral.bias is not None else w_l.new_zeros(w_l.shape[0])
        b_c = consumer.bias.double() if consumer.bias is not None else w_c.new_zeros(w_c.shape[0])
        folded = nn.Conv2d(w_l.shape[1], w_c.shape[0], kernel_size=1).to(lateral.weight)
        folded.weight.copy_((w_c @ w_l).view_as(folded.weight))
        assert folded.bias is not None
        folded.bias.copy_(w_c @ b_l + b_c)
        self.passthrough = self.passthrough | {level}
        return folded


class ImageEncoder(nn.Module):
    """RepViT trunk + FPN neck: a normalized image batch to multi-scale features.

    ``forward`` returns the kept levels (after ``config.scalp``), finest first; for the default
    config that is ``[(B, 256, S/4, S/4), (B, 256, S/8, S/8), (B, 256, S/16, S/16)]`` with
    ``256 = config.hidden_dim``, and the matching sine position encodings.
    """

    def __init__(self, config: EdgeTAMConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk = Trunk(config.trunk_name, config.backbone_channels, config.trunk_depth)
        self.neck = FpnNeck(
            config.backbone_channels,
            config.hidden_dim,
            config.fpn_top_down_levels,
            config.scalp,
        )
        self.is_fused = False

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(B, 3, S, S) images, already normalized with the config's mean/std.

        Returns ``(features, pos_encodings)``, two lists of ``len(backbone_channels) - scalp``
        tensors (B, hidden_dim, S / 2^(i+2), S / 2^(i+2)), finest first. The encodings are
        broadcast views of cached tables: treat them as read-only.
        """
        return self.neck(self.trunk(images))

    @torch.no_grad()
    def fuse(self) -> ImageEncoder:
        """Re-parameterize the trunk for inference and return ``self``.

        Folds every BatchNorm into its conv (using the running statistics) and merges the
        parallel 3x3 / 1x1 / identity branches of RepViT's depthwise blocks into one conv.
        Outputs are unchanged up to float rounding, but the state dict is not the checkpoint's
        any more: call this after loading weights, for inference only. Idempotent.
        """
        if not self.is_fused:
            self.trunk.fuse()
            self.is_fused = True
        return self
