"""The ``tracker_node`` (default name ``edgetam_tracker``): a thin rclpy adapter over Tracker.

Threads: the executor runs subscriptions, services and the diagnostics timer; all of them
only record or queue (cheap). One worker thread owns the ``Tracker``: it takes the newest
frame from a one-slot mailbox (older unprocessed frames are dropped and counted), applies
queued prompt/remove/reset operations, steps the tracker and publishes. Services therefore
answer at once while a frame is being processed; their prompts apply to the next frame.

Every output (``masks``, ``tracks``, ``overlay``) carries the input image's header.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PointStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger

from edgetam_core.errors import CheckpointError, EdgeTAMError, InputError, PromptError
from edgetam_core.types import Prompt
from edgetam_ros.conversions import (
    compressed_to_rgb,
    image_fields,
    image_to_rgb,
    label_image,
    masks_of,
    summarize,
    tracked_object_array,
)
from edgetam_ros.msg import Prompt as PromptMsg
from edgetam_ros.msg import TrackedObjectArray
from edgetam_ros.overlay import draw_overlay
from edgetam_ros.params import BACKENDS, PARAMS, validate_parameter
from edgetam_ros.prompts import (
    ClickPrompter,
    next_free_id,
    project_to_pixel,
    prompt_from_fields,
    transform_point,
)
from edgetam_ros.srv import AddPrompt, RemoveObject

try:  # optional: clicked_point in frames other than the camera's
    import tf2_ros

    HAVE_TF2 = True
except ImportError:
    tf2_ros = None
    HAVE_TF2 = False

NODE_NAME = "edgetam_tracker"


class StartupError(Exception):
    """The node cannot start (bad parameter, missing checkpoint...): one-line message."""


def resolve_device(device: str) -> str:
    """'auto' -> the best available torch device; errors for unavailable ones."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise StartupError(f"device '{device}' requested but CUDA is not available (use cpu)")
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise StartupError("device 'mps' requested but MPS is not available (use cpu)")
    return device


def build_tracker(checkpoint: str, device: str, backend: str, max_objects: int,
                  mask_threshold: float, log: Callable[[str], Any], export_dir: str = "",
                  precision: str = "fp32") -> Any:
    """Load the model and wrap it in a Tracker; StartupError with a clear message on failure."""
    from edgetam_core.checkpoint import build_default_model, load_checkpoint, load_demo_model
    from edgetam_core.tracker import Tracker

    if backend not in BACKENDS:
        available = ", ".join(BACKENDS)
        raise StartupError(f"backend '{backend}' is not available (available: {available})")
    if not checkpoint:
        raise StartupError(
            "parameter 'checkpoint' is not set: pass the path of edgetam.pt "
            "(e.g. checkpoint:=/path/to/edgetam.pt), checkpoint:=demo for the bundled "
            "synthetic-world demo model, or checkpoint:=random for random weights"
        )
    path = Path(checkpoint).expanduser()
    named = checkpoint in ("demo", "default", "random")
    if not named and not path.is_file():  # fail fast, before importing torch
        raise StartupError(f"cannot load checkpoint: checkpoint not found: {path}")
    dev = resolve_device(device)
    if checkpoint == "random":
        log("checkpoint 'random': random weights, masks are NOT meaningful (plumbing test only)")
        model = build_default_model(device=dev)
    elif checkpoint in ("demo", "default"):
        log("checkpoint 'demo': the bundled demo model, trained on the synthetic world only "
            "(tracks its textured shapes, not real scenes; pass checkpoint:=/path/to/edgetam.pt)")
        try:
            model = load_demo_model(device=dev)
        except CheckpointError as exc:
            raise StartupError(f"cannot load checkpoint: {exc}") from None
    else:
        try:
            model = load_checkpoint(path, device=dev)
        except CheckpointError as exc:
            raise StartupError(f"cannot load checkpoint: {exc}") from None
        except Exception as exc:  # a checkpoint we can read but not build a model from
            raise StartupError(
                f"cannot load checkpoint {path}: {type(exc).__name__}: {exc}"
            ) from None
    from edgetam_core.backends import create_backend
    from edgetam_core.errors import EdgeTAMError

    try:
        runtime = create_backend(backend, model, export_dir or None, precision)
        return Tracker(runtime, max_objects=max_objects, mask_threshold=mask_threshold, device=dev)
    except (EdgeTAMError, ValueError) as exc:
        raise StartupError(f"cannot start the {backend} backend: {exc}") from None


