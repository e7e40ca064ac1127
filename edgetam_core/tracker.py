"""Streaming multi-object tracker: the memory bank and all per-stream state.

Frames arrive one at a time. For each frame the tracker runs the model's four stateless steps
(encode image -> attend memory -> decode -> encode memory) for every object at once and
updates each object's bounded ``MemoryBank``. Objects can be added, refined and removed at
any frame; the others keep their memory.

The memory policy is the official video predictor's (memory frames at t-1..t-6 plus the
conditioning frames, object pointers from the last 15 frames plus the conditioning frames),
restricted to what a forward-running stream can read, so nothing grows with the number of
frames: a bank holds at most ``num_maskmem - 1`` recent memories, ``max_obj_ptrs - 1`` recent
pointers and ``max_conditioning_frames`` conditioning memories (+ those still inside the
recent windows).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from edgetam_core.backends.base import Backend, as_backend
from edgetam_core.config import EdgeTAMConfig
from edgetam_core.errors import InputError, PromptError
from edgetam_core.model.edgetam import DecoderOutput, EdgeTAM, ImageFeatures
from edgetam_core.postprocess import fill_small_holes
from edgetam_core.preprocess import frame_to_input_video, mask_prompt_input, prompt_points
from edgetam_core.types import FrameResult, ObjectResult, Prompt

log = logging.getLogger(__name__)


@dataclass
class MemoryEntry:
    """One frame's memory of one object."""

    frame_index: int
    features: torch.Tensor  # (tokens_per_memory, mem_dim), stored in the bank's dtype
    obj_ptr: torch.Tensor  # (hidden_dim,) float32


@dataclass
class MemoryBank:
    """Bounded memory of one object.

    ``conditioning`` holds prompted frames (ordered by frame); ``recent`` the latest
    unprompted frames, of which only the newest ``num_maskmem - 1`` keep their features
    (older ones keep just their object pointer, which is all later frames read).
    """

    num_recent_memories: int
    num_recent_pointers: int
    max_conditioning: int
    conditioning: dict[int, MemoryEntry] = field(default_factory=dict)
    recent: collections.deque[MemoryEntry] = field(default_factory=collections.deque)

    def add(self, entry: MemoryEntry, conditioning: bool) -> None:
        if conditioning:
            self.conditioning[entry.frame_index] = entry
        else:
            self.recent.append(entry)
        while len(self.recent) > self.num_recent_pointers:
            self.recent.popleft()
        # Pointer-only entries: drop features nothing will read again.
        for old in list(self.recent)[: max(0, len(self.recent) - self.num_recent_memories)]:
            old.features = old.features[:0]

    def select_conditioning(
        self, frame_index: int
    ) -> tuple[list[MemoryEntry], dict[int, MemoryEntry]]:
        """(selected, unselected) conditioning memories for reading at ``frame_index``.

        The official rule: the closest before, the closest after, then the temporally
        closest, up to ``max_conditioning`` (no limit when it is < 0).
        """
        cond = self.conditioning
        if self.max_conditioning < 0 or len(cond) <= self.max_conditioning:
            return list(cond.values()), {}
        chosen: list[int] = []
        before = [t for t in cond if t < frame_index]
        after = [t for t in cond if t >= frame_index]
        if before:
            chosen.append(max(before))
        if after:
            chosen.append(min(after))
        rest = sorted((t for t in cond if t not in chosen), key=lambda t: abs(t - frame_index))
        chosen += rest[: self.max_conditioning - len(chosen)]
        selected = [cond[t] for t in cond if t in chosen]
        unselected = {t: e for t, e in cond.items() if t not in chosen}
        return selected, unselected

    def evict(self, frame_index: int) -> None:
        """Forget conditioning memories that no later frame can read."""
        _, unselected = self.select_conditioning(frame_index)
        horizon = frame_index - self.num_recent_pointers
        for t in unselected:
            if t < horizon:
                del self.conditioning[t]

    def gather(
        self, frame_index: int, num_maskmem: int
    ) -> tuple[list[tuple[int, MemoryEntry]], list[torch.Tensor]]:
        """Memories as (temporal slot, entry) and pointers, in the official reading order."""
        selected, unselected = self.select_conditioning(frame_index)
        recent = {e.frame_index: e for e in self.recent}
        memories: list[tuple[int, MemoryEntry]] = [(0, e) for e in selected]
        for slot in range(1, num_maskmem):
            t = frame_index - (num_maskmem - slot)
            entry = recent.get(t) or unselected.get(t)
            if entry is not None and entry.features.shape[0] > 0:
                memories.append((slot, entry))
        pointers = [e.obj_ptr for e in selected if e.frame_index <= frame_index]
        for dt in range(1, self.num_recent_pointers + 1):
            t = frame_index - dt
            if t < 0:
                break
            entry = recent.get(t) or unselected.get(t)
            if entry is not None:
                pointers.append(entry.obj_ptr)
        return memories, pointers

    def __len__(self) -> int:
        return len(self.conditioning) + len(self.recent)

    def nbytes(self) -> int:
        entries = list(self.conditioning.values()) + list(self.recent)
        return sum(
            e.features.numel() * e.features.element_size() + e.obj_ptr.numel() * 4 for e in entries
        )


