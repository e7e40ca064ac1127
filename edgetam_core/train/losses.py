"""Training losses: dice, sigmoid focal, IoU L1, occlusion BCE and feature MSE (distillation).

Mask losses compare logits (B, H, W) with binary targets of the same size. ``segment_loss``
combines them for one prediction of several candidate masks the way SAM-style training does:
the candidate with the lowest dice+focal loss takes the mask loss, every candidate's
predicted IoU is regressed onto its actual IoU, and mask/IoU terms only count for objects
that are present on the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    """Weights of the task and distillation losses (defaults: the EdgeTAM/SAM 2 recipe)."""

    dice: float = 20.0
    focal: float = 1.0
    iou: float = 1.0
    occlusion: float = 1.0
    image_distill: float = 1.0  # gamma (stage 1) / alpha (stage 2): MSE on F16 features
    memory_distill: float = 1.0  # beta (stage 2): MSE on memory-attention outputs
    # Mask loss of the candidates that are not the best one (multimask outputs). 0 is SAM's
    # rule; a small weight keeps every candidate on the prompted object, which stops a
    # from-scratch model from spreading its candidates over different objects and ignoring
    # the click (useful on data without part/whole ambiguity, e.g. the synthetic world).
    other_candidates: float = 0.0
    # Weight of the absent (object-not-visible) items in the occlusion loss, relative to the
    # present ones (1 is SAM 2's plain BCE). Absent frames are rare in short clips (~7 % of the
    # synthetic world's 8-frame windows): with plain BCE a from-scratch object-score head
    # settles on the prior (always "present", whatever the frame) and never learns absence.
    occlusion_absent: float = 1.0


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft dice per item: logits and targets (..., H, W) -> (...)."""
    probs = torch.sigmoid(logits).flatten(-2)
    t = targets.flatten(-2).to(probs.dtype)
    inter = (probs * t).sum(-1)
    return 1.0 - (2.0 * inter + eps) / (probs.sum(-1) + t.sum(-1) + eps)


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Sigmoid focal loss averaged over pixels: (..., H, W) -> (...)."""
    t = targets.to(logits.dtype)
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss.flatten(-2).mean(-1)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with binary targets, (..., H, W) -> (...); 1 when both are empty."""
    pred = (logits > 0).flatten(-2)
    t = targets.flatten(-2).bool()
    inter = (pred & t).sum(-1).float()
    union = (pred | t).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def occlusion_loss(
    object_score: torch.Tensor, present: torch.Tensor, absent_weight: float = 1.0
) -> torch.Tensor:
    """BCE of object-score logits (B,) against presence (B,), weighted mean over items (absent
    items count ``absent_weight`` times) -> scalar."""
    bce = F.binary_cross_entropy_with_logits(
        object_score, present.to(object_score.dtype), reduction="none"
    )
    if absent_weight == 1.0:
        return bce.mean()
    w = torch.where(present, torch.ones_like(bce), torch.full_like(bce, absent_weight))
    return (bce * w).sum() / w.sum()


def feature_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error of two (B, C, h, w) maps; the student's grid is resized if needed."""
    if student.shape[-2:] != teacher.shape[-2:]:
        teacher = F.interpolate(
            teacher, size=student.shape[-2:], mode="bilinear", align_corners=False
        )
    return F.mse_loss(student, teacher.to(student.dtype))


@dataclass
class SegmentLoss:
    """Loss terms of one prediction, each already averaged over objects."""

    total: torch.Tensor
    dice: torch.Tensor
    focal: torch.Tensor
    iou: torch.Tensor
    occlusion: torch.Tensor
    # Actual IoU of the candidate inference would keep (highest predicted IoU), averaged over
    # present objects: the honest training accuracy (for logging).
    mean_iou: torch.Tensor


def segment_loss(
    masks: torch.Tensor,
    pred_ious: torch.Tensor,
    object_score: torch.Tensor,
    targets: torch.Tensor,
    weights: LossWeights,
    supervise_masks: bool = True,
) -> SegmentLoss:
    """Loss of one decoder output for O objects.

    Args:
        masks: (O, M, H, W) candidate logits at the targets' resolution (not object-gated).
        pred_ious: (O, M) predicted IoUs.
        object_score: (O,) object-score logits.
        targets: (O, H, W) binary ground truth; an empty target means the object is absent.
        supervise_masks: False for outputs that are a copy of a mask prompt (no mask loss).
    """
    present = targets.flatten(1).any(dim=1)  # (O,)
    tgt = targets[:, None].expand_as(masks)
    dice = dice_loss(masks, tgt)  # (O, M)
    focal = focal_loss(masks, tgt)
    combined = weights.dice * dice + weights.focal * focal
    best = combined.argmin(dim=1)  # lowest-loss candidate takes the mask loss
    rows = torch.arange(masks.shape[0], device=masks.device)
    with torch.no_grad():
        actual = mask_iou(masks, tgt)  # (O, M)
    iou_l1 = (pred_ious - actual).abs().mean(dim=1)
    pres = present.to(masks.dtype)
    n_present = pres.sum().clamp(min=1.0)
    if supervise_masks:
        dice_o, focal_o = dice[rows, best], focal[rows, best]
        if weights.other_candidates > 0 and masks.shape[1] > 1:
            others = masks.shape[1] - 1
            rest_d = (dice.sum(dim=1) - dice_o) / others
            rest_f = (focal.sum(dim=1) - focal_o) / others
            dice_o = dice_o + weights.other_candidates * rest_d
            focal_o = focal_o + weights.other_candidates * rest_f
        dice_t = (dice_o * pres).sum() / n_present
        focal_t = (focal_o * pres).sum() / n_present
        iou_t = (iou_l1 * pres).sum() / n_present
    else:
        dice_t = focal_t = iou_t = masks.new_zeros(())
    occ = occlusion_loss(object_score, present, weights.occlusion_absent)
    total = weights.dice * dice_t + weights.focal * focal_t + weights.iou * iou_t
    total = total + weights.occlusion * occ
    kept = pred_ious.detach().argmax(dim=1)
    chosen_iou = (actual[rows, kept] * pres).sum() / n_present
    return SegmentLoss(total, dice_t, focal_t, iou_t, occ, chosen_iou)
