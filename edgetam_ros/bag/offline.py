"""The tracker node's logic run straight over a bag: no DDS, deterministic, every frame.

``NodeLogic`` does what ``tracker_node`` does with its inputs, with the node's default
parameters (``click_mode`` new, ``mask_threshold`` 0, ``max_objects`` 16): a prompt or click
is checked against the size of the last processed image (refused before the first one),
``object_id`` 0 starts a new object with the smallest free id, others refine a known object,
and every queued prompt applies to the next image. For each image it produces the ``masks``
label image and the ``tracks`` summaries the node publishes, with the image's header. So a
live replay through the node that drops no frame gives the same masks (``test_bag_live``).

``run_offline`` reads a bag's images, prompts and clicks in timestamp order and writes
``/masks`` and ``/tracks`` to a new bag, each stamped (bag time) at its image's time plus the
tracker's processing time, so ``edgetam-bag eval`` reads it like a live recording.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetam_core.errors import EdgeTAMError, InputError, PromptError
from edgetam_core.types import Prompt
from edgetam_ros.bag.bagio import INFO_KEY, RATE_KEY, SOURCE_KEY, BagWriter, read_messages
from edgetam_ros.bag.messages import (
    COMPRESSED,
    IMAGE,
    POINT,
    PROMPT,
    TOPICS,
    TRACKS,
    Topics,
    image_msg,
    tracks_msg,
)
from edgetam_ros.conversions import (
    ObjectSummary,
    compressed_to_rgb,
    image_to_rgb,
    label_image,
    masks_of,
    summarize,
)
from edgetam_ros.params import PARAMS
from edgetam_ros.prompts import ClickPrompter, next_free_id, prompt_from_fields

DEFAULTS = {p.name: p.default for p in PARAMS}


class NodeLogic:
    """The tracker node's handling of prompts, clicks and images, without ROS."""

    def __init__(self, tracker: Any, max_objects: int | None = None,
                 mask_threshold: float | None = None) -> None:
        self.tracker = tracker
        self.max_objects = int(max_objects if max_objects is not None
                               else DEFAULTS["max_objects"])
        self.mask_threshold = float(mask_threshold if mask_threshold is not None
                                    else DEFAULTS["mask_threshold"])
        self.frame_size: tuple[int, int] | None = None
        self.pending: list[Prompt] = []
        self.labels: dict[int, str] = {}
        self.prompter = ClickPrompter()
        self.refused: list[str] = []

    def _expected_ids(self) -> set[int]:
        return set(self.tracker.object_ids) | {p.object_id for p in self.pending}

    def prompt(self, object_id: int, label: str, points: Sequence[Any],
               point_labels: Sequence[int], box: Sequence[float]) -> tuple[bool, str]:
        """A Prompt message (or AddPrompt request): (accepted, message)."""
        if self.frame_size is None:
            return self._refuse("no image processed yet")
        ids = self._expected_ids()
        oid = int(object_id)
        try:
            if oid == 0:
                if len(ids) >= self.max_objects:
                    raise PromptError(f"already tracking {len(ids)} objects "
                                      f"(max_objects is {self.max_objects})")
                oid = next_free_id(ids)
            elif oid not in ids:
                raise PromptError(f"unknown object id {oid}")
            prompt = prompt_from_fields(oid, list(points), list(point_labels), list(box),
                                        self.frame_size)
        except PromptError as exc:
            return self._refuse(str(exc))
        self.pending.append(prompt)
        if label:
            self.labels[oid] = str(label)
        self.prompter.prompted(oid, prompt.points, prompt.labels, replace=int(object_id) == 0)
        return True, f"object {oid}"

    def click(self, x: float, y: float) -> tuple[bool, str]:
        """An ``image_mouse_left`` click (click_mode new)."""
        if self.frame_size is None:
            return self._refuse("click before any image")
        try:
            prompt = self.prompter.click(x, y, "new", self._expected_ids(), self.max_objects,
                                         self.frame_size)
        except PromptError as exc:
            return self._refuse(str(exc))
        self.pending.append(prompt)
        return True, f"object {prompt.object_id}"

    def _refuse(self, why: str) -> tuple[bool, str]:
        self.refused.append(why)
        return False, why

    def image(self, rgb: np.ndarray) -> tuple[np.ndarray, list[ObjectSummary], float]:
        """Track one frame: (label image, summaries, seconds in the tracker)."""
        height, width = rgb.shape[:2]
        resized = self.frame_size is not None and self.frame_size != (height, width)
        existing = set() if resized else set(self.tracker.object_ids)
        usable = []
        for p in self.pending:
            try:
                p.validate(height, width)
            except PromptError as exc:
                self.refused.append(f"prompt for object {p.object_id} dropped: {exc}")
                continue
            if p.object_id not in existing and len(existing) >= self.tracker.max_objects:
                self.refused.append(f"prompt for object {p.object_id} dropped: max_objects")
                continue
            existing.add(p.object_id)
            usable.append(p)
        self.pending = []
        t0 = time.perf_counter()
        try:
            result = self.tracker.step(rgb, prompts=usable)
        except PromptError as exc:
            self.refused.append(f"prompts dropped: {exc}")
            result = self.tracker.step(rgb)
        seconds = time.perf_counter() - t0
        keep = set(self.tracker.object_ids)
        self.prompter.keep_only(keep)
        self.labels = {o: lbl for o, lbl in self.labels.items() if o in keep}
        self.frame_size = (height, width)
        masks = masks_of(result, self.mask_threshold)
        return label_image(result, masks), summarize(result, masks, dict(self.labels)), seconds


