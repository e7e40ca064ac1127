"""SAM 2 mask decoder as EdgeTAM configures it: a two-way transformer plus mask/IoU/object heads.

EdgeTAM's fixed choices (from ``edgetam.yaml``): high-resolution skip features from the two
finest FPN levels, sigmoid IoU head, an MLP object-score head and an object-score token, the
multimask tokens as object-pointer tokens when several masks are output, and (in eval mode,
single-mask output) the dynamic fallback to the best multimask output when the single mask is
unstable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgetam_core.config import EdgeTAMConfig
from edgetam_core.model.common import MLP, LayerNorm2d

ATTENTION_DOWNSAMPLE_RATE = 2  # token<->image cross-attentions work at half width


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections and an optional narrower core.

    Queries (B, Nq, C) attend to keys (B, Nk, C_kv) / values (B, Nk, C_kv); the projections
    map to ``C // downsample_rate`` channels split over ``num_heads`` heads and ``out_proj``
    maps back to C. Uses ``F.scaled_dot_product_attention`` (no mask, no dropout).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        kv_in_dim: int | None = None,
    ) -> None:
        super().__init__()
        inner = embedding_dim // downsample_rate
        if inner % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the inner width {inner}")
        kv_dim = embedding_dim if kv_in_dim is None else kv_in_dim
        self.embedding_dim = embedding_dim
        self.internal_dim = inner
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embedding_dim, inner)
        self.k_proj = nn.Linear(kv_dim, inner)
        self.v_proj = nn.Linear(kv_dim, inner)
        self.out_proj = nn.Linear(inner, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, inner) -> (B, heads, N, inner / heads)."""
        batch, tokens, _ = x.shape
        return x.reshape(batch, tokens, self.num_heads, -1).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, Nq, C), k (B, Nk, C_kv), v (B, Nk, C_kv) -> (B, Nq, C)."""
        attended = F.scaled_dot_product_attention(
            self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        )
        batch, _, tokens, _ = attended.shape
        merged = attended.transpose(1, 2).reshape(batch, tokens, self.internal_dim)
        return self.out_proj(merged)


class TwoWayAttentionBlock(nn.Module):
    """Tokens self-attend, attend to the image, go through an MLP; then the image attends back.

    Each of the four steps is residual and followed by a LayerNorm (``norm1``..``norm4``),
    except that the first block's self-attention (``skip_first_layer_pe``) has neither the
    position encoding nor the residual connection.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int = ATTENTION_DOWNSAMPLE_RATE,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, num_layers=2)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (B, Nt, C), keys (B, HW, C), query_pe like queries, key_pe (1 or B, HW, C)."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            with_pe = queries + query_pe
            queries = queries + self.self_attn(with_pe, with_pe, queries)
        queries = self.norm1(queries)

        keys_pe = keys + key_pe
        queries = self.norm2(
            queries + self.cross_attn_token_to_image(queries + query_pe, keys_pe, keys)
        )
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(
            keys + self.cross_attn_image_to_token(keys_pe, queries + query_pe, queries)
        )
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks and a final token-to-image attention (SAM's decoder core)."""

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int = ATTENTION_DOWNSAMPLE_RATE,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim,
                num_heads,
                mlp_dim,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=index == 0,
            )
            for index in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B, C, h, w), image_pe (1 or B, C, h, w), tokens (B, Nt, C).

        Returns the updated tokens (B, Nt, C) and image tokens (B, h*w, C). The input tokens
        double as their own position encoding.
        """
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        attended = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + attended), keys


def stability_scores(mask_logits: torch.Tensor, delta: float) -> torch.Tensor:
    """IoU of the masks thresholded at +delta and -delta: (..., H, W) -> (...), 1 if empty."""
    flat = mask_logits.flatten(-2)
    inner = (flat > delta).sum(dim=-1).float()
    outer = (flat > -delta).sum(dim=-1).float()
    return torch.where(outer > 0, inner / outer.clamp(min=1), torch.ones_like(inner))


def select_best_mask(
    masks: torch.Tensor, ious: torch.Tensor, tokens: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Keep the highest-IoU candidate per batch item.

    masks (B, M, H, W), ious (B, M), tokens (B, M, C) or (B, 1, C) or None ->
    (B, 1, H, W), (B, 1), (B, C) or None. A single token (the single-mask token) is returned
    as is, which is what the reference does for the object pointer.
    """
    best = ious.argmax(dim=1)
    rows = torch.arange(masks.shape[0], device=masks.device)
    best_tokens: torch.Tensor | None = None
    if tokens is not None:
        best_tokens = tokens[rows, best] if tokens.shape[1] > 1 else tokens[:, 0]
    return masks[rows, best].unsqueeze(1), ious[rows, best].unsqueeze(1), best_tokens


