"""A frame folder or video (plus optional ground truth and prompts) -> a tracking bag.

Frame ``k`` is stamped ``start + k / rate`` (header stamp = bag timestamp) and written as
``/camera/image_raw`` (rgb8; or jpeg ``CompressedImage``) with a ``/camera/camera_info``.
Ground-truth label images go to ``/ground_truth/masks`` with the image's header.

Prompts become ``edgetam_ros/Prompt`` messages on ``/prompt``, timed as the node needs them:
the node applies a prompt to the next frame it processes and refuses prompts before its
first frame, so a prompt for frame ``k`` is written shortly (``min(period / 10, 10 ms)``)
before frame ``k`` and one for frame 0 goes before frame 1 (it applies to frame 1). The first
prompt of an object starts it (``object_id`` 0) with the label ``gt:<its id>``; the node
numbers new objects 1, 2, ... in arrival order, so later prompts for the same object (refine)
carry that number. Prompts from the ground truth (``click`` or ``box``) are taken on the
frame where they apply.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetam_core.errors import InputError, PromptError
from edgetam_core.eval.protocols import farthest_from_boundary, tight_box
from edgetam_core.types import Prompt
from edgetam_ros.bag.bagio import BagWriter
from edgetam_ros.bag.messages import (
    CAMERA_INFO,
    COMPRESSED,
    IMAGE,
    PROMPT,
    TOPICS,
    Topics,
    camera_info_msg,
    compressed_msg,
    gt_label,
    header,
    image_msg,
    prompt_msg,
)

#: Default first stamp: 2000-01-01 (any fixed value keeps bags reproducible).
DEFAULT_START_NS = 946_684_800 * 1_000_000_000


@dataclass
class BagSummary:
    path: Path
    frames: int
    prompts: int
    ground_truth: int
    rate: float
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = (
            f"wrote {self.path}: {self.frames} frames at {self.rate:g} Hz, {self.prompts} "
            f"prompts, {self.ground_truth} ground-truth masks"
        )
        return text + "".join(f"; {n}" for n in self.notes)


def prompts_from_ground_truth(
    truth: Mapping[int, np.ndarray], kind: str = "click", num_frames: int | None = None
) -> dict[int, list[Prompt]]:
    """One prompt per object on the first annotated frame it is visible, ``click`` (the point
    farthest from its boundary) or ``box`` (tight box), taken on the frame where the node
    applies it (frame 1 for frame 0, when there is one and the object is visible there)."""
    if kind not in ("click", "box"):
        raise InputError(f"ground-truth prompt kind must be click or box, got {kind!r}")
    first: dict[int, int] = {}
    for k in sorted(truth):
        for v in np.unique(truth[k]):
            first.setdefault(int(v), k)
    first.pop(0, None)
    out: dict[int, list[Prompt]] = {}
    for oid, k in sorted(first.items()):
        use = k
        if k == 0 and (num_frames is None or num_frames > 1) and 1 in truth \
                and (truth[1] == oid).any():
            use = 1
        mask = truth[use] == oid
        if kind == "click":
            prompt = Prompt.from_clicks(oid, [list(farthest_from_boundary(mask))], [1])
        else:
            prompt = Prompt.from_clicks(oid, None, box=tight_box(mask))
        out.setdefault(use, []).append(prompt)
    return out


def prompt_schedule(
    prompts_by_frame: Mapping[int, Sequence[Prompt]], num_frames: int
) -> list[tuple[int, Prompt, int]]:
    """(frame the prompt is written before, prompt, node object id or 0 for new) in order."""
    if num_frames < 2 and prompts_by_frame:
        raise PromptError("prompts need at least 2 frames (the node takes them after frame 0)")
    node_ids: dict[int, int] = {}
    out = []
    for k in sorted(prompts_by_frame):
        if k >= num_frames:
            raise PromptError(f"prompt on frame {k}, but there are only {num_frames} frames")
        for p in sorted(prompts_by_frame[k], key=lambda q: q.object_id):
            if p.mask is not None:
                raise PromptError(
                    f"object {p.object_id}: mask prompts cannot go into a bag (edgetam_ros/"
                    "Prompt carries points and a box)"
                )
            if p.object_id in node_ids:
                out.append((max(k, 1), p, node_ids[p.object_id]))
            else:
                node_ids[p.object_id] = len(node_ids) + 1
                out.append((max(k, 1), p, 0))
    return out


def frames_to_bag(
    frames: Iterable[np.ndarray],
    out: str | Path,
    num_frames: int,
    rate: float = 10.0,
    prompts: Mapping[int, Sequence[Prompt]] | None = None,
    ground_truth: Mapping[int, np.ndarray] | None = None,
    storage: str = "mcap",
    compressed: bool = False,
    frame_id: str = "camera",
    start_ns: int = DEFAULT_START_NS,
    topics: Topics = TOPICS,
) -> BagSummary:
    """Write a tracking bag (module docstring); ``num_frames`` is the number of ``frames``."""
    if not rate > 0:
        raise InputError(f"rate must be > 0, got {rate}")
    period = int(round(1e9 / rate))
    lead = min(period // 10, 10_000_000)
    schedule = prompt_schedule(prompts or {}, num_frames)
    truth = dict(ground_truth or {})
    notes = []
    existed = Path(out).exists()
    if any(k == 0 for k in (prompts or {})):
        notes.append("prompts for frame 0 apply to frame 1 (the node needs a frame first)")
    count = gt_count = 0
    try:
        with BagWriter(out, storage) as bag:
            for k, rgb in enumerate(frames):
                t = start_ns + k * period
                hdr = header(t, frame_id)
                height, width = rgb.shape[:2]
                due = [(p, node_id) for kk, p, node_id in schedule if kk == k]
                for p, _ in due:
                    try:
                        p.validate(height, width)
                    except PromptError as exc:
                        raise PromptError(f"prompt for object {p.object_id}: {exc}") from None
                for i, (p, node_id) in enumerate(due):
                    msg = prompt_msg(hdr, node_id, gt_label(p.object_id), p.points, p.labels,
                                     p.box)
                    bag.write(topics.prompt, PROMPT, t - lead + i * 1000, msg)
                if compressed:
                    bag.write(topics.compressed, COMPRESSED, t, compressed_msg(rgb, hdr))
                else:
                    bag.write(topics.image, IMAGE, t, image_msg(rgb, hdr, "rgb8"))
                bag.write(topics.camera_info, CAMERA_INFO, t, camera_info_msg(height, width, hdr))
                if k in truth:
                    lab = np.asarray(truth[k])
                    if lab.shape != (height, width):
                        raise InputError(f"ground truth of frame {k} is {lab.shape[1]}x"
                                         f"{lab.shape[0]}, the frame {width}x{height}")
                    bag.write(topics.ground_truth, IMAGE, t, image_msg(lab, hdr, "mono8"))
                    gt_count += 1
                count += 1
            if count != num_frames:
                raise InputError(f"expected {num_frames} frames, read {count}")
    except BaseException:
        if Path(out).is_dir() and not existed:
            shutil.rmtree(out, ignore_errors=True)  # no half-written bag left behind
        raise
    return BagSummary(Path(out), count, len(schedule), gt_count, rate, notes)
