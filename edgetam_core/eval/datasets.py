"""Video object segmentation data sets on disk -> ``VOSSequence`` (frames + label images).

Layouts read (``<seq>`` is one video; frames and annotations are matched by file stem, so
sparsely annotated sets work: only frames with an annotation are scored):

- **DAVIS** (``format="davis"``)::

      ROOT/JPEGImages/480p/<seq>/00000.jpg ...
      ROOT/Annotations/480p/<seq>/00000.png ...   indexed PNGs, pixel = object id
      ROOT/ImageSets/2017/val.txt                  one sequence name per line

  ``split`` is a text file of sequence names (a path, or one relative to ``ROOT/ImageSets``,
  e.g. ``2017/val.txt``); without it every sequence under ``Annotations/480p`` is read.
- **MOSE** and other plain folders (``format="mose"``)::

      ROOT/JPEGImages/<seq>/*.jpg   ROOT/Annotations/<seq>/*.png

- **SA-V** (``format="sav"``)::

      ROOT/JPEGImages_24fps/<seq>/*.jpg   ROOT/Annotations_6fps/<seq>/<obj>/*.png

  with one folder of binary PNGs per object (``000``, ``001``, ...; object id = number + 1,
  as a label image has no object 0). ``JPEGImages``/``Annotations`` are used when the
  ``_24fps``/``_6fps`` folders are missing. Any layout may use per-object folders or combined
  label PNGs; per-object masks are combined in id order (a later object wins on overlap).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetam_core.errors import InputError
from edgetam_core.io import IMAGE_SUFFIXES, read_image, read_label_png

FORMATS = ("davis", "mose", "sav")

#: One annotated frame: a combined label PNG, or one binary PNG per object id.
Annotation = Path | dict[int, Path]


def _natural_key(name: str) -> list[object]:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


@dataclass
class VOSSequence:
    """One video: its frames (in order) and the annotations of some or all of them."""

    name: str
    frame_paths: list[Path]
    annotations: dict[int, Annotation]  # frame index -> annotation
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def num_frames(self) -> int:
        return len(self.frame_paths)

    @property
    def annotated_frames(self) -> list[int]:
        return sorted(self.annotations)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W, 3) uint8 RGB."""
        return read_image(self.frame_paths[index])

    def frames(self) -> Iterator[np.ndarray]:
        return (read_image(p) for p in self.frame_paths)

    def labels(self, index: int) -> np.ndarray:
        """The (H, W) uint8 label image of annotated frame ``index`` (cached)."""
        if index not in self._cache:
            self._cache[index] = _read_annotation(self.annotations[index])
        return self._cache[index]

    def ground_truth(self) -> dict[int, np.ndarray]:
        """Every annotated frame's label image."""
        return {k: self.labels(k) for k in self.annotated_frames}

    def object_ids(self) -> list[int]:
        ids: set[int] = set()
        for k in self.annotated_frames:
            ids.update(int(v) for v in np.unique(self.labels(k)))
        ids.discard(0)
        return sorted(ids)

    def first_appearances(self) -> dict[int, int]:
        """object id -> the first annotated frame where it is visible."""
        first: dict[int, int] = {}
        for k in self.annotated_frames:
            for v in np.unique(self.labels(k)):
                first.setdefault(int(v), k)
        first.pop(0, None)
        return dict(sorted(first.items()))

    def truncated(self, max_frames: int) -> VOSSequence:
        """The first ``max_frames`` frames (and their annotations)."""
        keep = {k: a for k, a in self.annotations.items() if k < max_frames}
        return VOSSequence(self.name, self.frame_paths[:max_frames], keep)


def _read_annotation(annotation: Annotation) -> np.ndarray:
    if isinstance(annotation, Path):
        return read_label_png(annotation)
    out: np.ndarray | None = None
    for oid, path in sorted(annotation.items()):
        mask = read_label_png(path) > 0
        if out is None:
            out = np.zeros(mask.shape, dtype=np.uint8)
        elif mask.shape != out.shape:
            raise InputError(
                f"{path} is {mask.shape[1]}x{mask.shape[0]}, other objects' masks "
                f"are {out.shape[1]}x{out.shape[0]}"
            )
        out[mask] = oid
    assert out is not None
    return out


def _images(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes),
        key=lambda p: _natural_key(p.name),
    )


def _object_folder_id(name: str, folder: Path) -> int:
    if not name.isdigit():
        raise InputError(f"per-object annotation folder {folder / name} is not numbered")
    oid = int(name) + 1
    if oid > 255:
        raise InputError(f"object folder {folder / name}: ids above 254 do not fit a label PNG")
    return oid