# ----------------------------------------------------------------------------------------------
# Small thread-safe helpers
# ----------------------------------------------------------------------------------------------
class FrameSlot:
    """One-slot mailbox: ``put`` replaces an unconsumed item (and says so), ``take`` waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None

    def put(self, item: Any) -> bool:
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float) -> Any:
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item


@dataclass
class Op:
    """A queued tracker operation: 'prompt', 'remove' or 'reset'."""

    kind: str
    object_id: int = 0
    prompt: Prompt | None = None


class Stats:
    """Counters and recent timings for /diagnostics."""

    def __init__(self) -> None:
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.rejected = 0
        self.failed = 0
        self.tracker_ms: deque[float] = deque(maxlen=50)
        self.overhead_ms: deque[float] = deque(maxlen=50)
        self.latency_ms: deque[float] = deque(maxlen=50)
        self.done_times: deque[float] = deque(maxlen=100)
        self.last_error = ""

    def fps(self, now: float, window: float = 5.0) -> float:
        times = [t for t in self.done_times if now - t <= window]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)


def _median(values: deque[float]) -> float:
    return float(np.median(list(values))) if values else 0.0


# ----------------------------------------------------------------------------------------------
# The node
# ----------------------------------------------------------------------------------------------
class TrackerNode(Node):
    """See the module docstring; topics, services and parameters are listed in the README."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._lock = threading.Lock()
        self._warned: dict[str, float] = {}
        self._values: dict[str, Any] = {}
        self.add_on_set_parameters_callback(self._on_set_parameters)
        try:
            for spec in PARAMS:
                self.declare_parameter(spec.name, spec.default, spec.descriptor())
        except Exception as exc:  # rclpy's InvalidParameter*Exception, ValueError...
            raise StartupError(f"invalid parameter: {exc}") from None
        for spec in PARAMS:
            self._values[spec.name] = self.get_parameter(spec.name).value
        v = self._values

        self._tracker = build_tracker(
            v["checkpoint"], v["device"], v["backend"], v["max_objects"], v["mask_threshold"],
            self.get_logger().warning, export_dir=v["export_dir"], precision=v["precision"],
        )
        self._device = str(self._tracker.device)

        # State shared with the worker (guarded by self._lock).
        self._ops: list[Op] = []
        self._tracked_ids: set[int] = set()
        self._labels: dict[int, str] = {}
        self._prompter = ClickPrompter()
        self._frame_size: tuple[int, int] | None = None  # (H, W) of the last processed frame
        self._camera_frame = ""
        self._camera_info: CameraInfo | None = None
        self._slot = FrameSlot()
        self.stats = Stats()

        depth = int(v["qos_depth"])
        sensor_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=depth,
            reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE,
        )
        reliable = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE
        )
        if v["compressed_input"]:
            self._image_sub = self.create_subscription(
                CompressedImage, "image/compressed", self._on_image, sensor_qos
            )
        else:
            self._image_sub = self.create_subscription(Image, "image", self._on_image, sensor_qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, sensor_qos)
        self.create_subscription(PromptMsg, "prompt", self._on_prompt_msg, reliable)
        self.create_subscription(PointStamped, "clicked_point", self._on_clicked_point, reliable)
        self.create_subscription(
            Point, "image_mouse_left", lambda m: self._on_pixel_click(m, "image_mouse_left"),
            reliable,
        )
        self.create_subscription(
            Point, "overlay_mouse_left", lambda m: self._on_pixel_click(m, "overlay_mouse_left"),
            reliable,
        )
        self._masks_pub = self.create_publisher(Image, "masks", reliable)
        self._tracks_pub = self.create_publisher(TrackedObjectArray, "tracks", reliable)
        self._overlay_pub = self.create_publisher(Image, "overlay", reliable)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(AddPrompt, "~/add_prompt", self._srv_add_prompt)
        self.create_service(RemoveObject, "~/remove_object", self._srv_remove_object)
        self.create_service(Trigger, "~/reset", self._srv_reset)
        self.create_timer(1.0, self._publish_diagnostics)

        self._tf_buffer: Any = None
        if HAVE_TF2:
            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="edgetam_worker", daemon=True)
        self._worker.start()
        topic = self._image_sub.topic_name
        self.get_logger().info(
            f"tracking on '{topic}' with {v['checkpoint']} ({v['backend']} on {self._device}); "
            f"up to {v['max_objects']} objects; click mode '{v['click_mode']}'"
        )

    # ------------------------------------------------------------------------------------------
    # Parameters
    # ------------------------------------------------------------------------------------------
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            reason = validate_parameter(p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        for p in params:
            self._values[p.name] = p.value
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------------------------
    # Helpers
    # ------------------------------------------------------------------------------------------
    def _warn(self, key: str, text: str, period: float = 5.0) -> None:
        """A warning, at most once per ``period`` seconds for each ``key`` ("" = the text)."""
        key = key or text
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) >= period:
            self._warned[key] = now
            self.get_logger().warning(text)

    def _expected_ids(self) -> set[int]:
        """Object ids once the queued operations apply (call with self._lock held)."""
        ids = set(self._tracked_ids)
        for op in self._ops:
            if op.kind == "reset":
                ids.clear()
            elif op.kind == "remove":
                ids.discard(op.object_id)
            else:
                ids.add(op.object_id)
        return ids

    # ------------------------------------------------------------------------------------------
    # Inputs
    # ------------------------------------------------------------------------------------------
    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.stats.received += 1
        if self._slot.put((msg, time.monotonic())):
            self.stats.dropped += 1

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_prompt_msg(self, msg: PromptMsg) -> None:
        ok, text, _ = self._submit_prompt(
            msg.object_id, msg.label, msg.points, msg.point_labels, msg.box
        )
        if ok:
            self.get_logger().info(f"prompt topic: {text}")
        else:
            self._warn("", f"prompt ignored: {text}", period=1.0)

    def _on_pixel_click(self, msg: Point, source: str) -> None:
        self._click(msg.x, msg.y, source)

    def _on_clicked_point(self, msg: PointStamped) -> None:
        info = self._camera_info
        if info is None:
            self._warn("", "clicked_point ignored: no camera_info received yet", 1.0)
            return
        camera_frame = info.header.frame_id or self._camera_frame
        source_frame = msg.header.frame_id
        point = (msg.point.x, msg.point.y, msg.point.z)
        if source_frame and camera_frame and source_frame != camera_frame:
            if self._tf_buffer is None:
                self._warn(
                    "",
                    f"clicked_point ignored: it is in frame '{source_frame}', not in the camera's "
                    f"optical frame '{camera_frame}', and tf2_ros is not installed to transform it "
                    "(install tf2_ros_py, or make the camera frame RViz's fixed frame)",
                    1.0,
                )
                return
            try:
                transform = self._lookup_transform(camera_frame, source_frame, msg.header.stamp)
            except Exception as exc:  # tf2 lookup/extrapolation/connectivity errors
                self._warn("", f"clicked_point ignored: no transform from "
                           f"'{source_frame}' to '{camera_frame}': {exc}", 1.0)
                return
            point = transform_point(point, transform)
        try:
            u, v = project_to_pixel(point, info, rectified=bool(self._values["rectified_input"]))
        except PromptError as exc:
            self._warn("", f"clicked_point ignored: {exc}", 1.0)
            return
        self._click(u, v, "clicked_point")

    def _lookup_transform(self, target: str, source: str, stamp: Any) -> Any:
        """tf2 transform source -> target at ``stamp``, else the latest one."""
        no_wait = Duration(seconds=0.0)
        try:
            return self._tf_buffer.lookup_transform(target, source, Time.from_msg(stamp), no_wait)
        except Exception:
            return self._tf_buffer.lookup_transform(target, source, Time(), no_wait)

    def _click(self, x: float, y: float, source: str) -> None:
        size = self._frame_size
        if size is None:
            self._warn("", f"{source} click ignored: no image processed yet", 1.0)
            return
        mode = str(self._values["click_mode"])
        with self._lock:
            try:
                prompt = self._prompter.click(
                    x, y, mode, self._expected_ids(), int(self._values["max_objects"]), size,
                    int(self._values["selected_object"]),
                )
            except PromptError as exc:
                self._warn("", f"{source}: {exc}", 1.0)
                return
            self._ops.append(Op("prompt", prompt.object_id, prompt))
        self.get_logger().info(
            f"{source} click at ({float(x):.1f}, {float(y):.1f}) -> object {prompt.object_id} "
            f"({mode})"
        )

    def _submit_prompt(self, object_id: int, label: str, points: Any, point_labels: Any,
                       box: Any) -> tuple[bool, str, int]:
        """Validate and queue a prompt: (success, message, object id)."""
        size = self._frame_size
        if size is None:
            return (False, "no image processed yet: prompts are in image pixels, publish images "
                    "first", 0)
        max_objects = int(self._values["max_objects"])
        with self._lock:
            ids = self._expected_ids()
            oid = int(object_id)
            try:
                if oid == 0:
                    if len(ids) >= max_objects:
                        raise PromptError(
                            f"already tracking {len(ids)} objects (max_objects is {max_objects})"
                        )
                    oid = next_free_id(ids)
                elif oid not in ids:
                    known = ", ".join(map(str, sorted(ids))) or "none"
                    raise PromptError(
                        f"unknown object id {oid} (tracked: {known}); use object_id 0 to start "
                        "a new object"
                    )
                prompt = prompt_from_fields(oid, list(points), list(point_labels), list(box), size)
            except PromptError as exc:
                return False, str(exc), int(object_id)
            self._ops.append(Op("prompt", oid, prompt))
            if label:
                self._labels[oid] = str(label)
            self._prompter.prompted(oid, prompt.points, prompt.labels, replace=int(object_id) == 0)
        verb = "new object" if int(object_id) == 0 else "refinement"
        return True, f"object {oid}: {verb} queued for the next frame", oid

    # ------------------------------------------------------------------------------------------
    # Services
    # ------------------------------------------------------------------------------------------
    def _srv_add_prompt(self, req: Any, resp: Any) -> Any:
        ok, text, oid = self._submit_prompt(
            req.object_id, req.label, req.points, req.point_labels, req.box
        )
        resp.success, resp.message, resp.object_id = ok, text, oid
        if not ok:
            self.get_logger().warning(f"add_prompt refused: {text}")
        return resp

    def _srv_remove_object(self, req: Any, resp: Any) -> Any:
        oid = int(req.object_id)
        with self._lock:
            ids = self._expected_ids()
            if oid not in ids:
                known = ", ".join(map(str, sorted(ids))) or "none"
                resp.success, resp.message = False, f"unknown object id {oid} (tracked: {known})"
                return resp
            self._ops.append(Op("remove", oid))
            self._labels.pop(oid, None)
            self._prompter.forget(oid)
        resp.success, resp.message = True, f"object {oid} removed"
        return resp

    def _srv_reset(self, req: Any, resp: Any) -> Any:
        with self._lock:
            n = len(self._expected_ids())
            self._ops.append(Op("reset"))
            self._labels.clear()
            self._prompter.forget()
        resp.success, resp.message = True, f"reset: {n} object(s) removed, memory cleared"
        return resp

    # ------------------------------------------------------------------------------------------
    # Worker
    # ------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            item = self._slot.take(timeout=0.1)
            if item is None:
                continue
            try:
                self._process(*item)
            except Exception as exc:  # never let one frame kill the node
                self.stats.failed += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                self._warn("worker", f"frame failed: {self.stats.last_error}")

    def _take_prompts(self, height: int, width: int) -> list[Prompt]:
        """Apply queued remove/reset operations; return the prompts usable on this frame."""
        with self._lock:
            self._tracked_ids = self._expected_ids()
            ops, self._ops = self._ops, []
        tracker = self._tracker
        prompts: list[Prompt] = []
        for op in ops:
            if op.kind == "reset":
                tracker.reset()
                prompts.clear()
            elif op.kind == "remove":
                if op.object_id in tracker.object_ids:
                    tracker.remove(op.object_id)
                prompts = [p for p in prompts if p.object_id != op.object_id]
            elif op.prompt is not None:
                prompts.append(op.prompt)
        resized = tracker.frame_size is not None and tracker.frame_size != (height, width)
        existing = set() if resized else set(tracker.object_ids)
        usable = []
        for p in prompts:
            try:
                p.validate(height, width)
            except PromptError as exc:
                self._warn("", f"prompt for object {p.object_id} dropped: {exc}", 1.0)
                continue
            if p.object_id not in existing and len(existing) >= tracker.max_objects:
                self._warn("", f"prompt for object {p.object_id} dropped: max_objects "
                           f"({tracker.max_objects}) reached", 1.0)
                continue
            existing.add(p.object_id)
            usable.append(p)
        return usable

    def _process(self, msg: Any, received: float) -> None:
        t0 = time.perf_counter()
        try:
            if isinstance(msg, CompressedImage):
                rgb = compressed_to_rgb(msg)
            else:
                rgb = image_to_rgb(msg)
        except InputError as exc:
            self.stats.rejected += 1
            self._warn("", f"image rejected: {exc}")
            return
        height, width = rgb.shape[:2]
        prompts = self._take_prompts(height, width)
        t1 = time.perf_counter()
        try:
            result = self._tracker.step(rgb, prompts=prompts)
        except PromptError as exc:
            self._warn("", f"prompts dropped: {exc}", 1.0)
            result = self._tracker.step(rgb)
        except EdgeTAMError as exc:
            self.stats.rejected += 1
            self._warn("", f"frame rejected: {exc}")
            return
        t2 = time.perf_counter()
        for event in result.events:
            self.get_logger().warning(event)

        ids = set(self._tracker.object_ids)
        with self._lock:
            self._tracked_ids = ids
            keep = self._expected_ids()
            self._prompter.keep_only(keep)
            for oid in [o for o in self._labels if o not in keep]:
                del self._labels[oid]
            labels_by_id = dict(self._labels)
        self._frame_size = (height, width)
        self._camera_frame = msg.header.frame_id

        threshold = float(self._values["mask_threshold"])
        masks = masks_of(result, threshold)
        label_img = label_image(result, masks)
        summaries = summarize(result, masks, labels_by_id)
        header = msg.header
        self._masks_pub.publish(Image(header=header, **image_fields(label_img, "mono8")))
        self._tracks_pub.publish(tracked_object_array(summaries, header))
        if self._values["publish_overlay"] and self._overlay_pub.get_subscription_count() > 0:
            drawn = draw_overlay(rgb, label_img, summaries, float(self._values["overlay_alpha"]))
            self._overlay_pub.publish(Image(header=header, **image_fields(drawn, "rgb8")))
        t3 = time.perf_counter()

        s = self.stats
        s.processed += 1
        s.tracker_ms.append((t2 - t1) * 1e3)
        s.overhead_ms.append(((t1 - t0) + (t3 - t2)) * 1e3)
        s.latency_ms.append((time.monotonic() - received) * 1e3)
        s.done_times.append(time.monotonic())

    # ------------------------------------------------------------------------------------------
    # Diagnostics
    # ------------------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        s = self.stats
        now = time.monotonic()
        fps = s.fps(now)
        idle = not s.done_times or now - s.done_times[-1] > 5.0
        status = DiagnosticStatus(name=f"{self.get_name()}: tracker", hardware_id=self._device)
        if s.processed == 0:
            status.level, status.message = DiagnosticStatus.WARN, "no image processed yet"
        elif idle:
            status.level, status.message = DiagnosticStatus.WARN, "no image in the last 5 s"
        else:
            status.level = DiagnosticStatus.OK
            status.message = f"tracking {len(self._tracked_ids)} object(s) at {fps:.1f} fps"
        values = {
            "fps": f"{fps:.2f}",
            "tracker_ms": f"{_median(s.tracker_ms):.2f}",
            "node_overhead_ms": f"{_median(s.overhead_ms):.2f}",
            "latency_ms": f"{_median(s.latency_ms):.2f}",
            "frames_received": str(s.received),
            "frames_processed": str(s.processed),
            "frames_dropped": str(s.dropped),
            "frames_rejected": str(s.rejected),
            "frames_failed": str(s.failed),
            "objects": str(len(self._tracked_ids)),
            "backend": str(self._values["backend"]),
            "device": self._device,
            "checkpoint": str(self._values["checkpoint"]),
        }
        if s.last_error:
            values["last_error"] = s.last_error
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(arr)

    # ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the worker and destroy the node."""
        self._stop.set()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        self.destroy_node()


def run(args: list[str] | None = None) -> int:
    """Start rclpy, run the node until shutdown; 0 on a clean exit, 2 when it cannot start."""
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    node: TrackerNode | None = None
    try:
        node = TrackerNode()
        rclpy.spin(node)
    except StartupError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {exc}")
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
        rclpy.try_shutdown()
    return 0