@dataclass
class OfflineSummary:
    path: Path
    frames: int
    prompts: int
    seconds: float
    refused: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ms_per_frame(self) -> float:
        return 1000.0 * self.seconds / max(1, self.frames)

    def line(self) -> str:
        text = (f"tracked {self.frames} frames offline ({self.prompts} prompts) at "
                f"{self.ms_per_frame:.0f} ms/frame; masks and tracks in {self.path}")
        if self.refused:
            text += f"; {len(self.refused)} prompt(s) refused: {self.refused[0]}"
        return text


def build_tracker(checkpoint: str, device: str = "cpu",
                  max_objects: int | None = None) -> tuple[Any, str]:
    """A Tracker as the node builds it.

    ``demo``/``default`` is the bundled demo model, ``random`` random weights.
    """
    from edgetam_core.backends import create_backend
    from edgetam_core.cli.track import resolve_model
    from edgetam_core.tracker import Tracker

    model, desc = resolve_model(checkpoint, device)
    # The node's runtime: the eager backend, fused for inference (BatchNorm folded,
    # channels-last). The unfused model rounds differently: on an AMX CPU one pixel in
    # 19,200 of a 3-frame clip came out otherwise, and offline must equal live exactly.
    tracker = Tracker(
        create_backend(str(DEFAULTS["backend"]), model, precision=str(DEFAULTS["precision"])),
        max_objects=int(max_objects if max_objects is not None else DEFAULTS["max_objects"]),
        mask_threshold=float(DEFAULTS["mask_threshold"]),
        device=device,
    )
    return tracker, desc


def run_offline(
    bag: str | Path,
    out: str | Path,
    tracker: Any,
    storage: str = "mcap",
    topics: Topics = TOPICS,
    info: dict[str, Any] | None = None,
    progress: bool | None = False,
) -> OfflineSummary:
    """Track every image of ``bag`` with ``NodeLogic`` and write ``/masks`` and ``/tracks``."""
    from tqdm import tqdm

    tracker.reset()
    logic = NodeLogic(tracker, max_objects=tracker.max_objects)
    wanted = (topics.image, topics.compressed, topics.prompt, topics.click)
    frames = prompts = 0
    seconds = 0.0
    bar = tqdm(desc="edgetam-bag", unit="frame", file=sys.stderr, leave=False,
               disable=(not progress) if progress is not None else None)
    try:
        with BagWriter(out, storage) as writer:
            for m in read_messages(bag, wanted):
                if m.msgtype == PROMPT:
                    p = m.decode()
                    prompts += 1
                    logic.prompt(p.object_id, p.label, p.points, p.point_labels, p.box)
                elif m.msgtype == POINT:
                    pt = m.decode()
                    prompts += 1
                    logic.click(pt.x, pt.y)
                elif m.msgtype in (IMAGE, COMPRESSED):
                    msg = m.decode()
                    try:
                        rgb = compressed_to_rgb(msg) if m.msgtype == COMPRESSED \
                            else image_to_rgb(msg)
                    except InputError as exc:
                        logic.refused.append(f"image rejected: {exc}")
                        continue
                    try:
                        labels, summaries, sec = logic.image(np.ascontiguousarray(rgb))
                    except EdgeTAMError as exc:
                        logic.refused.append(f"frame rejected: {exc}")
                        continue
                    seconds += sec
                    frames += 1
                    stamp = m.timestamp + int(sec * 1e9)
                    writer.write(topics.masks, IMAGE, stamp, image_msg(labels, msg.header,
                                                                       "mono8"))
                    writer.write(topics.tracks, TRACKS, stamp, tracks_msg(summaries, msg.header))
                    bar.update(1)
            if frames == 0:
                raise InputError(f"bag {bag} has no images on {topics.image} or "
                                 f"{topics.compressed}")
            meta = dict(info or {})
            meta["ms_per_frame"] = round(1000.0 * seconds / max(1, frames), 3)
            writer.set_custom_data(SOURCE_KEY, "offline")
            writer.set_custom_data(RATE_KEY, "1")
            writer.set_custom_data(INFO_KEY, json.dumps(meta))
    finally:
        bar.close()
    return OfflineSummary(Path(out), frames, prompts, seconds, logic.refused, dict(info or {}))
