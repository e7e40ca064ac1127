"""Bags without ROS: from-frames, the offline runner, bag evaluation (values worked out here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgetam_core.eval.protocols import farthest_from_boundary
from edgetam_core.types import Prompt
from edgetam_ros.bag.bagio import RATE_KEY, BagWriter, bag_topics, read_messages
from edgetam_ros.bag.cli import main
from edgetam_ros.bag.evaluate import evaluate_bag
from edgetam_ros.bag.from_frames import DEFAULT_START_NS, frames_to_bag, prompt_schedule
from edgetam_ros.bag.messages import (
    IMAGE,
    TOPICS,
    TRACKS,
    header,
    image_msg,
    stamp_ns,
    typestore,
)
from edgetam_ros.bag.offline import NodeLogic, build_tracker
from edgetam_ros.bag.replay import wall_offsets
from edgetam_ros.conversions import ObjectSummary, compressed_to_rgb, image_to_rgb
from vos_data import clip_arrays, micro_checkpoint

NS = 1_000_000_000


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    """One intra-op thread: on a busy 2-core machine two threads mostly wait for each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def clip() -> tuple[list[np.ndarray], list[np.ndarray]]:
    return clip_arrays(frames=3, height=48, width=64)


def test_from_frames_writes_images_info_truth_and_timed_prompts(clip: Any, tmp_path: Path
                                                                ) -> None:
    frames, labels = clip
    truth = dict(enumerate(labels))
    prompts = {0: [Prompt.from_clicks(2, [[40, 20]]), Prompt.from_clicks(1, None,
                                                                       box=(1, 2, 30, 40))],
               2: [Prompt.from_clicks(2, [[41, 21], [10, 10]], [1, 0])]}
    summary = frames_to_bag(frames, tmp_path / "b", 3, rate=4.0, prompts=prompts,
                            ground_truth=truth)
    assert (summary.frames, summary.prompts, summary.ground_truth) == (3, 3, 3)
    assert "frame 0 apply to frame 1" in summary.line()
    assert bag_topics(tmp_path / "b") == {
        "/camera/image_raw": IMAGE, "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
        "/prompt": "edgetam_ros/msg/Prompt", "/ground_truth/masks": IMAGE,
    }
    msgs = list(read_messages(tmp_path / "b"))
    period = NS // 4
    images = [m for m in msgs if m.topic == TOPICS.image]
    assert [m.timestamp for m in images] == [DEFAULT_START_NS + k * period for k in range(3)]
    for k, m in enumerate(images):
        img = m.decode()
        assert stamp_ns(img.header) == m.timestamp and img.header.frame_id == "camera"
        np.testing.assert_array_equal(image_to_rgb(img), frames[k])
    gts = [m.decode() for m in msgs if m.topic == TOPICS.ground_truth]
    for k, g in enumerate(gts):
        assert g.encoding == "mono8" and stamp_ns(g.header) == images[k].timestamp
        np.testing.assert_array_equal(np.asarray(g.data).reshape(48, 64), labels[k])
    info = next(m.decode() for m in msgs if m.topic == TOPICS.camera_info)
    assert (info.width, info.height) == (64, 48) and list(info.k[[2, 5]]) == [32.0, 24.0]
    # Prompts: frame 0's go 10 ms before frame 1 (sorted by id: 1 then 2, 1 us apart) as new
    # objects; the node numbers them 1 (gt 1) and 2 (gt 2), so the refinement of gt object 2 on
    # frame 2 names node object 2.
    pm = [(m.timestamp, m.decode()) for m in msgs if m.topic == TOPICS.prompt]
    t1, t2 = DEFAULT_START_NS + period, DEFAULT_START_NS + 2 * period
    assert [t for t, _ in pm] == [t1 - 10_000_000, t1 - 10_000_000 + 1000, t2 - 10_000_000]
    assert [(p.object_id, p.label) for _, p in pm] == [(0, "gt:1"), (0, "gt:2"), (2, "gt:2")]
    assert list(pm[0][1].box) == [1, 2, 30, 40] and not pm[0][1].points
    assert [(q.x, q.y) for q in pm[2][1].points] == [(41, 21), (10, 10)]
    assert list(pm[2][1].point_labels) == [1, 0]
    assert stamp_ns(pm[2][1].header) == t2
    # Storage choice and compression.
    frames_to_bag(frames, tmp_path / "c", 3, storage="sqlite3", compressed=True)
    assert list((tmp_path / "c").glob("*.db3"))
    comp = [m.decode() for m in read_messages(tmp_path / "c", [TOPICS.compressed])]
    assert len(comp) == 3
    assert np.abs(compressed_to_rgb(comp[1]).astype(int) - frames[1]).mean() < 6  # jpeg


