"""Training data: clip sources, the on-disk readers, and batching.

A *source* draws training clips: ``sample(rng, clip_length, image_size)`` returns a
``ClipSample`` (frames and label images at model-input size, plus the object ids to prompt on
the first frame) or None when it could not make one. Images are clips of length 1.

Sources:

- ``SyntheticVideoSource`` / ``SyntheticImageSource``: the synthetic world of
  ``edgetam_core.synthetic`` (unlimited, deterministic per seed).
- ``ImageFolderSource``: SA-1B-style folders, either ``NAME.jpg`` + ``NAME.json`` (the SA-1B
  release: ``{"annotations": [{"segmentation": {"size": [h, w], "counts": RLE}}]}``, COCO RLE
  as a compressed string or a list of run lengths, or ``"segmentation"`` as a list of
  polygons ``[x0, y0, x1, y1, ...]``), or ``images/NAME.{jpg,png}`` + ``masks/NAME.png``
  (an indexed label PNG, pixel = object id, as ``edgetam-track`` writes).
- ``VideoFolderSource``: DAVIS-style folders ``JPEGImages/<video>/*.jpg`` +
  ``Annotations/<video>/*.png`` (a ``480p`` level under both is also accepted). Frames
  without an annotation PNG are skipped, so sparsely annotated videos (e.g. SA-V's
  every-4th-frame masklets exported as PNGs) train on their annotated frames.
- ``RosbagSource``: rosbag2 folders from ``edgetam-bag`` or recordings of the node (images +
  mono8 label images matched by stamp), to fine-tune on your own recordings.

Frames are resized to the model's square input as the tracker does (PIL bicubic, aspect not
kept), labels with nearest neighbour; augmentations (``augment.py``) follow.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
from PIL import Image

from edgetam_core.io import list_image_files, read_image, read_label_png
from edgetam_core.synthetic import WorldSpec, make_world_clip
from edgetam_core.train.augment import AugmentConfig, augment_clip

TRAIN_SEED_LIMIT = 1 << 30  # synthetic training seeds are below this; held-out ones above


@dataclass
class ClipSample:
    """One training clip at model-input size."""

    frames: np.ndarray  # (T, S, S, 3) uint8 RGB
    labels: np.ndarray  # (T, S, S) int32, pixel = object id
    object_ids: list[int]  # objects to prompt on frame 0 (visible there)


@dataclass
class ClipBatch:
    """B clips, O objects in total (objects of one clip share its frames)."""

    frames: torch.Tensor  # (T, B, 3, S, S) float in [0, 1]
    masks: torch.Tensor  # (T, O, S, S) bool ground truth
    obj_clip: torch.Tensor  # (O,) long: the clip of each object

    def to(self, device: torch.device | str) -> ClipBatch:
        return ClipBatch(self.frames.to(device), self.masks.to(device), self.obj_clip.to(device))


class ClipSource(Protocol):
    def sample(
        self, rng: np.random.Generator, clip_length: int, image_size: int
    ) -> ClipSample | None: ...


def resize_clip(frames: np.ndarray, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3) uint8 and (T, H, W) labels -> (T, size, size, ...), as the tracker resizes."""
    if frames.shape[1:3] == (size, size):
        return frames, labels
    out_f = np.stack(
        [
            np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BICUBIC))
            for f in frames
        ]
    )
    out_l = np.stack(
        [
            cv2.resize(lab.astype(np.int32), (size, size), interpolation=cv2.INTER_NEAREST)
            for lab in labels.astype(np.int32)
        ]
    )
    return out_f, out_l


def visible_ids(labels: np.ndarray, candidates: Sequence[int], min_area: int) -> list[int]:
    """Candidates with at least ``min_area`` pixels in the (H, W) label image."""
    if not len(candidates):
        return []
    counts = np.bincount(labels.reshape(-1), minlength=max(candidates) + 1)
    return [int(i) for i in candidates if i > 0 and counts[i] >= min_area]


def _finish(
    frames: np.ndarray,
    labels: np.ndarray,
    candidates: Sequence[int],
    rng: np.random.Generator,
    size: int,
    augment: AugmentConfig | None,
    min_area_frac: float,
) -> ClipSample | None:
    frames, labels = resize_clip(frames, labels, size)
    if augment is not None:
        frames, labels = augment_clip(frames, labels, rng, augment)
    ids = visible_ids(labels[0], candidates, max(4, int(min_area_frac * size * size)))
    if not ids:
        return None
    return ClipSample(frames, labels.astype(np.int32), ids)


