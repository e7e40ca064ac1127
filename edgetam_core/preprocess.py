"""Frame and prompt preprocessing: from user pixels to model-input tensors.

The official predictors resize differently: the video loader uses PIL bicubic (aspect ratio not
kept), the image predictor torchvision's antialiased bilinear. We reproduce each exactly so
results match the reference; coordinates are scaled by (image_size / W, image_size / H).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from edgetam_core.types import Prompt


def frame_to_input_video(frame: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, size, size) float in [0, 1], resized with PIL bicubic."""
    resized = np.array(Image.fromarray(frame).resize((size, size), Image.Resampling.BICUBIC))
    return torch.from_numpy(resized).to(device).permute(2, 0, 1)[None].float() / 255.0


def frame_to_input_image(frame: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, size, size) float in [0, 1], antialiased bilinear resize."""
    x = (
        torch.from_numpy(np.ascontiguousarray(frame)).to(device).permute(2, 0, 1)[None].float()
        / 255.0
    )
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def prompt_points(
    prompt: Prompt, width: int, height: int, size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Box corners (labels 2, 3) then clicks as (1, N, 2) model-input coords and (1, N) labels."""
    coords: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    if prompt.box is not None:
        coords.append(torch.tensor(prompt.box, dtype=torch.float32).reshape(2, 2))
        labels.append(torch.tensor([2, 3], dtype=torch.int32))
    if prompt.points is not None and prompt.labels is not None:
        coords.append(torch.tensor(np.asarray(prompt.points), dtype=torch.float32).reshape(-1, 2))
        labels.append(torch.tensor(np.asarray(prompt.labels), dtype=torch.int32).reshape(-1))
    if not coords:
        return None
    xy = torch.cat(coords) / torch.tensor([width, height]) * size
    return xy[None].to(device), torch.cat(labels)[None].to(device)


def mask_prompt_input(mask: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """(H, W) bool mask -> (1, 1, size, size) binary float, as the official ``add_new_mask``."""
    m = torch.from_numpy(np.asarray(mask, dtype=np.float32)).to(device)[None, None]
    if m.shape[-2:] != (size, size):
        m = F.interpolate(
            m, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        m = (m >= 0.5).float()
    return m
