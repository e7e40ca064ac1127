"""Position encodings: a fixed 2D sine table and SAM's random-Fourier-feature encoding.

Both are functions of a grid size (and, for the random one, of a small weight matrix), so the
grid tables are computed once per size and cached; a frame of a stream never rebuilds them.
Cached tables are shared, read-only tensors: callers must not modify them in place.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def _is_tracing() -> bool:
    """True while torch.jit traces or torch.compile/export captures a graph (no caching then)."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


class PositionEmbeddingSine(nn.Module):
    """Fixed 2D sine/cosine encoding of a (H, W) grid, DETR style, normalized to (0, scale].

    Channel layout of the ``num_pos_feats`` output channels: the first half encodes the row
    (y), the second half the column (x); within each half, channel pairs (2j, 2j+1) hold
    ``sin(p / T^(2j/F))`` and ``cos(p / T^(2j/F))`` with ``F = num_pos_feats / 2`` and
    ``p = scale * k / (n + 1e-6)`` for the 1-based index ``k`` of a grid of ``n`` cells.

    The module has no parameters. Its output depends only on (H, W, device, dtype), so each
    table is built once and cached; ``forward`` returns the cached table expanded (not copied)
    to the batch.
    """

    def __init__(
        self,
        num_pos_feats: int,
        temperature: float = 10000,
        normalize: bool = True,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError(f"num_pos_feats must be even, got {num_pos_feats}")
        if scale is not None and not normalize:
            raise ValueError("scale is only meaningful with normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = float(temperature)
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else float(scale)
        self._tables: dict[tuple[int, int, torch.device, torch.dtype], torch.Tensor] = {}

    def _axis_table(self, length: int, device: torch.device) -> torch.Tensor:
        """Encoding of one axis of ``length`` cells: (length, num_pos_feats // 2), float32."""
        half = self.num_pos_feats // 2
        position = torch.arange(1, length + 1, dtype=torch.float32, device=device)
        if self.normalize:
            position = position / (float(length) + 1e-6) * self.scale
        exponent = 2 * (torch.arange(half, dtype=torch.float32, device=device) // 2) / half
        angles = position[:, None] / self.temperature**exponent
        table = torch.empty_like(angles)
        table[:, 0::2] = angles[:, 0::2].sin()
        table[:, 1::2] = angles[:, 1::2].cos()
        return table

    def table(
        self, height: int, width: int, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        """The cached (num_pos_feats, height, width) table for one grid size."""
        device = torch.device(device)
        if _is_tracing():  # let the graph compute the table instead of capturing a cache entry
            return self._build(height, width, device, dtype)
        key = (height, width, device, dtype)
        cached = self._tables.get(key)
        if cached is None:
            cached = self._tables[key] = self._build(height, width, device, dtype)
        return cached

    def _build(
        self, height: int, width: int, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        rows = self._axis_table(height, device)  # (H, F)
        cols = self._axis_table(width, device)  # (W, F)
        half = rows.shape[1]
        return torch.cat(
            (
                rows.t()[:, :, None].expand(half, height, width),
                cols.t()[:, None, :].expand(half, height, width),
            ),
            dim=0,
        ).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encoding for the grid of ``x`` (B, C, H, W) -> (B, num_pos_feats, H, W).

        Only the shape, device and dtype of ``x`` are used. The result is a broadcast view of
        the cached table; treat it as read-only.
        """
        batch, _, height, width = x.shape
        grid = self.table(height, width, x.device, x.dtype)
        return grid.unsqueeze(0).expand(batch, -1, -1, -1)

    def clear_cache(self) -> None:
        """Forget every cached table (they are rebuilt on demand)."""
        self._tables.clear()


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of 2D coordinates, as SAM's prompt encoder uses.

    A point ``(x, y)`` normalized to [0, 1]^2 is mapped to ``u = 2 pi (2 (x, y) - 1) G`` with
    the (2, num_pos_feats) buffer ``G = positional_encoding_gaussian_matrix`` and encoded as
    ``[sin(u), cos(u)]`` (2 * num_pos_feats channels).

    ``forward(size)`` encodes the centres of a (H, W) grid and is cached per size. The cache is
    keyed on the identity and version of ``G`` and is cleared by ``load_state_dict``; an edit
    through ``G.data`` bypasses version tracking, so call ``clear_cache()`` after one.
    """

    positional_encoding_gaussian_matrix: torch.Tensor

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        gain = 1.0 if scale is None or scale <= 0.0 else float(scale)
        self.register_buffer(
            "positional_encoding_gaussian_matrix", gain * torch.randn((2, num_pos_feats))
        )
        self._grids: dict[tuple[int, int], tuple[tuple[Any, ...], torch.Tensor]] = {}

    def _encode(self, unit_coords: torch.Tensor) -> torch.Tensor:
        """Encode coordinates in [0, 1]: (..., 2) -> (..., 2 * num_pos_feats)."""
        matrix = self.positional_encoding_gaussian_matrix
        angles = (2 * math.pi) * ((2 * unit_coords.to(matrix.dtype) - 1) @ matrix)
        return torch.cat((angles.sin(), angles.cos()), dim=-1)

    def _weights_key(self) -> tuple[Any, ...]:
        matrix = self.positional_encoding_gaussian_matrix
        try:
            version = matrix._version
        except RuntimeError:  # inference tensors carry no version counter
            version = -1
        return (matrix.data_ptr(), matrix.device, matrix.dtype, version)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of the cell centres of a (H, W) grid -> (2 * num_pos_feats, H, W), cached.

        The result is the cached tensor itself; treat it as read-only.
        """
        height, width = int(size[0]), int(size[1])
        if _is_tracing():  # data pointers and versions do not exist for traced tensors
            return self._build(height, width)
        weights_key = self._weights_key()
        cached = self._grids.get((height, width))
        if cached is not None and cached[0] == weights_key:
            return cached[1]
        grid = self._build(height, width)
        self._grids[(height, width)] = (weights_key, grid)
        return grid

    def _build(self, height: int, width: int) -> torch.Tensor:
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height
        xs = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width
        coords = torch.stack(
            (xs[None, :].expand(height, width), ys[:, None].expand(height, width)), dim=-1
        )
        return self._encode(coords).permute(2, 0, 1)

    def forward_with_coords(
        self, coords: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """Encode pixel coordinates (B, N, 2) as (x, y) in an image of ``image_size`` (H, W).

        Returns (B, N, 2 * num_pos_feats) encodings in the buffer's dtype; ``coords`` is not
        modified.
        """
        unit = torch.stack((coords[..., 0] / image_size[1], coords[..., 1] / image_size[0]), dim=-1)
        return self._encode(unit)

    def clear_cache(self) -> None:
        """Forget every cached grid encoding."""
        self._grids.clear()

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._grids.clear()
        super()._load_from_state_dict(*args, **kwargs)