@dataclass
class SyntheticVideoSource:
    """Clips of the synthetic world (``make_world_clip``) with random aspect ratios."""

    spec: WorldSpec = field(default_factory=WorldSpec)
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    aspect: tuple[float, float] = (0.75, 1.34)  # rendered width / height before resizing
    min_area_frac: float = 0.002
    # Lay each world out over this many frames and train on a window of it (every
    # ``1..max_stride``-th frame from a random start): short clips then move as fast as the
    # 24-frame held-out clips, instead of squeezing a whole exit-and-return into 3 frames.
    # 0: the world lasts exactly the clip.
    world_frames: int = 0
    max_stride: int = 1

    def sample(
        self, rng: np.random.Generator, clip_length: int, image_size: int
    ) -> ClipSample | None:
        seed = int(rng.integers(0, TRAIN_SEED_LIMIT))
        aspect = rng.uniform(*self.aspect)
        height = image_size
        width = max(32, int(round(image_size * aspect)))
        world = max(self.world_frames, clip_length)
        stride = int(rng.integers(1, max(1, self.max_stride) + 1))
        span = (clip_length - 1) * stride
        if span >= world:
            stride, span = 1, clip_length - 1
        start = int(rng.integers(0, world - span))
        times = [float(start + stride * i) for i in range(clip_length)]
        try:
            clip = make_world_clip(world, height, width, seed=seed, spec=self.spec, times=times)
        except RuntimeError:  # no window start where every object is visible enough
            return None
        frames = np.stack(clip.frames)
        labels = np.stack(clip.labels)
        return _finish(
            frames, labels, clip.object_ids, rng, image_size, self.augment, self.min_area_frac
        )


@dataclass
class SyntheticImageSource:
    """Single frames of the synthetic world, every visible object a target."""

    spec: WorldSpec = field(
        default_factory=lambda: WorldSpec(num_objects=(1, 4), num_late_objects=(0, 0))
    )
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    aspect: tuple[float, float] = (0.75, 1.34)
    min_area_frac: float = 0.002

    def sample(
        self, rng: np.random.Generator, clip_length: int, image_size: int
    ) -> ClipSample | None:
        del clip_length
        seed = int(rng.integers(0, TRAIN_SEED_LIMIT))
        aspect = rng.uniform(*self.aspect)
        width = max(32, int(round(image_size * aspect)))
        clip = make_world_clip(1, image_size, width, seed=seed, spec=self.spec)
        ids = sorted(int(i) for i in np.unique(clip.labels[0]) if i > 0)
        return _finish(
            np.stack(clip.frames),
            np.stack(clip.labels),
            ids,
            rng,
            image_size,
            self.augment,
            self.min_area_frac,
        )


# SA-1B-style image folders ------------------------------------------------------------------------
def rle_decode_string(counts: str) -> list[int]:
    """COCO's compressed RLE string -> run lengths.

    Each run length is written in 5-bit groups, least significant first, as characters
    ``48 + group`` with bit 0x20 meaning "more groups follow" and, in the last group, bit
    0x10 the sign; from the third run on, the value is stored as the difference to the run
    two places before.
    """
    runs: list[int] = []
    pos = 0
    while pos < len(counts):
        value, shift, more = 0, 0, True
        while more:
            group = ord(counts[pos]) - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            pos += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def rle_encode_string(runs: Sequence[int]) -> str:
    """Run lengths -> COCO's compressed RLE string (the inverse of ``rle_decode_string``)."""
    chars: list[str] = []
    for i, run in enumerate(runs):
        value = int(run) - (int(runs[i - 2]) if i > 2 else 0)
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            more = not ((value == 0 and not group & 0x10) or (value == -1 and group & 0x10))
            if more:
                group |= 0x20
            chars.append(chr(group + 48))
    return "".join(chars)


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """A COCO RLE dict ``{"size": [h, w], "counts": str | list}`` -> (h, w) bool mask."""
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    runs = rle_decode_string(counts) if isinstance(counts, str) else [int(v) for v in counts]
    flat = np.zeros(height * width, dtype=bool)
    pos, value = 0, False
    for run in runs:
        if value:
            flat[pos : pos + run] = True
        pos += run
        value = not value
    return flat.reshape(width, height).T  # column-major


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """(h, w) bool mask -> COCO RLE dict with a compressed counts string."""
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": rle_encode_string(runs)}


def _annotation_mask(seg: Any, height: int, width: int) -> np.ndarray:
    if isinstance(seg, dict):
        return rle_to_mask(seg)
    mask = np.zeros((height, width), dtype=np.uint8)
    for poly in seg:
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool)


