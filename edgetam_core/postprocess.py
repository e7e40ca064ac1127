"""Mask post-processing shared by the tracker and the image predictor."""

from __future__ import annotations

import cv2
import numpy as np
import torch

# Logit given to filled holes: just above the threshold, as the official post-processing.
HOLE_FILL_LOGIT = 0.1


def fill_small_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Turn background regions of at most ``max_area`` pixels into foreground.

    ``logits`` is (B, 1, H, W); background is logit <= 0; regions are 8-connected. Returns a
    new tensor (the input is unchanged); ``max_area <= 0`` disables the step.
    """
    if max_area <= 0:
        return logits
    background = (logits <= 0).to(torch.uint8).cpu().numpy()
    holes = np.zeros(background.shape, dtype=bool)
    for i in range(background.shape[0]):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(background[i, 0], connectivity=8)
        if count <= 1:
            continue
        small = stats[:, cv2.CC_STAT_AREA] <= max_area
        small[0] = False  # label 0 is the foreground here
        if small.any():
            holes[i, 0] = small[labels]
    if not holes.any():
        return logits
    mask = torch.from_numpy(holes).to(logits.device)
    return torch.where(mask, torch.as_tensor(HOLE_FILL_LOGIT, dtype=logits.dtype), logits)
