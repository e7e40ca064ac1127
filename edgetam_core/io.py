"""Frame sources and DAVIS-style label PNGs.

Frames are always ``(H, W, 3)`` uint8 RGB arrays. A source is a folder of ``.jpg``/``.jpeg``/
``.png`` images (natural name order: ``2.png`` before ``10.png``; zero-padded names sort the
same either way), a single image, or a video file that OpenCV can decode. Label images are
``(H, W)`` uint8 (pixel = object id, 0 = background) stored as indexed ("P") PNGs with the
standard DAVIS palette, as the DAVIS benchmark does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgetam_core.errors import InputError

if TYPE_CHECKING:
    import cv2

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

PathLike = str | os.PathLike[str]


# Frame sources ------------------------------------------------------------------------------------
def _natural_key(path: Path) -> list[object]:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", path.name)]


def list_image_files(folder: PathLike) -> list[Path]:
    """The ``.jpg``/``.jpeg``/``.png`` files of ``folder`` in natural name order.

    Raises InputError when the folder is missing or holds no such image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()]
    if not files:
        raise InputError(f"no .jpg/.jpeg/.png images in folder {folder}")
    return sorted(files, key=_natural_key)


def read_image(path: PathLike) -> np.ndarray:
    """One image file as ``(H, W, 3)`` uint8 RGB (grey, palette and alpha images converted)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise InputError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"cannot decode image {path}: {exc}") from None


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError(f"input not found: {path}")


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _open_video(path: Path) -> cv2.VideoCapture:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise InputError(f"cannot open {path} as a video (not a video file OpenCV can decode)")
    return cap


def _video_frames(path: Path, cap: cv2.VideoCapture) -> Iterator[np.ndarray]:
    import cv2

    try:
        count = 0
        while True:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            count += 1
            yield np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if count == 0:
            raise InputError(f"no decodable frames in video {path}")
    finally:
        cap.release()


def read_frames(path: PathLike) -> Iterator[np.ndarray]:
    """Iterate over the frames of a folder of images, an image file or a video file.

    Errors that can be seen up front (missing path, empty folder, a file that is not a video)
    raise InputError here, before iteration; a frame that fails to decode raises InputError
    when it is reached.
    """
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        files = list_image_files(path)
        return (read_image(f) for f in files)
    if _is_image_file(path):
        return iter([read_image(path)])
    return _video_frames(path, _open_video(path))


def count_frames(path: PathLike) -> int:
    """Number of frames ``read_frames(path)`` yields (videos are scanned, not estimated)."""
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        return len(list_image_files(path))
    if _is_image_file(path):
        return 1
    cap = _open_video(path)
    try:
        count = 0
        while cap.grab():
            count += 1
    finally:
        cap.release()
    if count == 0:
        raise InputError(f"no decodable frames in video {path}")
    return count


def first_frame_size(path: PathLike) -> tuple[int, int]:
    """``(H, W)`` of the first frame (only the image header is read for image files)."""
    path = Path(path)
    _check_exists(path)
    if path.is_dir() or _is_image_file(path):
        first = list_image_files(path)[0] if path.is_dir() else path
        try:
            with Image.open(first) as img:
                width, height = img.size
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InputError(f"cannot decode image {first}: {exc}") from None
        return height, width
    frame = next(read_frames(path))
    return int(frame.shape[0]), int(frame.shape[1])


# DAVIS label PNGs ---------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def davis_palette() -> bytes:
    """The 256-colour DAVIS (= PASCAL VOC) palette as 768 bytes ``r0 g0 b0 r1 g1 b1 ...``.

    Colour ``i`` spreads the bits of ``i`` over the channels, most significant first:
    bit 3k goes to red, 3k+1 to green, 3k+2 to blue, each at bit position 7-k.
    Index 0 is black, 1 dark red (128, 0, 0), 2 dark green (0, 128, 0), 3 olive (128, 128, 0).
    """
    out = bytearray(768)
    for index in range(256):
        rgb = [0, 0, 0]
        code = index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << shift
            code >>= 3
        out[3 * index : 3 * index + 3] = bytes(rgb)
    return bytes(out)


def palette_array() -> np.ndarray:
    """The DAVIS palette as a ``(256, 3)`` uint8 array."""
    return np.frombuffer(davis_palette(), dtype=np.uint8).reshape(256, 3)


def write_label_png(path: PathLike, labels: np.ndarray) -> Path:
    """Write an ``(H, W)`` label image (values 0..255) as an indexed PNG with the DAVIS palette."""
    path = Path(path)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {labels.shape}")
    if labels.dtype != np.uint8:
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError("label values must be in 0..255 to fit an 8-bit PNG")
        labels = labels.astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(labels))  # mode "L"
    img.putpalette(davis_palette())  # -> mode "P", pixel values unchanged
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", optimize=False)
    return path


def read_label_png(path: PathLike) -> np.ndarray:
    """Read a label PNG as ``(H, W)`` uint8.

    Indexed and grey images give their pixel values; 16-bit grey must stay <= 255. An RGB
    image is mapped back through the DAVIS palette (colours not in it raise InputError).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("P", "L"):
                return np.asarray(img, dtype=np.uint8).copy()
            if mode == "1":
                return np.asarray(img, dtype=np.uint8).copy()
            if mode in ("I", "I;16", "I;16B", "I;16L"):
                arr = np.asarray(img)
                if arr.size and (arr.min() < 0 or arr.max() > 255):
                    raise InputError(f"label image {path} has values outside 0..255")
                return arr.astype(np.uint8)
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise InputError(f"label image not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"cannot decode label image {path}: {exc}") from None
    return _rgb_to_labels(rgb, path)


def _rgb_to_labels(rgb: np.ndarray, path: Path) -> np.ndarray:
    pal = palette_array().astype(np.int64)
    codes = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    lookup = {int(c): i for i, c in reversed(list(enumerate(codes)))}
    flat = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    uniq, inverse = np.unique(flat, return_inverse=True)
    ids = np.empty(len(uniq), dtype=np.uint8)
    for k, code in enumerate(uniq.tolist()):
        if code not in lookup:
            r, g, b = code >> 16, (code >> 8) & 255, code & 255
            raise InputError(f"label image {path} has colour ({r}, {g}, {b}), not in the palette")
        ids[k] = lookup[code]
    return ids[inverse.reshape(rgb.shape[:2])]


# Drawing ----------------------------------------------------------------------------------------
def overlay_labels(frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the palette colour of each object over ``frame`` (``(H, W, 3)`` uint8 RGB)."""
    if frame.shape[:2] != labels.shape:
        raise ValueError(f"frame {frame.shape[:2]} and labels {labels.shape} differ in size")
    colours = palette_array()[labels].astype(np.float32)
    out = frame.astype(np.float32)
    fg = labels > 0
    out[fg] = (1.0 - alpha) * out[fg] + alpha * colours[fg]
    # A one-pixel outline in full colour makes small or thin masks visible.
    edge = np.zeros_like(fg)
    vertical = labels[:-1, :] != labels[1:, :]
    horizontal = labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= vertical
    edge[1:, :] |= vertical
    edge[:, :-1] |= horizontal
    edge[:, 1:] |= horizontal
    edge &= fg
    out[edge] = colours[edge]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