def read_sa1b_labels(json_path: Path, height: int, width: int, max_objects: int) -> np.ndarray:
    """The first ``max_objects`` annotations of an SA-1B JSON as one (H, W) label image.

    Larger objects are drawn first, so smaller ones stay visible where masks overlap.
    """
    data = json.loads(json_path.read_text())
    anns = data.get("annotations", [])
    masks = [_annotation_mask(a["segmentation"], height, width) for a in anns[:max_objects]]
    masks.sort(key=lambda m: -int(m.sum()))
    labels = np.zeros((height, width), dtype=np.int32)
    for index, m in enumerate(masks):
        if m.shape != (height, width):
            m = cv2.resize(
                m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
            ).astype(bool)
        labels[m] = index + 1
    return labels


@dataclass
class ImageFolderSource:
    """SA-1B-style image folders (see the module docstring for the two layouts)."""

    root: str
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    max_objects: int = 64
    min_area_frac: float = 0.001
    items: list[tuple[Path, Path]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        root = Path(self.root)
        if (root / "images").is_dir() and (root / "masks").is_dir():
            for img in list_image_files(root / "images"):
                label = root / "masks" / (img.stem + ".png")
                if label.exists():
                    self.items.append((img, label))
        else:
            for img in sorted(root.glob("*.jpg")) + sorted(root.glob("*.png")):
                if img.with_suffix(".json").exists():
                    self.items.append((img, img.with_suffix(".json")))
        if not self.items:
            raise FileNotFoundError(f"no SA-1B-style image/annotation pairs under {root}")

    def __len__(self) -> int:
        return len(self.items)

    def sample(
        self, rng: np.random.Generator, clip_length: int, image_size: int
    ) -> ClipSample | None:
        del clip_length
        img_path, ann_path = self.items[int(rng.integers(len(self.items)))]
        image = read_image(img_path)
        h, w = image.shape[:2]
        if ann_path.suffix == ".json":
            labels = read_sa1b_labels(ann_path, h, w, self.max_objects)
        else:
            labels = read_label_png(ann_path).astype(np.int32)
        ids = sorted(int(i) for i in np.unique(labels) if i > 0)
        return _finish(
            image[None], labels[None], ids, rng, image_size, self.augment, self.min_area_frac
        )


# DAVIS-style video folders ------------------------------------------------------------------------
def clip_indices(
    rng: np.random.Generator, count: int, clip_length: int, max_stride: int
) -> list[int]:
    """Frame indices of a random clip of ``count`` frames: a random stride, a random start,
    forwards or backwards; a video too short is played forwards and backwards."""
    stride = int(rng.integers(1, max_stride + 1))
    span = (clip_length - 1) * stride + 1
    if count >= span:
        start = int(rng.integers(0, count - span + 1))
        index = [start + i * stride for i in range(clip_length)]
    else:
        cycle = list(range(count)) + list(range(count - 2, 0, -1))
        index = [cycle[i % max(1, len(cycle))] for i in range(clip_length)]
    if rng.random() < 0.5:
        index = index[::-1]
    return index


def _level(path: Path) -> Path:
    return path / "480p" if (path / "480p").is_dir() else path


@dataclass
class VideoFolderSource:
    """DAVIS-style video folders (JPEGImages/<video>, Annotations/<video>)."""

    root: str
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    max_stride: int = 2  # frames are taken every 1..max_stride annotated frames
    min_area_frac: float = 0.001
    videos: list[list[tuple[Path, Path]]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        root = Path(self.root)
        images, annotations = _level(root / "JPEGImages"), _level(root / "Annotations")
        if not images.is_dir() or not annotations.is_dir():
            raise FileNotFoundError(f"{root} needs JPEGImages/ and Annotations/ folders")
        for video in sorted(p for p in images.iterdir() if p.is_dir()):
            pairs = []
            for frame in list_image_files(video):
                label = annotations / video.name / (frame.stem + ".png")
                if label.exists():
                    pairs.append((frame, label))
            if pairs:
                self.videos.append(pairs)
        if not self.videos:
            raise FileNotFoundError(f"no annotated videos under {root}")

    def __len__(self) -> int:
        return len(self.videos)

    def sample(
        self, rng: np.random.Generator, clip_length: int, image_size: int
    ) -> ClipSample | None:
        pairs = self.videos[int(rng.integers(len(self.videos)))]
        index = clip_indices(rng, len(pairs), clip_length, self.max_stride)
        frames = np.stack([read_image(pairs[i][0]) for i in index])
        labels = np.stack([read_label_png(pairs[i][1]).astype(np.int32) for i in index])
        if labels.shape[1:] != frames.shape[1:3]:
            return None
        ids = sorted(int(i) for i in np.unique(labels[0]) if i > 0)
        return _finish(frames, labels, ids, rng, image_size, self.augment, self.min_area_frac)


# Rosbags (edgetam-bag) ----------------------------------------------------------------------------
@dataclass
class RosbagSource:
    """Frames and label images of a rosbag2 folder, e.g. one made by ``edgetam-bag
    from-frames`` (ground truth on ``/ground_truth/masks``) or a recording of the tracker node
    (its ``/masks`` output as pseudo-labels, e.g. from the official model, to fine-tune a
    small one on your own footage).

    Images (``sensor_msgs/Image`` or ``CompressedImage``) are paired with mono8 label images
    (pixel = object id) by header stamp; frames without a label image are skipped. The whole
    bag is read once into memory. Needs the ``edgetam_ros`` package and ``rosbags``.
    """

    path: str
    labels_topic: str = "/ground_truth/masks"
    image_topics: tuple[str, ...] = ("/camera/image_raw", "/camera/image_raw/compressed")
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    max_stride: int = 2
    min_area_frac: float = 0.001
    frames: list[np.ndarray] = field(init=False, default_factory=list)
    labels: list[np.ndarray] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        from edgetam_ros.bag.bagio import read_messages
        from edgetam_ros.bag.messages import COMPRESSED, stamp_ns
        from edgetam_ros.conversions import compressed_to_rgb, image_to_rgb

        images: dict[int, np.ndarray] = {}
        labels: dict[int, np.ndarray] = {}
        for m in read_messages(self.path, (*self.image_topics, self.labels_topic)):
            msg = m.decode()
            stamp = stamp_ns(msg.header)
            if m.topic == self.labels_topic:
                if msg.encoding != "mono8":
                    raise ValueError(f"{self.path}: {m.topic} is {msg.encoding}, not mono8")
                h, w, step = int(msg.height), int(msg.width), int(msg.step)
                data = np.asarray(msg.data, dtype=np.uint8).reshape(h, step)[:, :w]
                labels[stamp] = data.copy()
            elif m.msgtype == COMPRESSED:
                images[stamp] = compressed_to_rgb(msg)
            else:
                images[stamp] = np.array(image_to_rgb(msg))
        for stamp in sorted(set(images) & set(labels)):
            if images[stamp].shape[:2] == labels[stamp].shape:
                self.frames.append(images[stamp])
                self.labels.append(labels[stamp])
        if not self.frames:
            raise FileNotFoundError(
                f"{self.path}: no frames with a label image on {self.labels_topic}"
            )

    def __len__(self) -> int:
        return len(self.frames)

    def sample(
        self, rng: np.random.Generator, clip_length: int, image_size: int
    ) -> ClipSample | None:
        index = clip_indices(rng, len(self.frames), clip_length, self.max_stride)
        frames = np.stack([self.frames[i] for i in index])
        labels = np.stack([self.labels[i].astype(np.int32) for i in index])
        ids = sorted(int(i) for i in np.unique(labels[0]) if i > 0)
        return _finish(frames, labels, ids, rng, image_size, self.augment, self.min_area_frac)


# Batching -----------------------------------------------------------------------------------------
@dataclass
class SourceMix:
    """Several sources drawn with given weights."""

    sources: list[ClipSource]
    weights: list[float]

    def sample(
        self, rng: np.random.Generator, clip_length: int, image_size: int, tries: int = 20
    ) -> ClipSample:
        p = np.asarray(self.weights, dtype=np.float64)
        p = p / p.sum()
        for _ in range(tries):
            source = self.sources[int(rng.choice(len(self.sources), p=p))]
            sample = source.sample(rng, clip_length, image_size)
            if sample is not None:
                return sample
        raise RuntimeError(f"no usable training clip in {tries} tries: check the data sources")


def make_batch(
    samples: Sequence[ClipSample], max_objects: int, rng: np.random.Generator
) -> ClipBatch:
    """Stack clips; each contributes up to ``max_objects`` randomly chosen objects."""
    frames = torch.from_numpy(np.stack([s.frames for s in samples], axis=1))  # (T, B, S, S, 3)
    frames = frames.permute(0, 1, 4, 2, 3).float() / 255.0
    masks, owners = [], []
    for b, sample in enumerate(samples):
        ids = list(sample.object_ids)
        if len(ids) > max_objects:
            ids = [ids[i] for i in sorted(rng.choice(len(ids), max_objects, replace=False))]
        for oid in ids:
            masks.append(torch.from_numpy(sample.labels == oid))
            owners.append(b)
    return ClipBatch(
        frames=frames.contiguous(),
        masks=torch.stack(masks, dim=1),
        obj_clip=torch.tensor(owners, dtype=torch.long),
    )
