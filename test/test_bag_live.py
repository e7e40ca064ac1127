"""Live replay: a bag published over DDS (loopback, the run's own domain) into tracker_node,
its outputs recorded, compared with the offline run over the same bag."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ros_harness
from edgetam_ros.bag.bagio import bag_custom_data, read_messages
from edgetam_ros.bag.evaluate import evaluate_bag
from edgetam_ros.bag.from_frames import frames_to_bag, prompts_from_ground_truth
from edgetam_ros.bag.messages import TOPICS, stamp_ns
from edgetam_ros.bag.offline import build_tracker, run_offline
from edgetam_ros.launch_config import node_settings
from vos_data import clip_arrays, micro_checkpoint

pytestmark = pytest.mark.timeout(300)

#: Bag frame rate: frames 2 s apart, so the node (a 128 px random model) finishes each frame
#: long before the next and the prompt (10 ms before frame 1) finds frame 0 processed.
RATE = 0.5


def masks_by_stamp(bag: Path) -> dict[int, np.ndarray]:
    out = {}
    for m in read_messages(bag, [TOPICS.masks]):
        msg = m.decode()
        out[stamp_ns(msg.header)] = np.asarray(msg.data).reshape(msg.height, msg.width)
    return out


def stamp_of_clock(msg: object) -> int:
    t = msg.clock  # type: ignore[attr-defined]
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def test_live_replay_matches_offline(ros_env: dict[str, str], tmp_path: Path) -> None:
    frames, labels = clip_arrays(frames=3, height=120, width=160)
    truth = dict(enumerate(labels))
    bag = tmp_path / "in"
    frames_to_bag(frames, bag, 3, rate=RATE, ground_truth=truth,
                  prompts=prompts_from_ground_truth(truth, "click", 3))
    ckpt = micro_checkpoint(tmp_path / "micro.pt")
    env = dict(ros_env, OMP_NUM_THREADS="1")  # as the offline run below (same arithmetic)

    # The node as `ros2 launch edgetam_ros tracker.launch.py` starts it (same remappings).
    remaps = dict(node_settings({})["remappings"])
    node = ros_harness.NodeProcess(env, {"checkpoint": ckpt, "device": "cpu"},
                                   tmp_path / "node.log", remaps)
    live = tmp_path / "live"
    try:
        assert node.wait_for_log("tracking on", 120), node.log_text()
        cmd = [sys.executable, "-m", "edgetam_ros.bag.cli", "replay", "--bag", str(bag),
               "--record", TOPICS.masks, TOPICS.tracks, "/clock", "--out", str(live), "--clock",
               "--wait-for", TOPICS.image, TOPICS.prompt, "--settle", "1.5", "--quiet"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180,
                              cwd=ros_harness.REPO)
        assert done.returncode == 0, done.stderr + node.log_text()
    finally:
        code = node.stop()
    log = node.log_text()
    assert code == 0, log
    assert "prompt topic: object 1" in log and "prompt topic: object 2" in log, log

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tracker, _ = build_tracker(str(ckpt))
        run_offline(bag, tmp_path / "offline", tracker)
    finally:
        torch.set_num_threads(threads)

    got, want = masks_by_stamp(live), masks_by_stamp(tmp_path / "offline")
    images = [stamp_ns(m.decode().header) for m in read_messages(bag, [TOPICS.image])]
    assert sorted(got) == sorted(want) == images  # nothing dropped
    for s in images:
        np.testing.assert_array_equal(got[s], want[s])
    tracks = {stamp_ns(t.header): [(o.id, o.label) for o in t.objects]
              for t in (m.decode() for m in read_messages(live, [TOPICS.tracks]))}
    # The prompts (10 ms before frame 1) applied to frame 1, as offline.
    assert [tracks[s] for s in images] == [[], [(1, "gt:1"), (2, "gt:2")]] + [
        [(1, "gt:1"), (2, "gt:2")]
    ]

    # /clock carried the bag time: every image's stamp, never going back.
    clock = [stamp_of_clock(m.decode()) for m in read_messages(live, ["/clock"])]
    assert clock == sorted(clock) and set(images) <= set(clock)
    assert len(clock) > 3 * len(images)  # also between messages (40 Hz)

    custom = bag_custom_data(live)
    assert custom["edgetam.rate"] == "1" and custom["edgetam.source"] == "live"
    result = evaluate_bag(live, bag, tmp_path / "report", plots=False)
    assert (result.processed, result.dropped) == (3, 0)
    latency = result.latency_ms
    assert latency["max"] is not None and 0 < latency["max"] < 1000.0 / RATE
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["source"] == "live" and report["id_map"] == {"1": 1, "2": 2}
    assert report["device"] == "cpu" and report["backend"] == "eager", report


def test_demo_ros(ros_env: dict[str, str], tmp_path: Path) -> None:
    """edgetam-demo-ros end to end (lockstep replay), with a small clip and model."""
    ckpt = micro_checkpoint(tmp_path / "micro.pt")
    out = tmp_path / "demo"
    env = dict(ros_env, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "edgetam_ros.bag.demo", "--frames", "3", "--width", "160",
           "--height", "120", "--checkpoint", str(ckpt), "--out", str(out), "--quiet"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240,
                          cwd=ros_harness.REPO)
    node_log = (out / "tracker_node.log").read_text() if (out / "tracker_node.log").exists() \
        else ""
    assert done.returncode == 0, done.stderr + node_log
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    line = lines[0]
    assert line.startswith("edgetam-demo-ros: replayed 3 frames (lockstep) through tracker_node")
    assert f"domain {env['ROS_DOMAIN_ID']}" in line and "0 dropped" in line
    for path in ("report/report.json", "report/plots/input.png", "report/videos/input.mp4",
                 "recorded.bag"):
        assert (out / path).exists() and str(out / path) in line, path
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["processed_frames"] == 3 and report["id_map"] == {"1": 1}
    # Lockstep drops nothing either: the same masks as the offline run over the same bag.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tracker, _ = build_tracker(str(ckpt))
        run_offline(out / "input.bag", tmp_path / "offline", tracker)
    finally:
        torch.set_num_threads(threads)
    got, want = masks_by_stamp(out / "recorded.bag"), masks_by_stamp(tmp_path / "offline")
    assert sorted(got) == sorted(want) and len(got) == 3
    for s in got:
        np.testing.assert_array_equal(got[s], want[s])


@pytest.mark.parametrize("msgtype", ["edgetam_ros/msg/Prompt", "edgetam_ros/msg/TrackedObject",
                                     "edgetam_ros/msg/TrackedObjectArray",
                                     "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo",
                                     "sensor_msgs/msg/CompressedImage"])
def test_bag_type_hashes_match_rosidl(ros_env: dict[str, str], msgtype: str) -> None:
    """The type hashes written into bags (rosbags, from msg/*.msg) are those rosidl generated
    for the built package and the installed ROS interfaces: ROS 2 tools accept the bag."""
    from edgetam_ros.bag.messages import typestore

    pkg, _, name = msgtype.split("/")
    prefixes = [Path(p) for p in ros_env["AMENT_PREFIX_PATH"].split(":") if p]
    found = [p / "share" / pkg / "msg" / f"{name}.json" for p in prefixes]
    path = next((f for f in found if f.is_file()), None)
    assert path is not None, f"no type description of {msgtype} in {prefixes}"
    hashes = json.loads(path.read_text())["type_hashes"]
    (expected,) = [h["hash_string"] for h in hashes if h["type_name"] == msgtype]
    assert typestore().hash_rihs01(msgtype) == expected
