"""End to end: tracker_node as its own process, real DDS on loopback, the real tracker.

The node is started the way ``ros2 run edgetam_ros tracker_node`` starts it (the installed
executable) with a tiny-config checkpoint; the test process publishes frames, clicks and
prompts and calls the services with rclpy, and checks what comes back.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ros_harness

pytestmark = pytest.mark.timeout(300)

W, H = 640, 480
NODE = "/edgetam_tracker"
# The bundled demo model scores 0.94-0.98 mean IoU on such clips (docs/training.md); well
# below that means it does not track, not noise.
DEMO_MODEL_MIN_IOU = 0.8


def scene(width: int = W, height: int = H, shift: int = 0) -> np.ndarray:
    """A simple RGB frame: two colored rectangles on a grey background."""
    img = np.full((height, width, 3), 90, dtype=np.uint8)
    img[height // 5 : height // 2, width // 4 + shift : width // 2 + shift] = (220, 40, 40)
    img[height // 2 : 4 * height // 5, 3 * width // 5 : 4 * width // 5] = (40, 200, 60)
    return img


class Client:
    """The test's side: publishers, subscribers and service clients of one tracker node."""

    def __init__(self, rclpy: Any, name: str, namespace: str = "") -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import Point, PointStamped
        from rcl_interfaces.srv import SetParameters
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from std_srvs.srv import Trigger

        from edgetam_ros.msg import Prompt, TrackedObjectArray
        from edgetam_ros.srv import AddPrompt, RemoveObject

        self.rclpy = rclpy
        self.node = Node(name)
        ns = namespace.rstrip("/")
        self.masks: list[Any] = []
        self.tracks: list[Any] = []
        self.overlays: list[Any] = []
        self.diagnostics: list[Any] = []
        n = self.node
        n.create_subscription(Image, f"{ns}/masks", self.masks.append, 10)
        n.create_subscription(TrackedObjectArray, f"{ns}/tracks", self.tracks.append, 10)
        n.create_subscription(Image, f"{ns}/overlay", self.overlays.append, 10)
        n.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.image_pub = n.create_publisher(Image, f"{ns}/image", qos_profile_sensor_data)
        self.compressed_pub = n.create_publisher(
            CompressedImage, f"{ns}/image/compressed", qos_profile_sensor_data
        )
        self.info_pub = n.create_publisher(CameraInfo, f"{ns}/camera_info", qos_profile_sensor_data)
        self.click_pub = n.create_publisher(Point, f"{ns}/image_mouse_left", 10)
        self.overlay_click_pub = n.create_publisher(Point, f"{ns}/overlay_mouse_left", 10)
        self.point_pub = n.create_publisher(PointStamped, f"{ns}/clicked_point", 10)
        self.prompt_pub = n.create_publisher(Prompt, f"{ns}/prompt", 10)
        node_path = f"{ns}{NODE}"
        self.add = n.create_client(AddPrompt, f"{node_path}/add_prompt")
        self.remove = n.create_client(RemoveObject, f"{node_path}/remove_object")
        self.reset = n.create_client(Trigger, f"{node_path}/reset")
        self.set_params = n.create_client(SetParameters, f"{node_path}/set_parameters")
        self.seq = 0

    # -- helpers ------------------------------------------------------------------------------
    def spin_until(self, predicate: Any, timeout: float) -> bool:
        return ros_harness.spin_until(self.node, predicate, timeout)

    def call(self, client: Any, request: Any, timeout: float = 20.0) -> Any:
        assert client.wait_for_service(timeout_sec=timeout), f"{client.srv_name} not available"
        future = client.call_async(request)
        assert self.spin_until(future.done, timeout), f"{client.srv_name} did not answer"
        return future.result()

    def image_msg(self, rgb: np.ndarray, encoding: str = "rgb8", frame_id: str = "cam") -> Any:
        from sensor_msgs.msg import Image

        from edgetam_ros.conversions import image_fields

        self.seq += 1
        pixels = rgb[:, :, ::-1] if encoding == "bgr8" else rgb
        msg = Image(**image_fields(pixels, encoding))
        msg.header.frame_id = frame_id
        msg.header.stamp.sec = 1000 + self.seq
        msg.header.stamp.nanosec = 123
        return msg

    def send_and_wait(self, msg: Any, timeout: float = 30.0, publisher: Any = None) -> Any:
        """Publish ``msg`` until the masks of a frame with its stamp come back; those masks."""
        pub = publisher or self.image_pub
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)

        def match() -> Any:
            for m in reversed(self.masks):
                if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp:
                    return m
            return None

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pub.publish(msg)  # best effort: publish again until it got through
            if self.spin_until(lambda: match() is not None, 1.5):
                return match()
        raise AssertionError(f"no masks for the frame stamped {stamp}")

    def tracks_for(self, masks_msg: Any, timeout: float = 10.0) -> Any:
        stamp = masks_msg.header.stamp

        def find() -> Any:
            return next((t for t in reversed(self.tracks) if t.header.stamp == stamp), None)

        assert self.spin_until(lambda: find() is not None, timeout), "no tracks for the frame"
        return find()

    def frame(self, rgb: np.ndarray | None = None, **kw: Any) -> tuple[Any, Any]:
        """Send one frame; (masks, tracks) of it."""
        masks = self.send_and_wait(self.image_msg(scene() if rgb is None else rgb, **kw))
        return masks, self.tracks_for(masks)

    def add_prompt(self, object_id: int = 0, points: Any = (), labels: Any = (), box: Any = (),
                   label: str = "") -> Any:
        from geometry_msgs.msg import Point

        from edgetam_ros.srv import AddPrompt

        req = AddPrompt.Request(
            object_id=object_id, label=label,
            points=[Point(x=float(x), y=float(y)) for x, y in points],
            point_labels=list(labels), box=[float(v) for v in box],
        )
        return self.call(self.add, req)

    def remove_object(self, object_id: int) -> Any:
        from edgetam_ros.srv import RemoveObject

        return self.call(self.remove, RemoveObject.Request(object_id=object_id))

    def reset_all(self) -> Any:
        from std_srvs.srv import Trigger

        return self.call(self.reset, Trigger.Request())

    def set_param(self, name: str, value: Any) -> Any:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return self.call(self.set_params, req).results[0]

    def click(self, x: float, y: float, topic: str = "image") -> None:
        from geometry_msgs.msg import Point

        pub = self.click_pub if topic == "image" else self.overlay_click_pub
        pub.publish(Point(x=float(x), y=float(y)))
        self.spin_until(lambda: False, 0.3)

    def close(self) -> None:
        self.node.destroy_node()