@dataclass
class ObjectTrack:
    """One tracked object: its id, when it started, and its memory bank."""

    object_id: int
    first_frame: int
    bank: MemoryBank


def merge_prompts(prompts: Iterable[Prompt]) -> dict[int, Prompt]:
    """Combine prompts for the same object on one frame (clicks append; last box/mask wins)."""
    merged: dict[int, Prompt] = {}
    for p in prompts:
        prev = merged.get(p.object_id)
        if prev is None or p.mask is not None or prev.mask is not None:
            merged[p.object_id] = p
            continue
        points, labels = prev.points, prev.labels
        if p.points is not None:
            points = p.points if points is None else np.concatenate([points, p.points])
            labels = p.labels if labels is None else np.concatenate([labels, p.labels])
        merged[p.object_id] = Prompt(
            p.object_id, points, labels, p.box if p.box is not None else prev.box
        )
    return merged


class Tracker:
    """Tracks any number of prompted objects (up to ``max_objects``) through a frame stream.

    Args:
        model: the network (run eagerly in fp32) or a ``Backend`` (see ``edgetam_core.backends``).
        max_objects: upper bound on simultaneously tracked objects.
        max_conditioning_frames: prompted frames an object keeps reading (most recent first);
            -1 keeps all of them (the official default, unbounded under endless refinement).
        refinements_as_conditioning: a prompt on an already tracked object makes that frame a
            conditioning frame (kept beyond the recent window), as SAM 2's interactive mode
            ``add_all_frames_to_correct_as_cond`` does. False matches the official default.
        memory_dtype: dtype of stored memory features (bfloat16, as the official predictor).
        mask_threshold: logit threshold of the binary masks in results.
        device: where the model runs.
    """

    def __init__(
        self,
        model: EdgeTAM | Backend,
        max_objects: int = 16,
        max_conditioning_frames: int = 4,
        refinements_as_conditioning: bool = True,
        memory_dtype: torch.dtype = torch.bfloat16,
        mask_threshold: float = 0.0,
        device: str | torch.device | None = None,
    ) -> None:
        if max_objects < 1:
            raise ValueError("max_objects must be >= 1")
        if max_conditioning_frames == 0 or max_conditioning_frames < -1:
            raise ValueError("max_conditioning_frames must be >= 1, or -1 for no limit")
        self.backend = as_backend(model)
        self.config: EdgeTAMConfig = self.backend.config
        self.device = torch.device(device) if device is not None else self.backend.device
        if self.backend.memory_slots is not None:
            need_mem = max_conditioning_frames + self.config.num_maskmem - 1
            need_ptr = max_conditioning_frames + self.config.max_obj_ptrs_in_encoder - 1
            mem_slots, ptr_slots = self.backend.memory_slots
            if max_conditioning_frames < 0 or need_mem > mem_slots or need_ptr > ptr_slots:
                raise ValueError(
                    f"backend {self.backend.name} has room for {mem_slots} memories and "
                    f"{ptr_slots} pointers; max_conditioning_frames={max_conditioning_frames} "
                    f"needs {need_mem} and {need_ptr}"
                )
        self.max_objects = max_objects
        self.max_conditioning_frames = max_conditioning_frames
        self.refinements_as_conditioning = refinements_as_conditioning
        self.memory_dtype = memory_dtype
        self.mask_threshold = mask_threshold
        self._tracks: dict[int, ObjectTrack] = {}
        self._pending: list[Prompt] = []
        self._frame_index = -1
        self._frame_size: tuple[int, int] | None = None

    # ----------------------------------------------------------------------------------
    # The user's verbs
    # ----------------------------------------------------------------------------------
    @property
    def object_ids(self) -> list[int]:
        return sorted(self._tracks)

    @property
    def frame_index(self) -> int:
        """Index of the last processed frame (-1 before the first)."""
        return self._frame_index

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(H, W) of the last processed frame."""
        return self._frame_size

    def bank(self, object_id: int) -> MemoryBank:
        return self._track(object_id).bank

    def add_prompt(self, prompt: Prompt) -> None:
        """Queue a prompt for the next frame; validated now against the last frame's size."""
        if self._frame_size is not None:
            prompt.validate(*self._frame_size)
        self._check_capacity([*self._pending, prompt])
        self._pending.append(prompt)

    def remove(self, object_id: int) -> None:
        """Stop tracking ``object_id`` and free its memory (queued prompts for it are dropped)."""
        self._track(object_id)
        del self._tracks[object_id]
        self._pending = [p for p in self._pending if p.object_id != object_id]

    def reset(self) -> None:
        """Forget every object, queued prompt and memory."""
        self._tracks.clear()
        self._pending.clear()
        self._frame_index = -1
        self._frame_size = None

    @torch.inference_mode()
    def step(self, frame: np.ndarray, prompts: Sequence[Prompt] = ()) -> FrameResult:
        """Process the next frame (H, W, 3) uint8 RGB, applying ``prompts`` (and queued ones).

        Bad prompts raise ``PromptError`` and a bad frame raises ``InputError`` before any
        state changes.
        """
        height, width = self._check_frame(frame)
        events: list[str] = []
        all_prompts = [*self._pending, *prompts]
        resized = self._frame_size is not None and self._frame_size != (height, width)
        for p in all_prompts:
            p.validate(height, width)
        self._check_capacity(all_prompts, forget_existing=resized)

        if resized:
            assert self._frame_size is not None
            old_h, old_w = self._frame_size
            events.append(
                f"frame size changed from {old_w}x{old_h} to {width}x{height}: "
                f"memory of {len(self._tracks)} object(s) cleared; prompt again"
            )
            self._tracks.clear()
        self._pending = []
        self._frame_size = (height, width)
        self._frame_index += 1
        k = self._frame_index
        timings: dict[str, float] = {}
        prompt_by_id = merge_prompts(all_prompts)

        t0 = time.perf_counter()
        features = self._encode_frame(frame)
        timings["image_encoder"] = _ms_since(t0)

        outputs: dict[int, DecoderOutput] = {}
        from_prompt: dict[int, bool] = {}
        t0 = time.perf_counter()
        tracked_ids = list(self.object_ids)
        tracked_feat = self._track_existing(k, tracked_ids, features, outputs, timings)
        timings["track"] = _ms_since(t0)

        t0 = time.perf_counter()
        for obj_id, prompt in sorted(prompt_by_id.items()):
            out = self._apply_prompt(
                obj_id,
                prompt,
                features,
                tracked_feat.get(obj_id),
                outputs.get(obj_id),
                width,
                height,
            )
            outputs[obj_id] = out
            from_prompt[obj_id] = True
            if obj_id not in self._tracks:
                self._tracks[obj_id] = ObjectTrack(obj_id, k, self._new_bank())
        timings["prompts"] = _ms_since(t0)

        ids = sorted(outputs)
        result = FrameResult(
            frame_index=k, height=height, width=width, events=events, timings_ms=timings
        )
        if not ids:
            return result
        low_res = torch.cat([outputs[i].low_res_logits for i in ids])
        # Hole filling is the official post-processing of every output (and of prompted
        # frames' memories); tracked frames' memories use the unfilled prediction.
        filled = fill_small_holes(low_res, self.config.fill_hole_area)

        t0 = time.perf_counter()
        prompted = torch.tensor([from_prompt.get(i, False) for i in ids], device=self.device)
        mem_input = torch.where(prompted[:, None, None, None], filled, low_res)
        s = self.config.image_size
        high_res = F.interpolate(mem_input, size=(s, s), mode="bilinear", align_corners=False)
        memory = self.backend.encode_memory(
            features.top.expand(len(ids), -1, -1, -1), high_res, prompted
        )
        memory = memory.to(self.memory_dtype)
        for row, obj_id in enumerate(ids):
            track = self._tracks[obj_id]
            is_cond = bool(prompted[row]) and (
                track.first_frame == k or self.refinements_as_conditioning
            )
            track.bank.add(MemoryEntry(k, memory[row], outputs[obj_id].obj_ptr[0].float()), is_cond)
            track.bank.evict(k + 1)
        timings["memory_encoder"] = _ms_since(t0)

        t0 = time.perf_counter()
        full = F.interpolate(filled, size=(height, width), mode="bilinear", align_corners=False)
        full_np = full[:, 0].float().cpu().numpy()
        low_np = filled[:, 0].float().cpu().numpy()
        for row, obj_id in enumerate(ids):
            out = outputs[obj_id]
            result.objects[obj_id] = ObjectResult(
                object_id=obj_id,
                logits=full_np[row],
                low_res_logits=low_np[row],
                iou=float(out.iou[0]),
                object_score=float(out.object_score[0]),
                mask_threshold=self.mask_threshold,
            )
        timings["postprocess"] = _ms_since(t0)
        return result

    # ----------------------------------------------------------------------------------
    # Internals
    # ----------------------------------------------------------------------------------
    def _track(self, object_id: int) -> ObjectTrack:
        track = self._tracks.get(object_id)
        if track is None:
            known = ", ".join(map(str, self.object_ids)) or "none"
            raise PromptError(f"unknown object id {object_id} (tracked: {known})")
        return track

    def _new_bank(self) -> MemoryBank:
        c = self.config
        return MemoryBank(
            num_recent_memories=c.num_maskmem - 1,
            num_recent_pointers=c.max_obj_ptrs_in_encoder - 1,
            max_conditioning=self.max_conditioning_frames,
        )

    def _check_capacity(self, prompts: Sequence[Prompt], forget_existing: bool = False) -> None:
        existing = set() if forget_existing else set(self._tracks)
        wanted = existing | {p.object_id for p in prompts}
        if len(wanted) > self.max_objects:
            raise PromptError(
                f"too many objects: {len(wanted)} requested, max_objects is {self.max_objects}"
            )

    @staticmethod
    def _check_frame(frame: np.ndarray) -> tuple[int, int]:
        if not isinstance(frame, np.ndarray):
            raise InputError(f"frame must be a numpy array, got {type(frame).__name__}")
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError(f"frame must be HxWx3 RGB, got shape {frame.shape}")
        if frame.dtype != np.uint8:
            raise InputError(f"frame must be uint8, got {frame.dtype}")
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            raise InputError("frame is empty")
        return int(frame.shape[0]), int(frame.shape[1])

    def preprocess(self, frame: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, S, S) normalized model input (PIL bicubic resize)."""
        return self.backend.normalize(
            frame_to_input_video(frame, self.config.image_size, self.device)
        )

    def _encode_frame(self, frame: np.ndarray) -> ImageFeatures:
        return self.backend.encode_image(self.preprocess(frame))

    def _track_existing(
        self,
        k: int,
        ids: list[int],
        features: ImageFeatures,
        outputs: dict[int, DecoderOutput],
        timings: dict[str, float],
    ) -> dict[int, torch.Tensor]:
        """Memory attention + decoding for every existing object in one batch.

        With a variable-layout backend, objects whose banks hold the same number of memories
        and pointers share a batch (all of them once their banks are full); a fixed-slot
        backend takes every object at once with a padded bank and a validity mask.
        """
        groups: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
        gathered = {}
        for obj_id in ids:
            memories, pointers = self._tracks[obj_id].bank.gather(k, self.config.num_maskmem)
            gathered[obj_id] = (memories, pointers)
            key = self.backend.memory_slots or (len(memories), len(pointers))
            groups[key].append(obj_id)
        conditioned: dict[int, torch.Tensor] = {}
        attn_ms = dec_ms = 0.0
        for (n_mem, n_ptr), group in groups.items():
            t0 = time.perf_counter()
            memory, memory_pos, valid = self._memory_tokens(
                [gathered[i] for i in group], n_mem, n_ptr
            )
            top = features.top.expand(len(group), -1, -1, -1)
            pix = self.backend.attend_memory(
                top,
                features.top_pos,
                memory,
                memory_pos,
                n_mem,
                n_ptr * self.config.ptr_tokens_per_pointer,
                valid,
            )
            attn_ms += _ms_since(t0)
            t0 = time.perf_counter()
            out = self.backend.decode(
                pix, features.expand(len(group)).high_res, multimask=self._multimask(False, 0)
            )
            dec_ms += _ms_since(t0)
            for row, obj_id in enumerate(group):
                conditioned[obj_id] = pix[row : row + 1]
                outputs[obj_id] = _row(out, row)
        timings["memory_attention"] = attn_ms
        timings["mask_decoder"] = dec_ms
        return conditioned

    def _memory_tokens(
        self,
        per_object: list[tuple[list[tuple[int, MemoryEntry]], list[torch.Tensor]]],
        num_memories: int,
        num_pointers: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(B, M, mem_dim) memory tokens, their positions and (padded layouts only) validity.

        Memories fill ``num_memories`` blocks and pointers ``num_pointers`` slots; unused
        slots are zero and marked invalid so attention ignores them.
        """
        backend = self.backend
        dtype = torch.float32
        token_pos = backend.memory_token_pos(self.device, dtype)[0]  # (T, mem_dim)
        tpos = backend.maskmem_tpos_enc  # (num_maskmem, 1, 1, mem_dim)
        n = self.config.num_maskmem
        t, per_ptr, dim = (
            token_pos.shape[0],
            self.config.ptr_tokens_per_pointer,
            self.config.mem_dim,
        )
        total = num_memories * t + num_pointers * per_ptr
        mem = torch.zeros(len(per_object), total, dim, device=self.device, dtype=dtype)
        pos = torch.zeros_like(mem)
        valid = torch.zeros(len(per_object), total, dtype=torch.bool, device=self.device)
        ptr_start = num_memories * t
        for row, (memories, pointers) in enumerate(per_object):
            if len(memories) > num_memories or len(pointers) > num_pointers:
                raise RuntimeError("memory bank exceeds the backend's fixed slots")
            for i, (slot, entry) in enumerate(memories):
                block = slice(i * t, (i + 1) * t)
                mem[row, block] = entry.features.to(dtype)
                pos[row, block] = token_pos + tpos[n - slot - 1, 0]
                valid[row, block] = True
            if pointers:
                tokens = backend.pointer_tokens(torch.stack(pointers)[None])[0]
                mem[row, ptr_start : ptr_start + tokens.shape[0]] = tokens
                valid[row, ptr_start : ptr_start + tokens.shape[0]] = True
        return mem, pos, (None if bool(valid.all()) else valid)

    def _multimask(self, is_init_cond_frame: bool, num_points: int) -> bool:
        # Official rule: multimask on first-frame clicks and while tracking when <= 1 point.
        del is_init_cond_frame  # multimask_output_for_tracking is on in EdgeTAM
        c = self.config
        return c.multimask_min_pt_num <= num_points <= c.multimask_max_pt_num

    def _apply_prompt(
        self,
        obj_id: int,
        prompt: Prompt,
        features: ImageFeatures,
        conditioned: torch.Tensor | None,
        tracked: DecoderOutput | None,
        width: int,
        height: int,
    ) -> DecoderOutput:
        """Decode one prompted object: a new object (no memory) or a refinement of a tracked one."""
        one = features.expand(1)
        size = self.config.image_size
        if prompt.mask is not None:
            mask = mask_prompt_input(prompt.mask, size, self.device)
            return self.backend.decode_mask_prompt(one.top, one.high_res, mask)
        points = prompt_points(prompt, width, height, size, self.device)
        assert points is not None  # validated: a prompt without a mask has points or a box
        coords, labels = points
        if conditioned is None or tracked is None:
            pix = self.backend.attend_memory(one.top, one.top_pos, None, None, 0, 0)
            return self.backend.decode(
                pix, one.high_res, coords, labels, multimask=self._multimask(True, labels.shape[1])
            )
        # Refinement: the tracked prediction of this frame is the mask input, as when a user
        # clicks on an already tracked frame in the official predictor.
        previous = fill_small_holes(tracked.low_res_logits, self.config.fill_hole_area).clamp(
            -32.0, 32.0
        )
        return self.backend.decode(
            conditioned,
            one.high_res,
            coords,
            labels,
            mask_input=previous,
            multimask=self._multimask(False, labels.shape[1]),
        )


def _row(out: DecoderOutput, row: int) -> DecoderOutput:
    sl = slice(row, row + 1)
    return DecoderOutput(out.low_res_logits[sl], out.iou[sl], out.obj_ptr[sl], out.object_score[sl])


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
