"""EdgeTAM: the components under their official names, and the four stateless per-frame steps.

    frame -> encode_image -> attend_memory -> decode -> encode_memory -> (memory bank)

Each step is a pure function of its inputs (no state is kept between calls), so backends can
export or replace them one by one; ``edgetam_core.tracker`` owns every piece of state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgetam_core.config import EdgeTAMConfig
from edgetam_core.model.common import MLP
from edgetam_core.model.image_encoder import ImageEncoder
from edgetam_core.model.mask_decoder import MaskDecoder, stability_scores
from edgetam_core.model.memory_attention import MemoryAttention
from edgetam_core.model.memory_encoder import MemoryEncoder
from edgetam_core.model.position_encoding import PositionEmbeddingSine
from edgetam_core.model.prompt_encoder import PromptEncoder
from edgetam_core.model.spatial_perceiver import SpatialPerceiver

# Logit given to every pixel of an object judged absent (the official constant).
NO_OBJECT_LOGIT = -1024.0
# Mask prompts become logits of +10 / -10 (sigmoid(-10) ~ 4.5e-5), as in the official code.
MASK_PROMPT_SCALE, MASK_PROMPT_BIAS = 20.0, -10.0


@dataclass
class ImageFeatures:
    """Output of ``encode_image`` for a batch of frames (usually one).

    ``high_res`` are the decoder's projected stride-4 and stride-8 maps (B, C/8, 4h, 4w) and
    (B, C/4, 2h, 2w); ``top`` is the stride-16 map (B, C, h, w); ``top_pos`` its sine
    encoding (1, C, h, w).
    """

    high_res: list[torch.Tensor]
    top: torch.Tensor
    top_pos: torch.Tensor

    def select(self, index: torch.Tensor | list[int]) -> ImageFeatures:
        """Rows of the batch (e.g. one frame's features expanded to several objects)."""
        idx = torch.as_tensor(index, device=self.top.device)
        return ImageFeatures(
            [h.index_select(0, idx) for h in self.high_res],
            self.top.index_select(0, idx),
            self.top_pos,
        )

    def expand(self, batch: int) -> ImageFeatures:
        """The same (single) frame's features viewed as a batch of ``batch`` objects."""
        return ImageFeatures(
            [h.expand(batch, -1, -1, -1) for h in self.high_res],
            self.top.expand(batch, -1, -1, -1),
            self.top_pos,
        )


@dataclass
class RawDecoderOutput:
    """Every mask token's output for B objects (K = 3 multimask candidates).

    ``masks`` (B, 1 + K, 4h, 4w) logits; ``ious`` (B, 1 + K); ``obj_ptrs`` (B, 1 + K, C)
    projected pointers (not yet gated); ``object_score`` (B,) logits.
    """

    masks: torch.Tensor
    ious: torch.Tensor
    obj_ptrs: torch.Tensor
    object_score: torch.Tensor


@dataclass
class DecoderOutput:
    """Output of ``decode`` / ``decode_mask_prompt`` for B objects.

    ``low_res_logits`` (B, 1, 4h, 4w) is the chosen mask (object-score gated); ``iou`` (B,)
    its predicted IoU; ``obj_ptr`` (B, C) the object pointer; ``object_score`` (B,) logits.
    """

    low_res_logits: torch.Tensor
    iou: torch.Tensor
    obj_ptr: torch.Tensor
    object_score: torch.Tensor


class EdgeTAM(nn.Module):
    """The EdgeTAM network. ``state_dict()`` keys equal the official checkpoint's."""

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, config: EdgeTAMConfig | None = None) -> None:
        super().__init__()
        c = config or EdgeTAMConfig()
        self.config = c
        self.image_encoder = ImageEncoder(c)
        self.memory_attention = MemoryAttention(c)
        self.memory_encoder = MemoryEncoder(c)
        self.spatial_perceiver = SpatialPerceiver(c)
        self.sam_prompt_encoder = PromptEncoder(
            embed_dim=c.hidden_dim,
            image_embedding_size=(c.feat_size, c.feat_size),
            input_image_size=(c.image_size, c.image_size),
            mask_in_chans=c.mask_in_chans,
        )
        self.sam_mask_decoder = MaskDecoder(c)
        self.obj_ptr_proj = MLP(c.hidden_dim, c.hidden_dim, c.hidden_dim, 3)
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(c.num_maskmem, 1, 1, c.mem_dim))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c.hidden_dim))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c.hidden_dim))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, c.hidden_dim))
        for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc, self.no_obj_ptr):
            nn.init.trunc_normal_(p, std=0.02)
        self.memory_pos_encoding = PositionEmbeddingSine(c.mem_dim)
        # Made by ``fuse``: the decoder's high-res projections with the neck's laterals folded in.
        self.high_res_projections: nn.ModuleList | None = None
        self.register_buffer(
            "pixel_mean", torch.tensor(c.pixel_mean).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(c.pixel_std).view(1, 3, 1, 1), persistent=False
        )

    @property
    def is_fused(self) -> bool:
        return bool(getattr(self.image_encoder, "is_fused", False))

    def fuse(self) -> EdgeTAM:
        """Prepare for inference (idempotent): fold BatchNorm and re-parameterizable branches,
        and store convolution weights channels-last (oneDNN's fast layout on CPU).

        Outputs stay the same up to float rounding; the state dict changes, so a fused model
        can no longer be saved in the official layout. Returns self.
        """
        if self.high_res_projections is not None:
            return self
        self.image_encoder.fuse()
        dec = self.sam_mask_decoder
        neck = self.image_encoder.neck
        projections: list[nn.Module] = []
        for level, conv in enumerate((dec.conv_s0, dec.conv_s1)):
            try:
                projections.append(neck.fold_lateral(level, conv))
            except ValueError:  # a config whose fine levels take part in the top-down path
                projections.append(conv)
        self.high_res_projections = nn.ModuleList(projections)
        for part in (self.image_encoder, self.memory_encoder, self.sam_mask_decoder):
            part.to(memory_format=torch.channels_last)
        self.high_res_projections.to(memory_format=torch.channels_last)
        return self

    # ------------------------------------------------------------------------------------
    # Step 1: image features
    # ------------------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor) -> ImageFeatures:
        """(B, 3, S, S) normalized images -> features of every level the heads use."""
        if self.is_fused:
            images = images.contiguous(memory_format=torch.channels_last)
        feats, pos = self.image_encoder(images)
        if self.high_res_projections is not None:  # fused: laterals folded into these
            proj = self.high_res_projections
            high_res = [proj[0](feats[0]), proj[1](feats[1])]
        else:
            dec = self.sam_mask_decoder
            high_res = [dec.conv_s0(feats[0]), dec.conv_s1(feats[1])]
        return ImageFeatures(high_res=high_res, top=feats[-1], top_pos=pos[-1][:1])

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float RGB in [0, 1] -> normalized model input."""
        return (images - self.pixel_mean) / self.pixel_std

    # ------------------------------------------------------------------------------------
    # Step 2: memory attention
    # ------------------------------------------------------------------------------------
    def attend_memory(
        self,
        top: torch.Tensor,
        top_pos: torch.Tensor,
        memory: torch.Tensor | None,
        memory_pos: torch.Tensor | None,
        num_spatial_mem: int,
        num_obj_ptr_tokens: int,
        memory_mask: torch.Tensor | None = None,
        key_rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(B, C, h, w) features conditioned on memory; ``memory=None`` marks a first frame.

        Without memory the official model adds the learned ``no_mem_embed`` instead of
        running attention.
        """
        b, ch, h, w = top.shape
        if memory is None:
            return top + self.no_mem_embed.view(1, ch, 1, 1)
        assert memory_pos is not None
        curr = top.flatten(2).transpose(1, 2)
        curr_pos = top_pos.flatten(2).transpose(1, 2)
        out = self.memory_attention(
            curr,
            curr_pos,
            memory,
            memory_pos,
            num_spatial_mem,
            num_obj_ptr_tokens,
            memory_mask,
            key_rope,
        )
        return out.transpose(1, 2).reshape(b, ch, h, w)

    def memory_token_pos(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(1, tokens_per_memory, mem_dim) position encoding of one memory frame's tokens."""
        return self.spatial_perceiver.output_pos(device, dtype)

    def pointer_tokens(self, obj_ptrs: torch.Tensor) -> torch.Tensor:
        """(B, P, C) object pointers -> (B, P * C/mem_dim, mem_dim) memory tokens."""
        b, p, _ = obj_ptrs.shape
        return obj_ptrs.reshape(b, p * self.config.ptr_tokens_per_pointer, self.config.mem_dim)

    # ------------------------------------------------------------------------------------
    # Step 3: prompt encoder + mask decoder + pointer and object-score heads
    # ------------------------------------------------------------------------------------
    def predict_masks(
        self,
        pix_feat: torch.Tensor,
        high_res: list[torch.Tensor],
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw SAM heads: (masks (B, M, 4h, 4w), ious (B, M), tokens, object_score (B, 1)).

        Arguments as in ``decode``; no object-score gating and no mask selection here.
        """
        b = pix_feat.shape[0]
        if point_coords is None or point_labels is None:
            point_coords = pix_feat.new_zeros(b, 1, 2)
            point_labels = -torch.ones(b, 1, dtype=torch.int32, device=pix_feat.device)
        if (
            mask_input is not None
            and mask_input.shape[-2:] != self.sam_prompt_encoder.mask_input_size
        ):
            mask_input = F.interpolate(
                mask_input.float(),
                size=self.sam_prompt_encoder.mask_input_size,
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        sparse, dense = self.sam_prompt_encoder(
            points=(point_coords, point_labels), boxes=None, masks=mask_input
        )
        return self.sam_mask_decoder(
            image_embeddings=pix_feat,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse=sparse,
            dense=dense,
            multimask_output=multimask,
            high_res_features=high_res,
        )

    def decode_raw(
        self,
        pix_feat: torch.Tensor,
        high_res: list[torch.Tensor],
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        use_mask: torch.Tensor | None = None,
    ) -> RawDecoderOutput:
        """Every mask token's output, before selection (the exportable part of step 3).

        Args:
            pix_feat: (B, C, h, w) memory-conditioned features.
            high_res: the two decoder high-resolution maps from ``encode_image``.
            point_coords: (B, N, 2) in model-input pixels (0..image_size), or None.
            point_labels: (B, N) int (1 pos, 0 neg, 2/3 box corners, -1 padding), or None.
            mask_input: (B, 1, 4h, 4w) mask logits from a previous prediction, or None.
            use_mask: optional (B,) bool: rows whose ``mask_input`` is used (others get the
                learned no-mask embedding), so a fixed-signature export can take both kinds.
        """
        b = pix_feat.shape[0]
        pe = self.sam_prompt_encoder
        if point_coords is None or point_labels is None:
            point_coords = pix_feat.new_zeros(b, 1, 2)
            point_labels = -torch.ones(b, 1, dtype=torch.int32, device=pix_feat.device)
        sparse = pe.embed_points(point_coords, point_labels, pad=True)
        h, w = pe.image_embedding_size
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(b, -1, h, w)
        if mask_input is None:
            dense = no_mask
        else:
            dense = pe.embed_masks(mask_input)
            if use_mask is not None:
                dense = torch.where(use_mask[:, None, None, None], dense, no_mask)
        masks, ious, tokens, object_score = self.sam_mask_decoder.predict_all(
            pix_feat, pe.get_dense_pe(), sparse, dense, high_res
        )
        return RawDecoderOutput(masks, ious, self.obj_ptr_proj(tokens), object_score[:, 0])

    def select_output(self, raw: RawDecoderOutput, multimask: bool) -> DecoderOutput:
        """The official choice among mask tokens, object-score gating and pointer gating.

        Multimask: the candidate with the best predicted IoU (its pointer too). Single mask:
        token 0, unless it is unstable and the dynamic fallback picks the best candidate
        (the pointer stays token 0's).
        """
        dec = self.sam_mask_decoder
        b = raw.masks.shape[0]
        rows = torch.arange(b, device=raw.masks.device)
        best = raw.ious[:, 1:].argmax(dim=1)
        best_mask = raw.masks[:, 1:][rows, best].unsqueeze(1)
        best_iou = raw.ious[:, 1:][rows, best]
        if multimask:
            masks, ious, ptr = best_mask, best_iou, raw.obj_ptrs[:, 1:][rows, best]
        else:
            masks, ious, ptr = raw.masks[:, :1], raw.ious[:, 0], raw.obj_ptrs[:, 0]
            if dec.dynamic_multimask_via_stability and not self.training:
                stability = stability_scores(masks[:, 0], dec.dynamic_multimask_stability_delta)
                stable = stability >= dec.dynamic_multimask_stability_thresh
                masks = torch.where(stable[:, None, None, None], masks, best_mask)
                ious = torch.where(stable, ious, best_iou)
        present = raw.object_score > 0
        masks = torch.where(present[:, None, None, None], masks, NO_OBJECT_LOGIT).float()
        obj_ptr = self._gate_pointer(ptr, present[:, None].to(ptr.dtype))
        return DecoderOutput(masks, ious, obj_ptr, raw.object_score)

    def decode(
        self,
        pix_feat: torch.Tensor,
        high_res: list[torch.Tensor],
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask: bool = False,
    ) -> DecoderOutput:
        """Masks for B objects from their (memory-conditioned) features and prompts.

        Arguments as in ``decode_raw``; ``multimask`` chooses among 3 candidates by IoU.
        """
        raw = self.decode_raw(pix_feat, high_res, point_coords, point_labels, mask_input)
        return self.select_output(raw, multimask)

    def decode_mask_prompt(
        self, pix_feat: torch.Tensor, high_res: list[torch.Tensor], mask: torch.Tensor
    ) -> DecoderOutput:
        """A mask prompt is taken as the output itself; SAM heads only supply the pointer.

        Args:
            pix_feat: (B, C, h, w) image features (no memory conditioning).
            mask: (B, 1, S, S) binary float mask at model-input resolution.
        """
        from_heads = self.decode(pix_feat, high_res, mask_input=self.mask_downsample(mask))
        return self.mask_prompt_output(mask, from_heads)

    def mask_prompt_output(self, mask: torch.Tensor, from_heads: DecoderOutput) -> DecoderOutput:
        """The output for a mask prompt, given the heads' output on its downsampled mask."""
        logits_hr = mask * MASK_PROMPT_SCALE + MASK_PROMPT_BIAS
        s = logits_hr.shape[-1] // 4
        low = F.interpolate(
            logits_hr, size=(s, s), mode="bilinear", align_corners=False, antialias=True
        )
        present = (mask.flatten(1) > 0).any(dim=1, keepdim=True).float()
        obj_ptr = self._gate_pointer(from_heads.obj_ptr, present)
        object_score = (MASK_PROMPT_SCALE * present + MASK_PROMPT_BIAS)[:, 0]
        return DecoderOutput(low, torch.ones_like(object_score), obj_ptr, object_score)

    def _gate_pointer(self, obj_ptr: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        # Absent objects get the learned fixed "no object" pointer.
        return present * obj_ptr + (1 - present) * self.no_obj_ptr

    # ------------------------------------------------------------------------------------
    # Step 4: memory encoder + 2D Spatial Perceiver
    # ------------------------------------------------------------------------------------
    def encode_memory(
        self, top: torch.Tensor, high_res_logits: torch.Tensor, binarize: torch.Tensor
    ) -> torch.Tensor:
        """Memory tokens of B objects on one frame.

        Args:
            top: (B, C, h, w) image features of the frame (not memory-conditioned).
            high_res_logits: (B, 1, S, S) mask logits at model-input resolution.
            binarize: (B,) bool; True for masks from user prompts (thresholded, not sigmoid).
        Returns:
            (B, tokens_per_memory, mem_dim) memory tokens.
        """
        c = self.config
        probs = torch.where(
            binarize[:, None, None, None],
            (high_res_logits > 0).to(high_res_logits.dtype),
            torch.sigmoid(high_res_logits),
        )
        mask_for_mem = probs * c.sigmoid_scale_for_mem_enc + c.sigmoid_bias_for_mem_enc
        feats = self.memory_encoder(top, mask_for_mem)
        pos = self.memory_pos_encoding(feats[:1])
        return self.spatial_perceiver(feats, pos)