def labels_of(masks_msg: Any) -> np.ndarray:
    return np.frombuffer(bytes(masks_msg.data), np.uint8).reshape(masks_msg.height, masks_msg.width)


def ids_of(tracks_msg: Any) -> list[int]:
    return [o.id for o in tracks_msg.objects]


def wait_ids(client: Client, expected: set[int], timeout: float = 40.0) -> Any:
    """Send frames until the tracks list exactly ``expected``; the last tracks."""
    deadline = time.monotonic() + timeout
    tracks = None
    while time.monotonic() < deadline:
        _, tracks = client.frame()
        if set(ids_of(tracks)) == expected:
            return tracks
    raise AssertionError(f"tracked ids {ids_of(tracks) if tracks else None} != {expected}")


def start_node(ros_env: dict[str, str], tmp_path: Path, name: str, namespace: str = "",
               **params: Any) -> ros_harness.NodeProcess:
    params.setdefault("device", "cpu")
    remaps = {"__ns": namespace} if namespace else {}
    return ros_harness.NodeProcess(ros_env, params, tmp_path / f"{name}.log", remaps)


@pytest.fixture(scope="module")
def tracker(ros_env: dict[str, str], rclpy_session: Any, tiny_checkpoint_path: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One tracker_node process (max_objects 3) and a client, shared by this module's tests."""
    log_dir = tmp_path_factory.mktemp("node")
    proc = start_node(ros_env, log_dir, "tracker", checkpoint=tiny_checkpoint_path, max_objects=3)
    client = Client(rclpy_session, "e2e_client")
    try:
        assert proc.wait_for_log("tracking on", 120), proc.log_text()
        yield proc, client
    finally:
        client.close()
        code = proc.stop()
        print(proc.log_text())
        assert code == 0, f"tracker_node exited with {code}"


def test_outputs_carry_the_input_header_and_size(tracker: Any) -> None:
    proc, client = tracker
    client.reset_all()
    msg = client.image_msg(scene(), frame_id="camera_optical")
    masks = client.send_and_wait(msg)
    assert (masks.width, masks.height, masks.encoding, masks.step) == (W, H, "mono8", W)
    assert masks.header == msg.header
    tracks = client.tracks_for(masks)
    assert tracks.header == msg.header and ids_of(tracks) == []
    assert not labels_of(masks).any()
    assert client.spin_until(
        lambda: any(o.header == msg.header for o in client.overlays), 10
    ), "no overlay for the frame"
    overlay = next(o for o in client.overlays if o.header == msg.header)
    assert (overlay.width, overlay.height, overlay.encoding) == (W, H, "rgb8")
    got = np.frombuffer(bytes(overlay.data), np.uint8).reshape(H, W, 3)
    np.testing.assert_array_equal(got, scene())  # nothing tracked: the image itself


def test_services_add_refine_remove_reset(tracker: Any) -> None:
    proc, client = tracker
    client.reset_all()
    client.frame()
    r = client.add_prompt(points=[(240, 150)], label="red box")
    assert r.success and r.object_id == 1, r.message
    r2 = client.add_prompt(box=(384, 240, 512, 384))
    assert r2.success and r2.object_id == 2, r2.message
    tracks = wait_ids(client, {1, 2})
    assert {o.id: o.label for o in tracks.objects} == {1: "red box", 2: ""}
    masks, tracks = client.frame(encoding="bgr8")
    values = set(np.unique(labels_of(masks)).tolist())
    assert values <= {0, 1, 2}
    for o in tracks.objects:
        assert 0.0 <= o.score <= 1.0 and 0.0 <= o.object_score <= 1.0
        assert o.area >= int((labels_of(masks) == o.id).sum())  # overlaps go to one id
        if o.visible:
            assert o.area > 0 and o.bbox.width > 0 and o.bbox.height > 0
            assert o.bbox.x_offset <= o.centroid.x <= o.bbox.x_offset + o.bbox.width
    # refine object 1 with a negative point: same id, still tracked
    r3 = client.add_prompt(object_id=1, points=[(300, 150), (250, 160)], labels=[0, 1])
    assert r3.success and r3.object_id == 1, r3.message
    wait_ids(client, {1, 2})
    # remove, then removing again is refused
    assert client.remove_object(1).success
    wait_ids(client, {2})
    again = client.remove_object(1)
    assert not again.success and "unknown object id 1" in again.message
    # reset forgets everything
    assert client.reset_all().success
    wait_ids(client, set())


def test_prompt_topic_and_clicks(tracker: Any) -> None:
    from geometry_msgs.msg import Point

    from edgetam_ros.msg import Prompt

    proc, client = tracker
    client.reset_all()
    client.frame()
    client.prompt_pub.publish(Prompt(points=[Point(x=200.0, y=120.0)], label="from topic"))
    tracks = wait_ids(client, {1})
    assert tracks.objects[0].label == "from topic"
    client.click(500, 300)  # rqt_image_view on the image: a new object
    wait_ids(client, {1, 2})
    client.click(100, 400, topic="overlay")  # rqt_image_view on the overlay: a new object
    wait_ids(client, {1, 2, 3})
    # refine mode: the click goes to the selected object, no new id
    assert client.set_param("click_mode", "refine").successful
    assert client.set_param("selected_object", 2).successful
    client.click(510, 310)
    wait_ids(client, {1, 2, 3})
    assert proc.wait_for_log("-> object 2 (refine)", 10), proc.log_text()
    # invalid values are refused by validation, read-only ones cannot change
    bad = client.set_param("click_mode", "sometimes")
    assert not bad.successful and "click_mode" in bad.reason
    assert not client.set_param("max_objects", 7).successful
    assert not client.set_param("overlay_alpha", 3.0).successful
    assert client.set_param("click_mode", "new").successful
    assert client.set_param("selected_object", 0).successful


def test_clicked_point_projects_through_camera_info(tracker: Any) -> None:
    from geometry_msgs.msg import PointStamped
    from sensor_msgs.msg import CameraInfo

    proc, client = tracker
    client.reset_all()
    client.frame(frame_id="camera_optical")
    info = CameraInfo(width=W, height=H, distortion_model="plumb_bob", d=[0.0] * 5)
    info.header.frame_id = "camera_optical"
    info.k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    info.p = [500.0, 0.0, 320.0, 0.0, 0.0, 500.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    for _ in range(3):
        client.info_pub.publish(info)
        client.spin_until(lambda: False, 0.2)
    pt = PointStamped()
    pt.header.frame_id = "camera_optical"
    pt.point.x, pt.point.y, pt.point.z = -0.16, -0.18, 1.0  # -> pixel (240, 150)
    client.point_pub.publish(pt)
    wait_ids(client, {1})
    assert proc.wait_for_log("clicked_point click at (240.0, 150.0) -> object 1", 10)
    # a point in another frame: transformed by tf2 where installed, else refused
    pt.header.frame_id = "map"
    client.point_pub.publish(pt)
    assert proc.wait_for_log("clicked_point ignored", 10), proc.log_text()
    # behind the camera: refused
    pt.header.frame_id = "camera_optical"
    pt.point.z = -1.0
    client.point_pub.publish(pt)
    assert proc.wait_for_log("behind the camera", 10), proc.log_text()
    _, tracks = client.frame()
    assert ids_of(tracks) == [1]


def test_bad_input_never_kills_the_node(tracker: Any) -> None:
    from sensor_msgs.msg import Image

    proc, client = tracker
    client.reset_all()
    client.frame()

    def publish_raw(**fields: Any) -> None:
        msg = Image(**fields)
        msg.header.frame_id = "cam"
        for _ in range(3):
            client.image_pub.publish(msg)
            client.spin_until(lambda: False, 0.2)

    good = client.image_msg(scene())
    publish_raw(height=H, width=W, encoding="yuv422", step=W * 2, data=bytes(W * H * 2))
    assert proc.wait_for_log("unsupported image encoding 'yuv422'", 15), proc.log_text()
    publish_raw(height=H, width=W, encoding="rgb8", step=W * 3, data=bytes(100))
    assert proc.wait_for_log("image data is 100 bytes", 15), proc.log_text()
    publish_raw(height=H, width=W, encoding="rgb8", step=W, data=bytes(W * H))
    assert proc.wait_for_log("is smaller than width", 15), proc.log_text()
    publish_raw(height=0, width=0, encoding="rgb8", step=0, data=b"")
    assert proc.wait_for_log("empty image", 15), proc.log_text()

    # clicks: NaN, outside the image
    client.click(math.nan, 10)
    client.click(W + 5, 10)
    client.click(-1, 10)
    assert proc.wait_for_log("is not finite", 10), proc.log_text()
    assert proc.wait_for_log("is outside the 640x480 image", 10), proc.log_text()

    # service prompts: unknown id, outside, NaN, malformed, too many objects (max_objects 3)
    assert "unknown object id 9" in client.add_prompt(object_id=9, points=[(5, 5)]).message
    assert not client.add_prompt(points=[(W + 10, 5)]).success
    assert not client.add_prompt(points=[(math.nan, 5)]).success
    assert not client.add_prompt(points=[(5, 5)], labels=[1, 0]).success
    assert not client.add_prompt(points=[(5, 5)], labels=[3]).success
    assert not client.add_prompt(box=(10, 10, 5, 5)).success
    assert not client.add_prompt(box=(1, 2, 3)).success
    assert not client.add_prompt().success  # nothing at all
    assert not client.add_prompt(object_id=300, points=[(5, 5)]).success
    assert "unknown object id 4" in client.remove_object(4).message
    for k in range(3):
        r = client.add_prompt(points=[(100 + 100 * k, 100)])
        assert r.success, r.message
    full = client.add_prompt(points=[(50, 50)])
    assert not full.success and "max_objects is 3" in full.message
    client.click(60, 60)
    assert proc.wait_for_log("max_objects is 3", 10)
    wait_ids(client, {1, 2, 3})

    # the image size changes: memory cleared, outputs follow the new size
    masks = client.send_and_wait(client.image_msg(scene(320, 240)))
    assert (masks.width, masks.height) == (320, 240)
    assert proc.wait_for_log("frame size changed from 640x480 to 320x240", 10)
    tracks = client.tracks_for(masks)
    assert ids_of(tracks) == []

    # still answering and tracking afterwards
    assert proc.alive()
    r = client.add_prompt(points=[(100, 60)])
    assert r.success, r.message
    masks = client.send_and_wait(client.image_msg(scene(320, 240)))
    assert client.tracks_for(masks).objects
    masks = client.send_and_wait(good)
    assert (masks.width, masks.height) == (W, H)


def test_newest_frame_wins_and_drops_are_counted(tracker: Any) -> None:
    proc, client = tracker
    client.reset_all()
    client.frame()
    assert client.add_prompt(points=[(240, 150)]).success
    burst = [client.image_msg(scene(shift=2 * k)) for k in range(12)]
    first_seq = burst[0].header.stamp.sec
    for msg in burst:  # much faster than the node processes them
        client.image_pub.publish(msg)
        time.sleep(0.01)
    last = burst[-1]

    def newest_done() -> bool:
        return any(m.header.stamp == last.header.stamp for m in client.masks)

    for _ in range(10):  # (best effort: resend the newest frame should DDS have lost it)
        if client.spin_until(newest_done, 3):
            break
        client.image_pub.publish(last)
    assert newest_done(), "the newest frame of the burst was not processed"
    processed = {m.header.stamp.sec for m in client.masks if m.header.stamp.sec >= first_seq}
    assert len(processed) < len(burst)  # stale frames were dropped, not queued
    client.diagnostics.clear()
    assert client.spin_until(lambda: bool(client.diagnostics), 5)
    values = {kv.key: kv.value for kv in client.diagnostics[-1].status[0].values}
    assert int(values["frames_dropped"]) > 0


def test_diagnostics(tracker: Any) -> None:
    proc, client = tracker
    client.frame()
    client.diagnostics.clear()
    assert client.spin_until(lambda: bool(client.diagnostics), 5)
    status = client.diagnostics[-1].status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert status.name == "edgetam_tracker: tracker"
    for key in ("fps", "tracker_ms", "node_overhead_ms", "latency_ms", "frames_dropped",
                "frames_rejected", "objects", "backend", "device"):
        assert key in values
    assert values["backend"] == "eager" and values["device"] == "cpu"
    assert int(values["frames_processed"]) > 0 and float(values["tracker_ms"]) > 0


def test_compressed_input_and_prompt_before_any_frame(
    ros_env: dict[str, str], rclpy_session: Any, tiny_checkpoint_path: Path, tmp_path: Path
) -> None:
    from sensor_msgs.msg import CompressedImage

    from edgetam_ros.conversions import rgb_to_compressed

    # its own namespace: the module's node (same name) may still be running
    proc = start_node(ros_env, tmp_path, "compressed", namespace="/compressed",
                      checkpoint=tiny_checkpoint_path, compressed_input=True,
                      publish_overlay=False)
    client = Client(rclpy_session, "compressed_client", namespace="/compressed")
    try:
        assert proc.wait_for_log("tracking on", 120), proc.log_text()
        assert "image/compressed" in proc.log_text()
        early = client.add_prompt(points=[(10, 10)])
        assert not early.success and "no image processed yet" in early.message
        client.click(10, 10)
        assert proc.wait_for_log("click ignored: no image processed yet", 10)
        for kind in ("jpeg", "png"):
            fmt, data = rgb_to_compressed(scene(), kind)
            msg = CompressedImage(format=fmt, data=data)
            msg.header.frame_id = "cam"
            msg.header.stamp.sec = 77 if kind == "jpeg" else 78
            masks = client.send_and_wait(msg, publisher=client.compressed_pub)
            assert (masks.width, masks.height) == (W, H) and masks.header == msg.header
        junk = CompressedImage(format="jpeg", data=b"not an image at all")
        for _ in range(3):
            client.compressed_pub.publish(junk)
            client.spin_until(lambda: False, 0.2)
        assert proc.wait_for_log("neither JPEG nor PNG", 10), proc.log_text()
        r = client.add_prompt(points=[(240, 150)])
        assert r.success, r.message
        assert proc.alive()
    finally:
        client.close()
        assert proc.stop() == 0, proc.log_text()


def test_torchscript_backend_tracks(
    ros_env: dict[str, str], rclpy_session: Any, tiny_checkpoint_path: Path, tmp_path: Path
) -> None:
    """backend:=torchscript without export_dir traces the model at start-up and tracks."""
    proc = start_node(ros_env, tmp_path, "traced", namespace="/traced",
                      checkpoint=tiny_checkpoint_path, backend="torchscript",
                      publish_overlay=False)
    client = Client(rclpy_session, "traced_client", namespace="/traced")
    try:
        assert proc.wait_for_log("tracking on", 180), proc.log_text()
        assert "torchscript" in proc.log_text()
        client.frame()
        r = client.add_prompt(points=[(240, 150)])
        assert r.success, r.message
        tracks = wait_ids(client, {r.object_id})
        assert tracks.objects[0].area > 0
    finally:
        client.close()
        assert proc.stop() == 0, proc.log_text()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"checkpoint": "/nonexistent/edgetam.pt"}, "checkpoint not found: /nonexistent/edge"),
        ({"checkpoint": "''"}, "parameter 'checkpoint' is not set"),  # YAML empty string
        ({"checkpoint": "random", "max_objects": 0}, "invalid parameter"),
        ({"checkpoint": "random", "backend": "tensorrt"}, "backend 'tensorrt' is not"),
        ({"checkpoint": "random", "backend": "coreml"}, "needs an export directory"),
    ],
)
def test_start_up_errors_exit_non_zero(ros_env: dict[str, str], tmp_path: Path,
                                       params: dict[str, Any], expected: str) -> None:
    proc = start_node(ros_env, tmp_path, "fail", **params)
    try:
        code = proc.wait(timeout=120)
    finally:
        proc.stop()
    log = proc.log_text()
    assert code == 2, log
    assert "cannot start" in log and expected in log, log