class MaskDecoder(nn.Module):
    """Predict mask logits, IoU estimates, output tokens and an object score (EdgeTAM heads).

    Output tokens, in order: ``obj_score_token``, ``iou_token``, ``mask_tokens`` (1 single-mask
    token + ``num_multimask_outputs``), then the prompt tokens.
    """

    def __init__(self, config: EdgeTAMConfig) -> None:
        super().__init__()
        dim = config.hidden_dim
        self.transformer_dim = dim
        self.num_multimask_outputs = config.num_multimask_outputs
        self.num_mask_tokens = config.num_multimask_outputs + 1
        self.dynamic_multimask_via_stability = config.dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = config.dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = config.dynamic_multimask_stability_thresh
        self.use_multimask_token_for_obj_ptr = True

        self.transformer = TwoWayTransformer(
            depth=config.mask_decoder_depth,
            embedding_dim=dim,
            num_heads=config.mask_decoder_heads,
            mlp_dim=config.mask_decoder_mlp_dim,
        )
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.obj_score_token = nn.Embedding(1, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            dim,
            config.iou_head_hidden_dim,
            self.num_mask_tokens,
            config.iou_head_depth,
            sigmoid_output=True,
        )
        self.pred_obj_score_head = MLP(dim, dim, 1, 3)

    def project_high_res_features(
        self, fpn_s4: torch.Tensor, fpn_s8: torch.Tensor
    ) -> list[torch.Tensor]:
        """The per-frame skip projections: (B, C, 4h, 4w), (B, C, 2h, 2w) -> the
        ``high_res_features`` argument [(B, C/8, 4h, 4w), (B, C/4, 2h, 2w)]. Compute once
        per frame and reuse for every decoder call on that frame."""
        return [self.conv_s0(fpn_s4), self.conv_s1(fpn_s8)]

    def predict_all(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        high_res_features: Sequence[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every mask token's output, before any selection.

        Returns masks (B, 1 + K, 4h, 4w), ious (B, 1 + K), mask tokens (B, 1 + K, C) and
        object-score logits (B, 1), with K = ``num_multimask_outputs``.
        """
        batch = sparse.shape[0]
        if image_embeddings.shape[0] != batch:
            raise ValueError(
                f"batch mismatch: {image_embeddings.shape[0]} images, {batch} prompt sets"
            )
        if image_pe.shape[0] != 1:
            raise ValueError("image_pe must have batch size 1 (from get_dense_pe())")
        learned = torch.cat(
            (self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight), dim=0
        )
        tokens = torch.cat((learned.unsqueeze(0).expand(batch, -1, -1), sparse), dim=1)
        source = image_embeddings + dense
        _, channels, height, width = source.shape

        hidden, image_tokens = self.transformer(source, image_pe, tokens)
        object_token = hidden[:, 0]
        iou_token = hidden[:, 1]
        mask_tokens = hidden[:, 2 : 2 + self.num_mask_tokens]

        grid = image_tokens.transpose(1, 2).reshape(batch, channels, height, width)
        feat_s0, feat_s1 = high_res_features
        up1, norm1, act1, up2, act2 = self.output_upscaling
        upscaled = act1(norm1(up1(grid) + feat_s1))
        upscaled = act2(up2(upscaled) + feat_s0)

        hyper = torch.stack(
            [mlp(mask_tokens[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )  # (B, 1 + K, C / 8)
        _, up_channels, up_height, up_width = upscaled.shape
        masks = torch.bmm(hyper, upscaled.reshape(batch, up_channels, up_height * up_width))
        masks = masks.reshape(batch, -1, up_height, up_width)
        ious = self.iou_prediction_head(iou_token)
        object_score_logits = self.pred_obj_score_head(object_token)
        return masks, ious, mask_tokens, object_score_logits

    def _stable_or_best_multimask(
        self, masks: torch.Tensor, ious: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Single-mask output with fallback: (B, 1 + K, H, W), (B, 1 + K) -> (B, 1, ...).

        Keeps the single-mask token's mask where its stability score reaches the threshold,
        otherwise the multimask candidate with the highest predicted IoU.
        """
        best_masks, best_ious, _ = select_best_mask(masks[:, 1:], ious[:, 1:])
        single_masks, single_ious = masks[:, :1], ious[:, :1]
        stable = (
            stability_scores(single_masks, self.dynamic_multimask_stability_delta)
            >= self.dynamic_multimask_stability_thresh
        )  # (B, 1)
        return (
            torch.where(stable[..., None, None], single_masks, best_masks),
            torch.where(stable, single_ious, best_ious),
        )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        multimask_output: bool,
        high_res_features: Sequence[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode masks for a batch of (image, prompt set) pairs.

        Args:
            image_embeddings: (B, C, h, w) memory-conditioned image features.
            image_pe: (1, C, h, w) dense prompt position encoding (``get_dense_pe()``).
            sparse: (B, N, C) prompt tokens; dense: (B, C, h, w) dense prompt embedding.
            multimask_output: output the K multimask candidates instead of one mask.
            high_res_features: [(B, C/8, 4h, 4w), (B, C/4, 2h, 2w)], already projected by
                ``conv_s0`` / ``conv_s1`` (see ``project_high_res_features``).

        Returns:
            masks (B, M, 4h, 4w) logits and ious (B, M), M = K if ``multimask_output`` else 1
            (in eval mode the single mask may be replaced by the best multimask candidate,
            see ``dynamic_multimask_via_stability``); sam_tokens_out (B, K, C) with
            ``multimask_output`` else (B, 1, C) -- the single-mask token, even when the
            dynamic fallback picked a multimask mask; object_score_logits (B, 1).
        """
        masks, ious, mask_tokens, object_score_logits = self.predict_all(
            image_embeddings, image_pe, sparse, dense, high_res_features
        )
        if multimask_output:
            masks, ious = masks[:, 1:], ious[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            masks, ious = self._stable_or_best_multimask(masks, ious)
        else:
            masks, ious = masks[:, :1], ious[:, :1]

        if multimask_output and self.use_multimask_token_for_obj_ptr:
            sam_tokens_out = mask_tokens[:, 1:]
        else:
            sam_tokens_out = mask_tokens[:, :1]
        return masks, ious, sam_tokens_out, object_score_logits
