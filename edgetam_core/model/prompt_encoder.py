"""SAM prompt encoder: clicks and boxes to sparse tokens, a mask prompt to a dense map.

Point labels: -1 padding ("not a point"), 0 negative click, 1 positive click, 2 box top-left
corner, 3 box bottom-right corner. Any other label gets the position encoding alone.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from edgetam_core.model.common import LayerNorm2d
from edgetam_core.model.position_encoding import PositionEmbeddingRandom

PAD_LABEL = -1
NEGATIVE_LABEL = 0
POSITIVE_LABEL = 1
BOX_TOP_LEFT_LABEL = 2
BOX_BOTTOM_RIGHT_LABEL = 3


class PromptEncoder(nn.Module):
    """Encode point / box / mask prompts for the mask decoder.

    Args:
        embed_dim: token width C (the decoder's transformer width).
        image_embedding_size: (h, w) of the image feature grid the decoder attends to.
        input_image_size: (H, W) of the encoder's input image; prompt coordinates are pixels
            of this image, as (x, y).
        mask_in_chans: hidden channels of the mask-prompt downscaler.
    """

    num_point_embeddings = 4  # negative, positive, box top-left, box bottom-right

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = (int(image_embedding_size[0]), int(image_embedding_size[1]))
        self.input_image_size = (int(input_image_size[0]), int(input_image_size[1]))
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings)
        )
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        hidden = mask_in_chans // 4
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, hidden, kernel_size=2, stride=2),
            LayerNorm2d(hidden),
            nn.GELU(),
            nn.Conv2d(hidden, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    @property
    def mask_input_size(self) -> tuple[int, int]:
        """(4h, 4w): the size a mask prompt must have (the decoder's low-res mask size)."""
        return (4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1])

    def get_dense_pe(self) -> torch.Tensor:
        """Position encoding of the image feature grid, (1, C, h, w); cached, read-only."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _point_weight(self, label: int) -> torch.Tensor:
        """The (1, C) learned embedding of point label ``label`` (0..3)."""
        return cast(nn.Embedding, self.point_embeddings[label]).weight

    def _label_table(self) -> torch.Tensor:
        """(6, C) rows added per label: pad, 0, 1, 2, 3, and zeros for unknown labels."""
        rows = [self.not_a_point_embed.weight]
        rows += [self._point_weight(index) for index in range(self.num_point_embeddings)]
        rows.append(torch.zeros_like(self.not_a_point_embed.weight))
        return torch.cat(rows, dim=0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """Clicks (B, N, 2) pixel (x, y) + labels (B, N) -> tokens (B, N + pad, C).

        With ``pad`` a padding point (label -1) is appended. Padding points carry only the
        learned ``not_a_point_embed`` (their position encoding is dropped).
        """
        coords = coords.to(torch.float32) + 0.5  # pixel centres
        labels = labels.to(torch.long)
        if pad:
            batch = coords.shape[0]
            coords = torch.cat((coords, coords.new_zeros(batch, 1, 2)), dim=1)
            labels = torch.cat((labels, labels.new_full((batch, 1), PAD_LABEL)), dim=1)
        encoding = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        is_pad = labels == PAD_LABEL
        encoding = torch.where(is_pad[..., None], torch.zeros_like(encoding), encoding)
        known = (labels >= PAD_LABEL) & (labels < self.num_point_embeddings)
        row = torch.where(known, labels + 1, torch.full_like(labels, self.num_point_embeddings + 1))
        return encoding + self._label_table()[row]

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """Boxes (B, 4) as pixel (x0, y0, x1, y1) -> two corner tokens per box, (B, 2, C)."""
        corners = (boxes.to(torch.float32) + 0.5).reshape(-1, 2, 2)
        encoding = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_embeds = torch.cat(
            (self._point_weight(BOX_TOP_LEFT_LABEL), self._point_weight(BOX_BOTTOM_RIGHT_LABEL)),
            dim=0,
        )
        return encoding + corner_embeds

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """Mask logits (B, 1, 4h, 4w) -> dense embedding (B, C, h, w)."""
        return self.mask_downscaling(masks)

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed the prompts of a batch.

        Args:
            points: ``(coords (B, N, 2), labels (B, N))``, pixel (x, y) in the input image.
            boxes: (B, 4) pixel boxes ``(x0, y0, x1, y1)``.
            masks: (B, 1, 4h, 4w) mask logits (see ``mask_input_size``).

        Returns:
            ``sparse`` (B, N', C): the point tokens, then two tokens per box. When points are
            given without boxes one padding token is appended (N' = N + 1); with boxes,
            N' = N + 2; with boxes only, N' = 2; with nothing, N' = 0.
            ``dense`` (B, C, h, w): the mask embedding, or ``no_mask_embed`` broadcast.
            B comes from points, else boxes, else masks, else 1.
        """
        if points is not None:
            batch = points[0].shape[0]
        elif boxes is not None:
            batch = boxes.shape[0]
        elif masks is not None:
            batch = masks.shape[0]
        else:
            batch = 1
        weight = self.no_mask_embed.weight
        tokens = [weight.new_empty((batch, 0, self.embed_dim))]
        if points is not None:
            tokens.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            tokens.append(self.embed_boxes(boxes))
        sparse = torch.cat(tokens, dim=1) if len(tokens) > 1 else tokens[0]

        if masks is not None:
            dense = self.embed_masks(masks)
        else:
            height, width = self.image_embedding_size
            dense = weight.reshape(1, -1, 1, 1).expand(batch, -1, height, width)
        return sparse, dense
