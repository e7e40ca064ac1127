"""Single-image segmentation: one image + points / box / mask prompts -> masks (SAM style)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from edgetam_core.errors import InputError, PromptError
from edgetam_core.model.edgetam import EdgeTAM, ImageFeatures
from edgetam_core.preprocess import frame_to_input_image, prompt_points
from edgetam_core.types import Prompt

# Low-res logits handed back for re-use as mask input are clipped like the official predictor.
LOW_RES_CLAMP = 32.0


@dataclass
class ImagePrediction:
    """Masks for one prompt: M = 3 candidates with multimask output, else 1."""

    masks: np.ndarray  # (M, H, W) bool (or float32 logits with return_logits)
    ious: np.ndarray  # (M,) predicted IoU
    low_res_logits: np.ndarray  # (M, s, s) float32, usable as the next call's mask_input


class ImagePredictor:
    """Embeds one image once, then answers any number of prompts on it.

    Preprocessing matches the official image predictor (antialiased bilinear resize, no
    object-score gating); the first-frame ``no_mem_embed`` is added as there.
    """

    def __init__(self, model: EdgeTAM, mask_threshold: float = 0.0) -> None:
        self.model = model
        self.mask_threshold = mask_threshold
        self.device = next(model.parameters()).device
        self._features: ImageFeatures | None = None
        self._pix: torch.Tensor | None = None
        self._size: tuple[int, int] | None = None

    @torch.inference_mode()
    def set_image(self, image: np.ndarray) -> None:
        """Compute the embedding of an (H, W, 3) uint8 RGB image."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise InputError("image must be an HxWx3 uint8 RGB array")
        if image.dtype != np.uint8 or image.shape[0] == 0 or image.shape[1] == 0:
            raise InputError("image must be a non-empty uint8 array")
        size = self.model.config.image_size
        x = self.model.normalize(frame_to_input_image(image, size, self.device))
        self._features = self.model.encode_image(x)
        self._pix = self.model.attend_memory(
            self._features.top, self._features.top_pos, None, None, 0, 0
        )
        self._size = (int(image.shape[0]), int(image.shape[1]))

    @torch.inference_mode()
    def predict(
        self,
        points: object | None = None,
        labels: object | None = None,
        box: object | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> ImagePrediction:
        """Masks for clicks (``points`` (N, 2) pixels, ``labels`` 1/0), a box and/or a mask.

        ``mask_input`` is a (1, s, s) low-res logit map from a previous prediction.
        """
        if self._features is None or self._pix is None or self._size is None:
            raise InputError("call set_image() before predict()")
        height, width = self._size
        prompt = Prompt.from_clicks(1, points, labels, box)
        if prompt.points is None and prompt.box is None and mask_input is None:
            raise PromptError("give points, a box or a mask_input")
        if prompt.points is not None or prompt.box is not None:
            prompt.validate(height, width)
        size = self.model.config.image_size
        encoded = prompt_points(prompt, width, height, size, self.device)
        coords, point_labels = encoded if encoded is not None else (None, None)
        mask = None
        if mask_input is not None:
            mask = torch.as_tensor(np.asarray(mask_input, dtype=np.float32), device=self.device)
            mask = mask.reshape(1, 1, *mask.shape[-2:])
        masks, ious, _, _ = self.model.predict_masks(
            self._pix, self._features.high_res, coords, point_labels, mask, multimask_output
        )
        full = F.interpolate(masks, size=(height, width), mode="bilinear", align_corners=False)
        out = full[0] if return_logits else full[0] > self.mask_threshold
        low = masks[0].clamp(-LOW_RES_CLAMP, LOW_RES_CLAMP)
        return ImagePrediction(out.cpu().numpy(), ious[0].cpu().numpy(), low.cpu().numpy())
