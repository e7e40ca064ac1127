"""The tracker node's own per-frame cost at 640x480, beyond the tracker step.

Runs exactly the node's per-frame code path (edgetam_ros.node.TrackerNode._process) minus
the tracker: message -> RGB conversion, binary masks, label image, per-object summaries,
overlay drawing, building the Image / TrackedObjectArray messages and publishing them (to a
subscriber in this process when rclpy and the built interfaces are available). The tracker's
output is synthetic: N objects with elliptic masks (overlapping when N > 1).

    source scripts/ros_env.sh && python benchmarks/node_overhead.py [--frames 300]

Without a ROS environment only the pure stages are measured (and said so).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgetam_core.types import FrameResult, ObjectResult
from edgetam_ros.conversions import (
    compressed_to_rgb,
    image_fields,
    image_to_rgb,
    label_image,
    masks_of,
    rgb_to_compressed,
    summarize,
)
from edgetam_ros.overlay import draw_overlay

W, H = 640, 480


def synthetic_result(n_objects: int) -> FrameResult:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    objs = {}
    for i in range(1, n_objects + 1):
        cx, cy, rx, ry = 120 + 110 * (i - 1), 240, 90, 140
        logits = 8.0 * (1.0 - ((xx - cx) / rx) ** 2 - ((yy - cy) / ry) ** 2)
        objs[i] = ObjectResult(i, logits, np.zeros((256, 256), np.float32), 0.9, 3.0)
    return FrameResult(frame_index=0, height=H, width=W, objects=objs)


def scene() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (H // 8, W // 8, 3)).astype(np.uint8)
    return np.kron(img, np.ones((8, 8, 1), np.uint8))  # blocky: compresses like a photo


class Ros:
    """Publishers (and a subscriber) like the node's, when rclpy and the interfaces import."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.node import Node
        from sensor_msgs.msg import Image

        from edgetam_ros.conversions import tracked_object_array
        from edgetam_ros.msg import TrackedObjectArray

        rclpy.init()
        self.rclpy = rclpy
        self.Image = Image
        self.tracked_object_array = tracked_object_array
        self.node = Node("node_overhead_benchmark")
        self.masks = self.node.create_publisher(Image, "bench/masks", 5)
        self.tracks = self.node.create_publisher(TrackedObjectArray, "bench/tracks", 5)
        self.overlay = self.node.create_publisher(Image, "bench/overlay", 5)
        self.received = 0
        for topic, kind in (
            ("bench/masks", Image),
            ("bench/overlay", Image),
            ("bench/tracks", TrackedObjectArray),
        ):
            self.node.create_subscription(kind, topic, self._count, 5)

    def _count(self, _msg: Any) -> None:
        self.received += 1

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def measure(frames: int, n_objects: int, input_kind: str, ros: Ros | None) -> dict[str, float]:
    """Median milliseconds per stage over ``frames`` frames."""
    rgb0 = scene()
    result = synthetic_result(n_objects)
    if input_kind == "jpeg":
        fmt, data = rgb_to_compressed(rgb0, "jpeg")
        msg: Any = type("Compressed", (), {"format": fmt, "data": data})()
        convert: Callable[[Any], np.ndarray] = compressed_to_rgb
    else:
        pixels = rgb0[:, :, ::-1] if input_kind == "bgr8" else rgb0
        fields = image_fields(pixels, input_kind)
        msg = type("Raw", (), fields)()
        convert = image_to_rgb
    header: Any = None
    if ros is not None:
        from std_msgs.msg import Header

        header = Header(frame_id="camera")
    stages: dict[str, list[float]] = {}

    def lap(name: str, t0: float) -> float:
        t1 = time.perf_counter()
        stages.setdefault(name, []).append((t1 - t0) * 1e3)
        return t1

    for _ in range(frames):
        t_start = t = time.perf_counter()
        rgb = convert(msg)
        t = lap("convert", t)
        masks = masks_of(result, 0.0)
        labels = label_image(result, masks)
        t = lap("label image", t)
        summaries = summarize(result, masks, {1: "cup"})
        t = lap("summaries", t)
        drawn = draw_overlay(rgb, labels, summaries, 0.5)
        t = lap("overlay", t)
        mask_fields = image_fields(labels, "mono8")
        overlay_fields = image_fields(drawn, "rgb8")
        if ros is not None:
            mask_msg = ros.Image(header=header, **mask_fields)
            overlay_msg = ros.Image(header=header, **overlay_fields)
            tracks_msg = ros.tracked_object_array(summaries, header)
        t = lap("messages", t)
        if ros is not None:
            ros.masks.publish(mask_msg)
            ros.tracks.publish(tracks_msg)
            ros.overlay.publish(overlay_msg)
            t = lap("publish", t)
        lap("total", t_start)
        if ros is not None:
            ros.rclpy.spin_once(ros.node, timeout_sec=0.0)
    return {k: statistics.median(v) for k, v in stages.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per scenario")
    args = parser.parse_args(argv)
    ros: Ros | None
    try:
        ros = Ros()
    except Exception as exc:  # no ROS environment: pure stages only
        print(f"(no ROS environment: {type(exc).__name__}: {exc}; messages not published)")
        ros = None
    scenarios = [("rgb8", 1), ("bgr8", 1), ("bgr8", 4), ("jpeg", 1)]
    columns = ["convert", "label image", "summaries", "overlay", "messages", "publish", "total"]
    print(f"Node overhead per {W}x{H} frame, median ms over {args.frames} frames")
    print("| input | objects | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    try:
        for kind, n in scenarios:
            measure(10, n, kind, ros)  # warm-up
            res = measure(args.frames, n, kind, ros)
            cells = [f"{res[c]:.2f}" if c in res else "-" for c in columns]
            print(f"| {kind} | {n} | " + " | ".join(cells) + " |")
    finally:
        if ros is not None:
            print(f"(subscriber received {ros.received} messages)")
            ros.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
