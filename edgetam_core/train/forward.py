"""The differentiable training forward: a clip through EdgeTAM's four steps with a memory bank.

This mirrors ``edgetam_core.tracker.Tracker.step`` (the same steps, prompt handling, mask
selection, object-score gating and memory policy -- it reuses the tracker's ``MemoryBank``)
but keeps gradients, batches B clips with O objects in total, exposes every decoder output
for the losses and the intermediate features for distillation, and adds training-only
interaction: correction clicks sampled where the current mask is wrong.

Differences from inference, all standard for SAM-style training: the decoder runs in training
mode (no dynamic multimask fallback), there is no hole filling, and tracked frames' masks
reach the memory encoder as probabilities so that gradients flow through the memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from edgetam_core.model.edgetam import EdgeTAM, ImageFeatures
from edgetam_core.tracker import MemoryBank, MemoryEntry
from edgetam_core.train.prompts import sample_correction

MASK_INPUT_CLAMP = 32.0  # the tracker clamps a previous mask used as a prompt to +-32


@dataclass
class FramePrompt:
    """Prompts of all O objects on one frame: points/box corners, or a mask.

    ``coords`` (O, N, 2) model-input pixels with ``labels`` (O, N) (1/0 clicks, 2/3 box
    corners, -1 padding); or ``mask`` (O, 1, S, S) binary. ``corrections`` correction clicks
    follow the first prediction (points/box prompts only). On a frame where the objects are
    already tracked, N may be 0: then every click is a correction of the tracked mask.
    """

    coords: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    corrections: int = 0
    # Correction clicks to replay instead of sampling (e.g. for the teacher): (O, 1, 2), (O, 1).
    replay: list[tuple[torch.Tensor, torch.Tensor]] | None = None


@dataclass
class Prediction:
    """One decoder output: every candidate mask (not object-gated) and the heads' outputs."""

    frame: int
    masks: torch.Tensor  # (O, M, s, s) low-res logits
    ious: torch.Tensor  # (O, M)
    object_score: torch.Tensor  # (O,)


@dataclass
class ClipOutput:
    predictions: list[Prediction] = field(default_factory=list)
    frame_logits: list[torch.Tensor] = field(default_factory=list)  # (O, 1, s, s) per frame
    image_top: torch.Tensor | None = None  # (T * B, C, h, w) image-encoder top features
    memory_attention: dict[int, torch.Tensor] = field(default_factory=dict)  # (O, C, h, w)
    corrections: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)


