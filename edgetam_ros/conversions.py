"""ROS image and result messages <-> numpy, with cv_bridge's semantics and no ROS import.

Images come in as any object with the fields of ``sensor_msgs/Image`` (height, width, encoding,
is_bigendian, step, data) or ``sensor_msgs/CompressedImage`` (format, data) and leave as
(H, W, 3) uint8 RGB arrays; label images and overlays go back out as ``Image`` field dicts.
Like cv_bridge: ``step`` may include row padding, ``is_bigendian`` is honoured for 16-bit
encodings, 16-bit values are scaled to 8 bits by 255/65535, ``step * height`` must equal the
data size, and compressed images are decoded with OpenCV. Anything else raises ``InputError``
naming the problem.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgetam_core.errors import InputError
from edgetam_core.types import FrameResult


@dataclass(frozen=True)
class EncodingInfo:
    """Layout of one raw image encoding."""

    channels: int
    bytes_per_channel: int
    order: str  # "rgb", "bgr", "rgba", "bgra" or "mono"


#: Raw encodings accepted on input (sensor_msgs/image_encodings names).
ENCODINGS: dict[str, EncodingInfo] = {
    "rgb8": EncodingInfo(3, 1, "rgb"),
    "bgr8": EncodingInfo(3, 1, "bgr"),
    "rgba8": EncodingInfo(4, 1, "rgba"),
    "bgra8": EncodingInfo(4, 1, "bgra"),
    "mono8": EncodingInfo(1, 1, "mono"),
    "rgb16": EncodingInfo(3, 2, "rgb"),
    "bgr16": EncodingInfo(3, 2, "bgr"),
    "rgba16": EncodingInfo(4, 2, "rgba"),
    "bgra16": EncodingInfo(4, 2, "bgra"),
    "mono16": EncodingInfo(1, 2, "mono"),
}


def _as_bytes_view(data: Any) -> np.ndarray:
    """The message's data buffer as a flat uint8 array (no copy for bytes/array.array)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a list of ints (hand-built messages)
        return np.asarray(data, dtype=np.uint8)


def _to_8bit(values: np.ndarray) -> np.ndarray:
    """16-bit -> 8-bit with cv_bridge's scale 255/65535, rounded."""
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


_TO_RGB = {
    "mono": cv2.COLOR_GRAY2RGB,
    "bgr": cv2.COLOR_BGR2RGB,
    "bgra": cv2.COLOR_BGRA2RGB,
    "rgba": cv2.COLOR_RGBA2RGB,
}


def _to_rgb(pixels: np.ndarray, order: str) -> np.ndarray:
    """(H, W, C) uint8 in ``order`` -> C-contiguous (H, W, 3) RGB (a new array)."""
    if order == "rgb":
        return np.ascontiguousarray(pixels)
    src = np.ascontiguousarray(pixels[:, :, 0] if order == "mono" else pixels)
    return cv2.cvtColor(src, _TO_RGB[order])