def test_default_demo_model_really_tracks(
    ros_env: dict[str, str], rclpy_session: Any, tmp_path: Path
) -> None:
    """No checkpoint parameter: the node loads the bundled demo model, and two clicked objects
    of a generated clip (not seen in training) are tracked: IoU with the ground truth."""
    from edgetam_core.synthetic import make_sample_clip

    clip = make_sample_clip(num_frames=10, height=240, width=320, seed=4242)
    proc = start_node(ros_env, tmp_path, "demo", namespace="/demo", publish_overlay=False)
    client = Client(rclpy_session, "demo_client", namespace="/demo")
    try:
        assert proc.wait_for_log("tracking on", 120), proc.log_text()
        assert "bundled demo model" in proc.log_text()
        client.frame(clip.frames[0])
        node_id = {}  # ground-truth id -> the id the node gave the object
        for oid in clip.object_ids:
            r = client.add_prompt(points=[clip.clicks[oid]], labels=[1])
            assert r.success, r.message
            node_id[oid] = r.object_id
        ious: dict[int, list[float]] = {oid: [] for oid in clip.object_ids}
        for frame, truth in zip(clip.frames, clip.labels, strict=True):  # prompts apply here
            masks, _ = client.frame(frame)
            got = labels_of(masks)
            for oid in clip.object_ids:
                inter = np.logical_and(got == node_id[oid], truth == oid).sum()
                union = np.logical_or(got == node_id[oid], truth == oid).sum()
                ious[oid].append(float(inter / max(union, 1)))
        for oid, values in ious.items():
            assert np.mean(values[1:]) >= DEMO_MODEL_MIN_IOU, (oid, values)
    finally:
        client.close()
        assert proc.stop() == 0, proc.log_text()