def _decode(
    model: EdgeTAM,
    t: int,
    pix: torch.Tensor,
    high_res: list[torch.Tensor],
    coords: torch.Tensor | None,
    labels: torch.Tensor | None,
    mask_input: torch.Tensor | None,
    multimask: bool,
    out: ClipOutput,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode, record the candidates for the losses, and return what the tracker would keep:
    (gated logits (O, 1, s, s), object pointer (O, C))."""
    raw = model.decode_raw(pix, high_res, coords, labels, mask_input)
    if multimask:
        out.predictions.append(Prediction(t, raw.masks[:, 1:], raw.ious[:, 1:], raw.object_score))
    else:
        out.predictions.append(Prediction(t, raw.masks[:, :1], raw.ious[:, :1], raw.object_score))
    chosen = model.select_output(raw, multimask)
    return chosen.low_res_logits, chosen.obj_ptr


def memory_tokens(
    model: EdgeTAM, memories: list[tuple[int, MemoryEntry]], pointers: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched memory tokens (O, M, mem_dim) and positions, in the tracker's layout.

    Every entry holds all O objects: ``features`` (O, tokens, mem_dim), pointers (O, C).
    """
    c = model.config
    first = memories[0][1].features if memories else pointers[0]
    o, device, dtype = first.shape[0], first.device, first.dtype
    token_pos = model.memory_token_pos(device, dtype)  # (1, T, mem_dim)
    tpos = model.maskmem_tpos_enc  # (num_maskmem, 1, 1, mem_dim)
    feats, poss = [], []
    for slot, entry in memories:
        feats.append(entry.features)
        poss.append((token_pos + tpos[c.num_maskmem - slot - 1]).expand(o, -1, -1))
    if pointers:
        ptr_tokens = model.pointer_tokens(torch.stack(pointers, dim=1))
        feats.append(ptr_tokens)
        poss.append(torch.zeros_like(ptr_tokens))
    return torch.cat(feats, dim=1), torch.cat(poss, dim=1)


def _multimask(model: EdgeTAM, num_points: int) -> bool:
    c = model.config
    return c.multimask_min_pt_num <= num_points <= c.multimask_max_pt_num


def run_clip(
    model: EdgeTAM,
    images: torch.Tensor,
    obj_clip: torch.Tensor,
    prompts: dict[int, FramePrompt],
    targets: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    max_conditioning: int = 4,
    detach_memory: bool = False,
) -> ClipOutput:
    """Run B clips with O objects through the model, frame by frame.

    Args:
        images: (T, B, 3, S, S) normalized frames.
        obj_clip: (O,) long, the clip each object belongs to.
        prompts: frame -> prompts of every object; frame 0 must be prompted.
        targets: (T, O, S, S) ground truth, needed for correction clicks.
        generator: randomness of the correction clicks.
        max_conditioning: conditioning memories an object reads (the tracker's default 4).
        detach_memory: cut gradients between frames (truncated backprop) instead of training
            through the whole clip.
    """
    if 0 not in prompts:
        raise ValueError("frame 0 must be prompted")
    c = model.config
    t_len, b = images.shape[:2]
    out = ClipOutput()
    feats = model.encode_image(images.flatten(0, 1))
    out.image_top = feats.top
    bank = MemoryBank(
        num_recent_memories=c.num_maskmem - 1,
        num_recent_pointers=c.max_obj_ptrs_in_encoder - 1,
        max_conditioning=max_conditioning,
    )
    o = obj_clip.shape[0]
    for t in range(t_len):
        f: ImageFeatures = feats.select(t * b + obj_clip)
        prompt = prompts.get(t)
        logits: torch.Tensor | None = None
        obj_ptr: torch.Tensor | None = None
        pix: torch.Tensor | None = None
        if len(bank) > 0:
            memories, pointers = bank.gather(t, c.num_maskmem)
            memory, memory_pos = memory_tokens(model, memories, pointers)
            pix = model.attend_memory(
                f.top,
                f.top_pos,
                memory,
                memory_pos,
                len(memories),
                len(pointers) * c.ptr_tokens_per_pointer,
            )
            out.memory_attention[t] = pix
            logits, obj_ptr = _decode(model, t, pix, f.high_res, None, None, None, True, out)
        if prompt is not None:
            logits, obj_ptr = _apply_prompt(
                model, t, prompt, f, pix, logits, targets, generator, out
            )
        assert logits is not None and obj_ptr is not None
        out.frame_logits.append(logits)
        if t == t_len - 1:
            break  # the last frame's memory is never read
        s = c.image_size
        high_res = F.interpolate(logits, size=(s, s), mode="bilinear", align_corners=False)
        prompted = torch.full((o,), prompt is not None, dtype=torch.bool, device=logits.device)
        memory_feats = model.encode_memory(f.top, high_res, prompted)
        if detach_memory:
            memory_feats, obj_ptr = memory_feats.detach(), obj_ptr.detach()
        bank.add(MemoryEntry(t, memory_feats, obj_ptr), conditioning=prompt is not None)
        bank.evict(t + 1)
    return out


def _apply_prompt(
    model: EdgeTAM,
    t: int,
    prompt: FramePrompt,
    f: ImageFeatures,
    conditioned: torch.Tensor | None,
    tracked: torch.Tensor | None,
    targets: torch.Tensor | None,
    generator: torch.Generator | None,
    out: ClipOutput,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode prompted objects as the tracker does: new objects without memory, tracked ones
    refined from their memory-conditioned features with the tracked mask as mask input."""
    if prompt.mask is not None:
        dec = model.decode_mask_prompt(f.top, f.high_res, prompt.mask)
        return dec.low_res_logits, dec.obj_ptr
    assert prompt.coords is not None and prompt.labels is not None
    if conditioned is None or tracked is None:
        pix = model.attend_memory(f.top, f.top_pos, None, None, 0, 0)
        mask_input = None
    else:
        pix = conditioned
        mask_input = tracked.detach().clamp(-MASK_INPUT_CLAMP, MASK_INPUT_CLAMP)
    coords, labels = prompt.coords, prompt.labels
    logits: torch.Tensor | None = tracked
    obj_ptr: torch.Tensor | None = None
    clicks: list[tuple[torch.Tensor, torch.Tensor]] = []
    # With no initial points (a refinement frame), every click is a correction of the
    # tracked mask; otherwise the first decode uses the given points.
    first_click = coords.shape[1] == 0
    if first_click and tracked is None:
        raise ValueError(f"frame {t}: a prompt without points needs a tracked object")
    sampled = len(prompt.replay) if prompt.replay is not None else prompt.corrections
    decodes = sampled if first_click else sampled + 1
    if decodes == 0:
        raise ValueError(f"frame {t}: a prompt without points needs corrections >= 1")
    for i in range(decodes):
        if i > 0 or first_click:
            assert logits is not None
            if prompt.replay is not None:
                extra_c, extra_l = prompt.replay[len(clicks)]
            else:
                if targets is None or generator is None:
                    raise ValueError("correction clicks need targets and a generator")
                size = targets.shape[-2:]
                pred = F.interpolate(logits.detach(), size=size, mode="bilinear") > 0
                extra_c, extra_l = sample_correction(pred[:, 0], targets[t], generator)
            clicks.append((extra_c, extra_l))
            coords = torch.cat([coords, extra_c.to(coords.dtype)], dim=1)
            labels = torch.cat([labels, extra_l.to(labels.dtype)], dim=1)
            if i > 0:
                mask_input = logits.detach().clamp(-MASK_INPUT_CLAMP, MASK_INPUT_CLAMP)
        multimask = _multimask(model, labels.shape[1])
        logits, obj_ptr = _decode(
            model, t, pix, f.high_res, coords, labels, mask_input, multimask, out
        )
    if clicks:
        out.corrections[t] = clicks
    assert logits is not None and obj_ptr is not None
    return logits, obj_ptr
