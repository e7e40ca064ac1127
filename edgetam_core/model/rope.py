"""Axial 2D rotary position encoding in real-valued cos/sin form.

The official code rotates with complex numbers, which neither TorchScript-to-Core ML nor ONNX
can export. Rotating each channel pair (2j, 2j+1) by an angle with cos/sin tables is the same
function. For a ``width`` x ``height`` grid flattened row-major (token n at x = n % width,
y = n // width) and per-head dim D, the first D/4 pairs rotate by x * f_k and the next D/4 by
y * f_k, with f_k = theta ** (-4k / D).
"""

from __future__ import annotations

import torch

_TABLE_CACHE: dict[
    tuple[int, int, int, float, torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]
] = {}


def axial_rope_tables(
    dim: int,
    width: int,
    height: int,
    theta: float = 10000.0,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (width * height, dim // 2), cached per size/device/dtype."""
    device = device or torch.device("cpu")
    key = (dim, width, height, float(theta), device, dtype)
    cached = _TABLE_CACHE.get(key)
    if cached is not None:
        return cached
    quarter = dim // 4
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4, dtype=torch.float32)[:quarter] / dim))
    n = torch.arange(width * height, dtype=torch.float32)
    xs = n % width
    ys = torch.div(n, width, rounding_mode="floor")
    angles = torch.cat([torch.outer(xs, freqs), torch.outer(ys, freqs)], dim=-1)
    tables = (angles.cos().to(device, dtype), angles.sin().to(device, dtype))
    _TABLE_CACHE[key] = tables
    return tables


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of ``x`` (..., N, D) by tables ``cos``/``sin`` (N, D/2)."""
    pairs = x.unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2)
