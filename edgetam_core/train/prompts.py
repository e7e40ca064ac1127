"""Prompt sampling for training: clicks, boxes, mask prompts and correction clicks.

All functions work on batches of O objects with binary masks (O, S, S) at model-input
resolution and return model-input pixel coordinates ``(x, y)`` (continuous, pixel ``i``
covers ``[i, i + 1)``), as ``EdgeTAM.decode`` expects. Randomness comes from an explicit
``torch.Generator`` so that a training step is reproducible from its seed.
"""

from __future__ import annotations

import torch

from edgetam_core.model.prompt_encoder import (
    BOX_BOTTOM_RIGHT_LABEL,
    BOX_TOP_LEFT_LABEL,
    NEGATIVE_LABEL,
    PAD_LABEL,
    POSITIVE_LABEL,
)


def _sample_pixels(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One pixel per row of ``weights`` (O, H, W) >= 0 -> (O, 2) coordinates (x, y) + 0.5.

    Rows without weight get the image centre (callers mark them as padding).
    """
    o, h, w = weights.shape
    flat = weights.reshape(o, h * w).float().cpu()
    empty = flat.sum(dim=1) <= 0
    flat[empty] = 1.0
    index = torch.multinomial(flat, 1, generator=generator)[:, 0]
    xs = (index % w).float() + 0.5
    ys = torch.div(index, w, rounding_mode="floor").float() + 0.5
    coords = torch.stack([xs, ys], dim=1)
    coords[empty] = torch.tensor([w / 2.0, h / 2.0])
    return coords.to(weights.device)


def sample_clicks(
    masks: torch.Tensor, num_points: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_points`` positive clicks uniformly inside each mask: (O, N, 2), (O, N) int.

    Objects with an empty mask get padding points (label -1).
    """
    coords, labels = [], []
    present = masks.flatten(1).any(dim=1)
    for _ in range(num_points):
        coords.append(_sample_pixels(masks.float(), generator))
        lab = torch.where(present, POSITIVE_LABEL, PAD_LABEL).to(torch.int32)
        labels.append(lab)
    return torch.stack(coords, dim=1), torch.stack(labels, dim=1)


def sample_boxes(
    masks: torch.Tensor, generator: torch.Generator, noise: float = 0.1, max_noise: float = 20.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tight boxes with each corner moved by up to ``noise`` x the box side (at most
    ``max_noise`` pixels): corners (O, 2, 2) with labels (O, 2) = (2, 3)."""
    o, h, w = masks.shape
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    rows = masks.any(dim=2)  # (O, H)
    cols = masks.any(dim=1)  # (O, W)
    big = 10**6
    y0 = torch.where(rows, ys, big).amin(dim=1).float()
    y1 = torch.where(rows, ys, -1).amax(dim=1).float() + 1
    x0 = torch.where(cols, xs, big).amin(dim=1).float()
    x1 = torch.where(cols, xs, -1).amax(dim=1).float() + 1
    box = torch.stack([x0, y0, x1, y1], dim=1)
    present = rows.any(dim=1)
    box[~present] = torch.tensor([0.0, 0.0, float(w), float(h)], device=masks.device)
    side = torch.stack([x1 - x0, y1 - y0, x1 - x0, y1 - y0], dim=1).clamp(min=1)
    jitter = (torch.rand(o, 4, generator=generator) * 2 - 1).to(masks.device)
    box = box + (jitter * (noise * side).clamp(max=max_noise)) * present[:, None]
    limit = torch.tensor([w, h, w, h], device=masks.device, dtype=box.dtype)
    box = torch.minimum(box.clamp(min=0), limit)
    labels = torch.tensor([BOX_TOP_LEFT_LABEL, BOX_BOTTOM_RIGHT_LABEL], dtype=torch.int32)
    return box.reshape(o, 2, 2), labels.to(masks.device).expand(o, 2).clone()


def sample_correction(
    pred: torch.Tensor, target: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One correction click per object where the prediction is wrong: (O, 1, 2), (O, 1).

    The pixel is drawn uniformly from the error region (false negatives and false
    positives); it is positive where the object is, negative elsewhere. Objects predicted
    perfectly get a padding point.
    """
    error = pred.bool() ^ target.bool()
    coords = _sample_pixels(error.float(), generator)
    h, w = target.shape[-2:]
    xi = coords[:, 0].long().clamp(0, w - 1)
    yi = coords[:, 1].long().clamp(0, h - 1)
    on_object = target[torch.arange(target.shape[0], device=target.device), yi, xi].bool()
    labels = torch.where(on_object, POSITIVE_LABEL, NEGATIVE_LABEL)
    labels = torch.where(error.flatten(1).any(dim=1), labels, PAD_LABEL).to(torch.int32)
    return coords[:, None], labels[:, None]
