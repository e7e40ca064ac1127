"""The rosbags type store, the topics of a tracking bag, and message builders (no ROS import).

Topics (the defaults of ``launch/tracker.launch.py``: the node remapped to ``/camera/...``):

- ``/camera/image_raw``: sensor_msgs/msg/Image (rgb8), or ``/camera/image_raw/compressed``:
  sensor_msgs/msg/CompressedImage (jpeg); ``/camera/camera_info``: sensor_msgs/msg/CameraInfo;
  ``/prompt``: edgetam_ros/msg/Prompt; ``/ground_truth/masks``: sensor_msgs/msg/Image (mono8,
  pixel = object id) -- written by ``edgetam-bag from-frames``.
- ``/masks``: sensor_msgs/msg/Image (mono8) and ``/tracks``: edgetam_ros/msg/
  TrackedObjectArray -- published by the node (recorded by ``replay``) or written by
  ``run-offline``.

Ground-truth masks and the node's outputs carry the header of the image they belong to, so
they are matched to it by header stamp.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from edgetam_core.errors import InputError

PACKAGE = "edgetam_ros"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
PROMPT = "edgetam_ros/msg/Prompt"
TRACKS = "edgetam_ros/msg/TrackedObjectArray"
POINT = "geometry_msgs/msg/Point"
CLOCK = "rosgraph_msgs/msg/Clock"

#: Label of a prompted object whose ground-truth id is ``n``: ``gt:n``.
GT_LABEL_PREFIX = "gt:"


@dataclass(frozen=True)
class Topics:
    """Topic names of a tracking bag (see the module docstring)."""

    image: str = "/camera/image_raw"
    compressed: str = "/camera/image_raw/compressed"
    camera_info: str = "/camera/camera_info"
    prompt: str = "/prompt"
    click: str = "/camera/image_raw_mouse_left"
    ground_truth: str = "/ground_truth/masks"
    masks: str = "/masks"
    tracks: str = "/tracks"


TOPICS = Topics()


def msg_dir() -> Path:
    """The folder of this package's ``.msg`` files.

    Looked up in ``EDGETAM_MSG_DIR``, the source tree this module lives in (also through the
    symlinks of a ``--symlink-install``), then ``share/edgetam_ros/msg`` of every
    ``AMENT_PREFIX_PATH`` entry (a regular colcon or apt install).
    """
    candidates = []
    if os.environ.get("EDGETAM_MSG_DIR"):
        candidates.append(Path(os.environ["EDGETAM_MSG_DIR"]))
    candidates.append(Path(__file__).resolve().parents[2] / "msg")
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / PACKAGE / "msg")
    for folder in candidates:
        if (folder / "Prompt.msg").is_file():
            return folder
    raise InputError(
        "cannot find edgetam_ros' msg/*.msg (set EDGETAM_MSG_DIR to the package's msg folder)"
    )


@lru_cache(maxsize=1)
def typestore() -> Any:
    """ROS 2 (Kilted) standard types plus ``edgetam_ros/msg/*`` from the .msg files."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for path in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store


def serialize(msg: Any) -> bytes:
    """CDR bytes of a rosbags message (what rosbag2 stores and rclpy publishes raw)."""
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


def deserialize(raw: bytes | memoryview, msgtype: str) -> Any:
    return typestore().deserialize_cdr(raw, msgtype)


# Builders -------------------------------------------------------------------------------------
def _cls(name: str) -> Any:
    return typestore().types[name]


def stamp_ns(header: Any) -> int:
    """Nanoseconds of a header's stamp."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def header(ns: int, frame_id: str = "") -> Any:
    time_cls, header_cls = _cls("builtin_interfaces/msg/Time"), _cls("std_msgs/msg/Header")
    return header_cls(stamp=time_cls(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000),
                      frame_id=frame_id)


def image_msg(pixels: np.ndarray, hdr: Any, encoding: str = "rgb8") -> Any:
    """``sensor_msgs/Image`` of (H, W, 3) rgb8 or (H, W) mono8 pixels."""
    arr = np.ascontiguousarray(pixels, dtype=np.uint8)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    expected = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(encoding)
    if expected != channels:
        raise ValueError(f"array of shape {pixels.shape} does not fit encoding {encoding}")
    return _cls(IMAGE)(
        header=hdr, height=int(arr.shape[0]), width=int(arr.shape[1]), encoding=encoding,
        is_bigendian=0, step=int(arr.shape[1] * channels), data=arr.reshape(-1),
    )


def compressed_msg(rgb: np.ndarray, hdr: Any, quality: int = 90) -> Any:
    """``sensor_msgs/CompressedImage`` (jpeg) of an (H, W, 3) RGB image."""
    from edgetam_ros.conversions import rgb_to_compressed

    fmt, data = rgb_to_compressed(rgb, "jpeg", quality)
    return _cls(COMPRESSED)(header=hdr, format=fmt, data=np.frombuffer(data, dtype=np.uint8))


def camera_info_msg(height: int, width: int, hdr: Any, focal: float | None = None) -> Any:
    """A distortion-free pinhole ``CameraInfo`` (focal length = image width unless given)."""
    f = float(focal if focal is not None else width)
    cx, cy = width / 2.0, height / 2.0
    roi = _cls("sensor_msgs/msg/RegionOfInterest")(
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    return _cls(CAMERA_INFO)(
        header=hdr, height=int(height), width=int(width), distortion_model="plumb_bob",
        d=np.zeros(5), k=np.array([f, 0, cx, 0, f, cy, 0, 0, 1], dtype=np.float64),
        r=np.eye(3).reshape(-1), p=np.array([f, 0, cx, 0, 0, f, cy, 0, 0, 0, 1, 0], dtype=float),
        binning_x=0, binning_y=0, roi=roi,
    )


def point_msg(x: float, y: float, z: float = 0.0) -> Any:
    return _cls(POINT)(x=float(x), y=float(y), z=float(z))


def prompt_msg(
    hdr: Any,
    object_id: int,
    label: str = "",
    points: Any = None,
    point_labels: Any = None,
    box: Any = None,
) -> Any:
    """``edgetam_ros/Prompt`` (``object_id`` 0 = a new object)."""
    pts = [] if points is None else [point_msg(x, y) for x, y in np.asarray(points).reshape(-1, 2)]
    lbl = np.zeros(0, np.int8) if point_labels is None else np.asarray(point_labels, np.int8)
    bx = np.zeros(0, np.float32) if box is None else np.asarray(box, np.float32).reshape(-1)
    return _cls(PROMPT)(header=hdr, object_id=int(object_id), label=label, points=pts,
                        point_labels=lbl, box=bx)


def tracks_msg(summaries: list[Any], hdr: Any) -> Any:
    """``edgetam_ros/TrackedObjectArray`` of ``edgetam_ros.conversions.ObjectSummary``s."""
    obj_cls, roi_cls = _cls("edgetam_ros/msg/TrackedObject"), _cls(
        "sensor_msgs/msg/RegionOfInterest"
    )
    objects = []
    for s in summaries:
        x, y, w, h = s.box
        objects.append(obj_cls(
            id=s.object_id, label=s.label, score=s.score, object_score=s.object_score,
            visible=s.visible,
            bbox=roi_cls(x_offset=x, y_offset=y, height=h, width=w, do_rectify=False),
            centroid=point_msg(s.centroid[0], s.centroid[1]), area=s.area,
        ))
    return _cls(TRACKS)(header=hdr, objects=objects)


def clock_msg(ns: int) -> Any:
    time_cls = _cls("builtin_interfaces/msg/Time")
    return _cls(CLOCK)(clock=time_cls(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000))


def gt_label(object_id: int) -> str:
    return f"{GT_LABEL_PREFIX}{object_id}"


def parse_gt_label(label: str) -> int | None:
    """The ground-truth id in a ``gt:<id>`` label (None for other labels)."""
    if label.startswith(GT_LABEL_PREFIX) and label[len(GT_LABEL_PREFIX):].isdigit():
        return int(label[len(GT_LABEL_PREFIX):])
    return None