def image_to_rgb(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/Image`` (or an object with its fields) -> (H, W, 3) uint8 RGB.

    The result may share memory with ``msg.data`` (read-only) when no conversion is needed.
    Raises ``InputError`` for unsupported encodings and malformed images.
    """
    encoding = str(msg.encoding)
    info = ENCODINGS.get(encoding.lower())
    if info is None:
        raise InputError(
            f"unsupported image encoding '{encoding}' "
            f"(supported: {', '.join(ENCODINGS)}, or CompressedImage jpeg/png)"
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise InputError(f"empty image ({width}x{height})")
    row_bytes = width * info.channels * info.bytes_per_channel
    if step < row_bytes:
        raise InputError(
            f"image step {step} is smaller than width * bytes per pixel = {row_bytes} "
            f"({width}x{height} {encoding})"
        )
    buf = _as_bytes_view(msg.data)
    if buf.size != step * height:
        raise InputError(
            f"image data is {buf.size} bytes but step * height = {step} * {height} = "
            f"{step * height} ({width}x{height} {encoding})"
        )
    rows = buf.reshape(height, step)[:, :row_bytes]
    if info.bytes_per_channel == 2:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        values = np.ascontiguousarray(rows).view(dtype).reshape(height, width, info.channels)
        pixels = _to_8bit(values)
    else:
        pixels = rows.reshape(height, width, info.channels)
    if info.order == "rgb" and info.bytes_per_channel == 1 and step == row_bytes:
        return pixels  # zero copy: already (H, W, 3) contiguous RGB
    return _to_rgb(pixels, info.order)


def _compressed_kind(fmt: str, buf: np.ndarray) -> str:
    if "compresseddepth" in fmt.lower():
        raise InputError(f"compressedDepth images are not supported (format '{fmt}')")
    head = bytes(buf[:8])
    if head.startswith(b"\xff\xd8"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    raise InputError(f"compressed image is neither JPEG nor PNG (format '{fmt}')")


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (jpeg or png) -> (H, W, 3) uint8 RGB.

    Decoded with OpenCV, as cv_bridge does; grey, 16-bit and alpha images are converted like
    raw ones. The ``format`` string is informative only: the data's magic bytes decide.
    """
    fmt = str(msg.format)
    buf = _as_bytes_view(msg.data)
    if buf.size == 0:
        raise InputError("empty compressed image")
    _compressed_kind(fmt, buf)
    decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise InputError(f"cannot decode compressed image (format '{fmt}')")
    if decoded.ndim == 2:
        decoded = decoded[:, :, None]
    if decoded.dtype == np.uint16:
        decoded = _to_8bit(decoded)
    elif decoded.dtype != np.uint8:
        raise InputError(f"compressed image has unsupported depth {decoded.dtype}")
    order = {1: "mono", 3: "bgr", 4: "bgra"}.get(decoded.shape[2])
    if order is None:
        raise InputError(f"compressed image has {decoded.shape[2]} channels")
    return _to_rgb(decoded, order)


def rgb_to_compressed(rgb: np.ndarray, kind: str = "jpeg", quality: int = 90) -> tuple[str, bytes]:
    """(H, W, 3) RGB -> (format, data) of a ``CompressedImage``, as image_transport writes it."""
    if kind not in ("jpeg", "png"):
        raise ValueError(f"kind must be jpeg or png, got {kind}")
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if kind == "jpeg" else []
    ok, enc = cv2.imencode(".jpg" if kind == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ValueError(f"cannot encode {kind}")
    return f"rgb8; {kind} compressed bgr8", enc.tobytes()


def image_fields(pixels: np.ndarray, encoding: str) -> dict[str, Any]:
    """Fields of a ``sensor_msgs/Image`` holding ``pixels`` ((H, W) mono8, (H, W, 3) rgb8...).

    ``data`` is an ``array.array('B')``, which rclpy's setter takes without a per-element check.
    """
    info = ENCODINGS[encoding]
    arr = np.ascontiguousarray(pixels, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] != info.channels or info.bytes_per_channel != 1:
        raise ValueError(f"array of shape {pixels.shape} does not fit encoding {encoding}")
    height, width = arr.shape[:2]
    data = array.array("B")
    data.frombytes(arr.data)  # one copy (tobytes() + array() would make two)
    return {
        "height": int(height),
        "width": int(width),
        "encoding": encoding,
        "is_bigendian": 0,
        "step": int(width * info.channels),
        "data": data,
    }


# --------------------------------------------------------------------------------------------
# Tracker results -> plain summaries (-> TrackedObject messages in the node)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectSummary:
    """What a ``TrackedObject`` message carries, computed once per object and frame."""

    object_id: int
    label: str
    score: float  # predicted IoU
    object_score: float  # visibility 0..1
    visible: bool
    box: tuple[int, int, int, int]  # x_offset, y_offset, width, height (zeros when empty)
    centroid: tuple[float, float]  # x, y in pixels (zeros when empty)
    area: int


def masks_of(result: FrameResult, threshold: float) -> dict[int, np.ndarray]:
    """Binary (H, W) mask of every object at logit ``threshold``."""
    return {oid: obj.logits > threshold for oid, obj in result.objects.items()}


def label_image(result: FrameResult, masks: dict[int, np.ndarray]) -> np.ndarray:
    """(H, W) uint8 label image (pixel = object id, 0 = background), like
    ``FrameResult.label_image``: where masks overlap the larger logit wins (ties: smaller id).
    """
    labels = np.zeros((result.height, result.width), dtype=np.uint8)
    ids = sorted(masks)
    if not ids:
        return labels
    count = np.zeros_like(labels)
    for oid in ids:  # overlaps get the larger id here and are resolved below
        mask8 = masks[oid].view(np.uint8)
        cv2.max(labels, mask8 * np.uint8(oid), dst=labels)
        cv2.add(count, mask8, dst=count)
    if len(ids) > 1:
        overlap = (count > 1).view(np.uint8)
        if cv2.countNonZero(overlap):  # resolve overlaps inside their bounding box only
            x, y, w, h = cv2.boundingRect(overlap)
            rows, cols = slice(y, y + h), slice(x, x + w)
            best = np.full((h, w), -np.inf, dtype=np.float32)
            winner = np.zeros((h, w), dtype=np.uint8)
            for oid in ids:  # strict '>': on ties the lower id keeps the pixel, as argmax does
                logits = result.objects[oid].logits[rows, cols]
                better = cv2.compare(logits, best, cv2.CMP_GT)
                better = cv2.bitwise_and(better, better, mask=masks[oid][rows, cols].view(np.uint8))
                cv2.copyTo(np.full((h, w), oid, dtype=np.uint8), better, winner)
                cv2.copyTo(logits, better, best)
            np.copyto(labels[rows, cols], winner, where=overlap[rows, cols].view(bool))
    return labels


def summarize(
    result: FrameResult, masks: dict[int, np.ndarray], labels: dict[int, str] | None = None
) -> list[ObjectSummary]:
    """Per-object summaries (sorted by id) from the tracker's result and the binary masks."""
    labels = labels or {}
    out = []
    for oid in sorted(result.objects):
        obj = result.objects[oid]
        mask8 = masks[oid].view(np.uint8)
        area = int(cv2.countNonZero(mask8))
        box = (0, 0, 0, 0)
        centroid = (0.0, 0.0)
        if area:
            x, y, w, h = (int(v) for v in cv2.boundingRect(mask8))
            box = (x, y, w, h)
            m = cv2.moments(mask8[y : y + h, x : x + w], binaryImage=True)
            centroid = (x + m["m10"] / m["m00"], y + m["m01"] / m["m00"])
        visibility = obj.visibility
        out.append(
            ObjectSummary(
                object_id=oid,
                label=labels.get(oid, ""),
                score=float(min(max(obj.iou, 0.0), 1.0)),
                object_score=float(visibility),
                visible=bool(obj.object_score > 0 and area > 0),
                box=box,
                centroid=centroid,
                area=area,
            )
        )
    return out


def tracked_object_array(summaries: list[ObjectSummary], header: Any) -> Any:
    """``edgetam_ros/TrackedObjectArray`` for ``summaries`` (needs the built interfaces)."""
    from geometry_msgs.msg import Point
    from sensor_msgs.msg import RegionOfInterest

    from edgetam_ros.msg import TrackedObject, TrackedObjectArray

    msg = TrackedObjectArray(header=header)
    for s in summaries:
        x, y, w, h = s.box
        msg.objects.append(
            TrackedObject(
                id=s.object_id,
                label=s.label,
                score=s.score,
                object_score=s.object_score,
                visible=s.visible,
                bbox=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h),
                centroid=Point(x=s.centroid[0], y=s.centroid[1], z=0.0),
                area=s.area,
            )
        )
    return msg