def test_prompt_schedule_rules() -> None:
    mask = Prompt(1, mask=np.ones((4, 4), dtype=bool))
    with pytest.raises(Exception, match="mask prompts cannot go into a bag"):
        prompt_schedule({0: [mask]}, 3)
    with pytest.raises(Exception, match="only 3 frames"):
        prompt_schedule({3: [Prompt.from_clicks(1, [[1, 1]])]}, 3)
    sched = prompt_schedule({1: [Prompt.from_clicks(5, [[1, 1]])],
                             2: [Prompt.from_clicks(3, [[1, 1]]),
                                 Prompt.from_clicks(5, [[2, 2]])]}, 3)
    assert [(k, p.object_id, n) for k, p, n in sched] == [(1, 5, 0), (2, 3, 0), (2, 5, 1)]


def test_from_frames_cli_refuses_bad_input(tmp_path: Path, capsys: Any) -> None:
    assert main(["from-frames", "--input", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"edgetam-bag: error: input not found: {tmp_path / 'nope'}"
    assert not (tmp_path / "b").exists()


def test_wall_offsets() -> None:
    ts = [0, NS, 2 * NS, 5 * NS // 2]
    assert wall_offsets(ts, 2.0, NS) == [(1, 0.0), (2, 0.5), (3, 0.75)]
    assert wall_offsets(ts, 0.5) == [(0, 0.0), (1, 2.0), (2, 4.0), (3, 5.0)]


class EchoTracker:
    """Stands in for Tracker: every prompted object's mask is a 2x2 square at its first click."""

    max_objects = 16

    def __init__(self) -> None:
        self.ids: dict[int, tuple[int, int]] = {}
        self.steps: list[list[int]] = []

    @property
    def object_ids(self) -> list[int]:
        return sorted(self.ids)

    def reset(self) -> None:
        self.ids.clear()

    def step(self, frame: np.ndarray, prompts: Any = ()) -> Any:
        from edgetam_core.types import FrameResult, ObjectResult

        self.steps.append([p.object_id for p in prompts])
        for p in prompts:
            self.ids.setdefault(p.object_id, (int(p.points[0][1]), int(p.points[0][0])))
        h, w = frame.shape[:2]
        result = FrameResult(len(self.steps) - 1, h, w)
        for oid, (r, c) in self.ids.items():
            logits = np.full((h, w), -1.0, dtype=np.float32)
            logits[r : r + 2, c : c + 2] = 1.0
            result.objects[oid] = ObjectResult(oid, logits, logits, 0.9, 2.0)
        return result


def test_node_logic_follows_the_node() -> None:
    logic = NodeLogic(EchoTracker())
    frame = np.zeros((10, 12, 3), dtype=np.uint8)
    assert logic.prompt(0, "gt:1", [(1, 1)], [], [])[0] is False  # before any image
    assert logic.refused == ["no image processed yet"]
    labels, summaries, _ = logic.image(frame)
    assert not labels.any() and summaries == []
    assert logic.prompt(0, "gt:4", [(3, 2)], [], []) == (True, "object 1")
    assert logic.click(7, 5) == (True, "object 2")  # click_mode new: the next free id
    assert logic.prompt(9, "", [(1, 1)], [], [])[0] is False  # unknown id
    assert logic.prompt(0, "", [(20, 1)], [], [])[0] is False  # outside the 12x10 image
    labels, summaries, _ = logic.image(frame)
    assert logic.tracker.steps[-1] == [1, 2]  # both prompts applied to the next image
    expected = np.zeros((10, 12), dtype=np.uint8)
    expected[2:4, 3:5] = 1
    expected[5:7, 7:9] = 2
    np.testing.assert_array_equal(labels, expected)
    assert summaries == [
        ObjectSummary(1, "gt:4", 0.9, pytest.approx(0.8807970779778823), True, (3, 2, 2, 2),
                      (3.5, 2.5), 4),
        ObjectSummary(2, "", 0.9, pytest.approx(0.8807970779778823), True, (7, 5, 2, 2),
                      (7.5, 5.5), 4),
    ]


def _recorded_bag(path: Path, input_bag: Path, masks: dict[int, np.ndarray],
                  delay_ns: int, rate: float, labels: dict[int, str]) -> None:
    """A bag as `replay --record` writes it: masks (by frame) delayed by ``delay_ns``."""
    images = list(read_messages(input_bag, [TOPICS.image]))
    tracks_cls = typestore().types[TRACKS]
    obj_cls = typestore().types["edgetam_ros/msg/TrackedObject"]
    roi = typestore().types["sensor_msgs/msg/RegionOfInterest"]
    point = typestore().types["geometry_msgs/msg/Point"]
    with BagWriter(path) as w:
        for k, m in enumerate(images):
            if k not in masks:
                continue
            hdr = header(stamp_ns(m.decode().header), "camera")
            w.write(TOPICS.masks, IMAGE, m.timestamp + delay_ns, image_msg(masks[k], hdr,
                                                                           "mono8"))
            objs = [obj_cls(id=i, label=lbl, score=1.0, object_score=1.0, visible=True,
                            bbox=roi(x_offset=0, y_offset=0, height=0, width=0,
                                     do_rectify=False),
                            centroid=point(x=0.0, y=0.0, z=0.0), area=0)
                    for i, lbl in labels.items()]
            w.write(TOPICS.tracks, TRACKS, m.timestamp + delay_ns, tracks_cls(header=hdr,
                                                                              objects=objs))
        w.set_custom_data(RATE_KEY, f"{rate:g}")


def test_evaluate_bag_scores_drops_and_latency(tmp_path: Path) -> None:
    h, w = 30, 40
    truth = np.zeros((h, w), dtype=np.uint8)
    truth[10:20, 10:20] = 1
    frames = [np.full((h, w, 3), 80, dtype=np.uint8)] * 5
    frames_to_bag(frames, tmp_path / "in", 5, rate=10.0, ground_truth=dict.fromkeys(range(5),
                                                                                    truth))
    # The node called the object 3 (label gt:1). Frame 2 is dropped, frame 3 shifted by one
    # pixel (J = 90/110, F = 1 at radius 1 in a 30x40 image), the others exact.
    node = np.where(truth == 1, 3, 0).astype(np.uint8)
    shifted = np.zeros_like(node)
    shifted[10:20, 11:21] = 3
    masks = {0: node, 1: node, 3: shifted, 4: node}
    _recorded_bag(tmp_path / "rec", tmp_path / "in", masks, delay_ns=50_000_000, rate=0.5,
                  labels={3: "gt:1"})
    result = evaluate_bag(tmp_path / "rec", tmp_path / "in", tmp_path / "rep",
                          overlay_video=True)
    assert (result.processed, result.dropped) == (4, 1)
    # Latency: 50 ms of bag time at rate 0.5 = 100 ms of wall time, on every processed frame.
    assert result.latency_ms == {"mean": 100.0, "median": 100.0, "p95": 100.0, "max": 100.0}
    obj = result.scores.objects[1]
    assert obj.frames == [1, 2, 3]
    assert obj.j == pytest.approx([1.0, 0.0, 90 / 110])  # the dropped frame scores as empty
    assert obj.f == [1.0, 0.0, 1.0]
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["dropped_frames"] == 1 and report["processed_frames"] == 4
    assert report["id_map"] == {"3": 1}
    assert report["global"]["J-Mean"] == pytest.approx((1 + 90 / 110) / 3)
    assert (tmp_path / "rep" / "videos" / "in.mp4").is_file()
    assert (tmp_path / "rep" / "plots" / "in.png").is_file()


def test_run_offline_then_eval_cli(clip: Any, tmp_path: Path, capsys: Any) -> None:
    frames, labels = clip
    from edgetam_core.io import write_label_png
    from edgetam_core.synthetic import write_frames

    write_frames(tmp_path / "frames", frames)
    for k, lab in enumerate(labels):
        write_label_png(tmp_path / "gt" / f"{k:05d}.png", lab)
    ckpt = micro_checkpoint(tmp_path / "micro.pt")
    bag, rec = tmp_path / "in", tmp_path / "off"
    assert main(["from-frames", "--input", str(tmp_path / "frames"), "--ground-truth",
                 str(tmp_path / "gt"), "--prompt-from-gt", "click", "--out", str(bag),
                 "--rate", "5"]) == 0
    out = capsys.readouterr().out
    assert "3 frames at 5 Hz, 2 prompts, 3 ground-truth masks" in out
    prompts = [m.decode() for m in read_messages(bag, [TOPICS.prompt])]
    # Clicks from the ground truth of frame 1, where the node applies them.
    for p, oid in zip(prompts, (1, 2), strict=True):
        (pt,) = p.points
        assert (pt.x, pt.y) == farthest_from_boundary(labels[1] == oid)
    assert main(["run-offline", "--bag", str(bag), "--checkpoint", str(ckpt), "--out",
                 str(rec), "--quiet"]) == 0
    masks = [m.decode() for m in read_messages(rec, [TOPICS.masks])]
    tracks = [m.decode() for m in read_messages(rec, [TOPICS.tracks])]
    assert len(masks) == len(tracks) == 3
    assert [o.label for o in tracks[0].objects] == []  # frame 0: nothing prompted yet
    assert [(o.id, o.label) for o in tracks[1].objects] == [(1, "gt:1"), (2, "gt:2")]
    # The offline runner is NodeLogic over a Tracker: the same masks as driving it by hand.
    tracker, _ = build_tracker(str(ckpt))
    logic = NodeLogic(tracker)
    expected = []
    bag_frames = [image_to_rgb(m.decode()) for m in read_messages(bag, [TOPICS.image])]
    for k, frame in enumerate(bag_frames):  # (JPEG-decoded: not the clip's own pixels)
        if k == 1:
            for p in prompts:
                logic.prompt(p.object_id, p.label, p.points, p.point_labels, p.box)
        expected.append(logic.image(frame)[0])
    for got, want in zip(masks, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(got.data).reshape(48, 64), want)
    assert main(["eval", "--bag", str(rec), "--ground-truth", str(bag), "--out",
                 str(tmp_path / "rep"), "--no-plots"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("edgetam-bag eval: J&F ") and "0 dropped" in line
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["source"] == "offline" and report["backend"] == "eager"
    assert report["ms_per_frame"] > 0 and report["id_map"] == {"1": 1, "2": 2}
    # Offline latency is the processing time of the frame: positive.
    assert report["latency_ms"]["max"] > 0
