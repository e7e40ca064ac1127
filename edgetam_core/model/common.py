"""Small building blocks shared by several components."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (state-dict names ``layers.N``)."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        pairs = zip(dims_in, dims_out, strict=True)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in pairs)
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return torch.sigmoid(x) if self.sigmoid_output else x


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) map."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.layer_norm on a channels-last view is one fused kernel instead of five ops.
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


# Hidden activations per slice in ``token_mlp`` (4 MB in fp32). For the memory attention's
# 256 -> 2048 -> 256 FFN on 4096 tokens that is 512 tokens per slice instead of one 32 MB
# activation, which the bias, activation and second GEMM then read from cache: the FFN got
# ~20 % faster on a 2-core AVX2 CPU (see docs/benchmarks.md).
MLP_CHUNK_ELEMENTS = 1 << 20


def token_mlp(
    x: torch.Tensor,
    first: nn.Linear,
    activation: Callable[[torch.Tensor], torch.Tensor],
    second: nn.Linear,
) -> torch.Tensor:
    """``second(activation(first(x)))`` for ``x`` (B, N, C), every token independently.

    Without autograd (inference and export), long sequences are computed in slices of
    about ``MLP_CHUNK_ELEMENTS / (hidden * B)`` tokens (at least 64): the same values, up to
    float rounding. A traced graph keeps the slicing of its example batch size.
    With autograd the plain expression runs (slicing would only add copies to backward).
    """
    batch, n = x.shape[0], x.shape[1]
    step = max(64, MLP_CHUNK_ELEMENTS // (first.out_features * max(1, batch)))
    if torch.is_grad_enabled() or n <= step:
        return second(activation(first(x)))
    parts = [second(activation(first(x[:, i : i + step]))) for i in range(0, n, step)]
    return torch.cat(parts, dim=1)