def read_annotation_folder(
    folder: Path, frame_index: dict[str, int], sequence: str
) -> dict[int, Annotation]:
    """Annotations of one sequence: label PNGs, or per-object folders of binary PNGs.

    ``frame_index`` maps frame file stems to indices; an annotation without a frame is an
    InputError (a prediction folder uses the same reader and rule).
    """
    out: dict[int, Annotation] = {}

    def index_of(path: Path) -> int:
        if path.stem not in frame_index:
            raise InputError(f"{path} has no frame of the same name in sequence {sequence}")
        return frame_index[path.stem]

    subdirs = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name)
    if subdirs:
        per_frame: dict[int, dict[int, Path]] = {}
        for sub in subdirs:
            oid = _object_folder_id(sub.name, folder)
            for png in _images(sub, (".png",)):
                per_frame.setdefault(index_of(png), {})[oid] = png
        out.update(per_frame)
    for png in _images(folder, (".png",)):
        k = index_of(png)
        if k in out:
            raise InputError(f"{folder}: frame {png.stem} is annotated twice (PNG and folders)")
        out[k] = png
    return dict(sorted(out.items()))


def _sequence(name: str, frames_dir: Path, annotations_dir: Path) -> VOSSequence:
    if not frames_dir.is_dir():
        raise InputError(f"sequence {name}: no frame folder {frames_dir}")
    if not annotations_dir.is_dir():
        raise InputError(f"sequence {name}: no annotation folder {annotations_dir}")
    frames = _images(frames_dir, IMAGE_SUFFIXES)
    if not frames:
        raise InputError(f"sequence {name}: no .jpg/.png frames in {frames_dir}")
    index = {p.stem: i for i, p in enumerate(frames)}
    annotations = read_annotation_folder(annotations_dir, index, name)
    if not annotations:
        raise InputError(f"sequence {name}: no annotations in {annotations_dir}")
    return VOSSequence(name, frames, annotations)


def read_split(path: Path) -> list[str]:
    """Sequence names of a split file: one per line; blank lines and ``#`` comments skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputError(f"cannot read split file {path}: {exc.strerror or exc}") from None
    names = [ln.split("#", 1)[0].strip() for ln in lines]
    return [n for n in names if n]


def _select(
    available: list[str], split: list[str] | None, sequences: Sequence[str] | None, where: Path
) -> list[str]:
    names = split if split is not None else available
    missing = [n for n in names if n not in available]
    if missing:
        raise InputError(f"sequence {missing[0]} is not in {where}")
    if sequences:
        unknown = [s for s in sequences if s not in names]
        if unknown:
            raise InputError(f"sequence {unknown[0]} is not in the data set (or the split)")
        names = [n for n in names if n in set(sequences)]
    if not names:
        raise InputError(f"no sequences to evaluate in {where}")
    return names


def _resolve_split(root: Path, split: str | Path | None) -> list[str] | None:
    if split is None:
        return None
    path = Path(split)
    if not path.is_file() and (root / "ImageSets" / path).is_file():
        path = root / "ImageSets" / path
    if not path.is_file():
        raise InputError(f"split file not found: {split}")
    return read_split(path)


def _subfolders(folder: Path) -> list[str]:
    return sorted((p.name for p in folder.iterdir() if p.is_dir()), key=_natural_key)


def read_dataset(
    root: str | Path,
    fmt: str = "davis",
    split: str | Path | None = None,
    sequences: Sequence[str] | None = None,
    resolution: str = "480p",
) -> list[VOSSequence]:
    """The sequences of a data set in one of ``FORMATS`` (module docstring)."""
    root = Path(root)
    if fmt not in FORMATS:
        raise InputError(f"unknown data set format {fmt!r} (one of {', '.join(FORMATS)})")
    if not root.is_dir():
        raise InputError(f"data set folder not found: {root}")
    if fmt == "davis":
        frames_root = root / "JPEGImages" / resolution
        ann_root = root / "Annotations" / resolution
    elif fmt == "sav":
        frames_root, ann_root = root / "JPEGImages_24fps", root / "Annotations_6fps"
        if not frames_root.is_dir():
            frames_root = root / "JPEGImages"
        if not ann_root.is_dir():
            ann_root = root / "Annotations"
    else:
        frames_root, ann_root = root / "JPEGImages", root / "Annotations"
    for folder in (frames_root, ann_root):
        if not folder.is_dir():
            raise InputError(f"{fmt} data set {root}: missing folder {folder}")
    names = _select(_subfolders(ann_root), _resolve_split(root, split), sequences, ann_root)
    return [_sequence(n, frames_root / n, ann_root / n) for n in names]


def read_predictions(folder: str | Path, sequence: VOSSequence) -> dict[int, np.ndarray]:
    """A results folder's label images for ``sequence``: ``FOLDER/<seq>/<frame stem>.png``
    (or per-object folders, as the annotations), keyed by frame index."""
    seq_dir = Path(folder) / sequence.name
    if not seq_dir.is_dir():
        raise InputError(f"no predictions for sequence {sequence.name}: {seq_dir} is missing")
    index = {p.stem: i for i, p in enumerate(sequence.frame_paths)}
    annotations = read_annotation_folder(seq_dir, index, sequence.name)
    return {k: _read_annotation(a) for k, a in annotations.items()}
