"""J&F, latency and dropped frames of a recorded bag's masks against the input bag's truth.

The input bag (from ``from-frames``) gives the frames (its images in order: frame ``k`` is
the ``k``-th image) and the ground truth (``/ground_truth/masks``, matched by header stamp).
The recorded bag (``replay --record`` or ``run-offline``) gives the node's ``/masks`` and
``/tracks``; a mask belongs to the image with the same header stamp (the first one is used
when a looped replay recorded several).

- Object ids: a tracked object labelled ``gt:<n>`` (how ``from-frames`` labels its prompts)
  is scored as ground-truth object ``n``; other ids are taken as they are.
- A dropped frame (no mask with its stamp) counts as an empty prediction: the consumer of the
  node got nothing for it. The report gives processed and dropped counts.
- Latency of a frame: the mask's record time minus the image's time in the input bag, both
  in bag time, divided by the replay rate (``edgetam.rate`` in the recorded bag's
  custom_data) to give wall-clock milliseconds. For ``run-offline`` it is the processing time.

Frames scored, J, F and the report files are those of ``edgetam-eval`` (edgetam_core.eval).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetam_core.errors import InputError
from edgetam_core.eval.metrics import SequenceScores, score_sequence, summarize
from edgetam_core.eval.report import ReportPaths, write_overlay_video, write_report
from edgetam_ros.bag.bagio import INFO_KEY, RATE_KEY, SOURCE_KEY, bag_custom_data, read_messages
from edgetam_ros.bag.messages import COMPRESSED, IMAGE, TOPICS, Topics, parse_gt_label, stamp_ns
from edgetam_ros.conversions import compressed_to_rgb, image_to_rgb


@dataclass
class BagFrames:
    """What an input bag says about its frames."""

    stamps: list[int]  # header stamp (ns) of frame k
    times: list[int]  # bag timestamp (ns) of frame k
    truth: dict[int, np.ndarray]  # frame index -> label image
    size: tuple[int, int]


def read_input_bag(path: str | Path, topics: Topics = TOPICS) -> BagFrames:
    stamps: list[int] = []
    times: list[int] = []
    truth_by_stamp: dict[int, np.ndarray] = {}
    size = (0, 0)
    for m in read_messages(path, (topics.image, topics.compressed, topics.ground_truth)):
        msg = m.decode()
        if m.topic == topics.ground_truth:
            if msg.encoding != "mono8":
                raise InputError(f"{path}: ground truth on {m.topic} is {msg.encoding}, "
                                 "not mono8 label images")
            truth_by_stamp[stamp_ns(msg.header)] = _mono(msg)
        else:
            stamps.append(stamp_ns(msg.header))
            times.append(m.timestamp)
            if m.msgtype == IMAGE:
                size = (int(msg.height), int(msg.width))
    if not stamps:
        raise InputError(f"bag {path} has no images on {topics.image} or {topics.compressed}")
    if not truth_by_stamp:
        raise InputError(f"bag {path} has no ground truth on {topics.ground_truth}")
    index = {s: k for k, s in enumerate(stamps)}
    truth = {index[s]: lab for s, lab in truth_by_stamp.items() if s in index}
    if size == (0, 0):
        size = next(iter(truth.values())).shape[:2]
    return BagFrames(stamps, times, truth, size)


def _mono(msg: Any) -> np.ndarray:
    data = np.asarray(msg.data, dtype=np.uint8)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    return data.reshape(h, step)[:, :w].copy()


def input_frames(path: str | Path, topics: Topics = TOPICS) -> list[np.ndarray]:
    """The input bag's frames as RGB (for overlay videos)."""
    out = []
    for m in read_messages(path, (topics.image, topics.compressed)):
        msg = m.decode()
        out.append(compressed_to_rgb(msg) if m.msgtype == COMPRESSED else image_to_rgb(msg))
    return out


@dataclass
class Recorded:
    masks: dict[int, np.ndarray]  # header stamp -> label image (node ids)
    times: dict[int, int]  # header stamp -> record time (bag ns)
    id_map: dict[int, int]  # node id -> ground-truth id


def read_recorded(path: str | Path, topics: Topics = TOPICS) -> Recorded:
    masks: dict[int, np.ndarray] = {}
    times: dict[int, int] = {}
    id_map: dict[int, int] = {}
    for m in read_messages(path, (topics.masks, topics.tracks)):
        msg = m.decode()
        s = stamp_ns(msg.header)
        if m.topic == topics.masks:
            if s not in masks:
                masks[s] = _mono(msg)
                times[s] = m.timestamp
        else:
            for obj in msg.objects:
                gt = parse_gt_label(str(obj.label))
                if gt is not None:
                    id_map.setdefault(int(obj.id), gt)
    return Recorded(masks, times, id_map)


def remap_ids(labels: np.ndarray, id_map: dict[int, int]) -> np.ndarray:
    """Label image with node ids replaced by ground-truth ids (others unchanged)."""
    if not id_map:
        return labels
    lut = np.arange(256, dtype=np.uint8)
    for node_id, gt in id_map.items():
        lut[node_id] = gt
    return lut[labels]


@dataclass
class BagEvaluation:
    paths: ReportPaths
    scores: SequenceScores
    processed: int
    dropped: int
    latency_ms: dict[str, float | None]
    line: str


def _latency_stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "median": None, "p95": None, "max": None}
    arr = np.asarray(values)
    return {
        "mean": round(float(arr.mean()), 3),
        "median": round(float(np.median(arr)), 3),
        "p95": round(float(np.percentile(arr, 95)), 3),
        "max": round(float(arr.max()), 3),
    }


def evaluate_bag(
    recorded: str | Path,
    ground_truth: str | Path,
    out_dir: str | Path,
    overlay_video: bool = False,
    skip_first_last: bool = True,
    plots: bool = True,
    topics: Topics = TOPICS,
) -> BagEvaluation:
    """Score ``recorded``'s masks against ``ground_truth`` (module docstring); write the report."""
    frames = read_input_bag(ground_truth, topics)
    rec = read_recorded(recorded, topics)
    custom = bag_custom_data(recorded)
    try:
        rate = float(custom.get(RATE_KEY, "1") or 1.0)
    except ValueError:
        rate = 1.0
    info: dict[str, Any] = {}
    if custom.get(INFO_KEY):
        try:
            info = dict(json.loads(custom[INFO_KEY]))
        except (ValueError, TypeError):
            info = {}
    h, w = frames.size
    predictions: dict[int, np.ndarray] = {}
    latencies: list[float] = []
    dropped = 0
    for k, s in enumerate(frames.stamps):
        if s in rec.masks:
            lab = rec.masks[s]
            if lab.shape != (h, w):
                raise InputError(f"{recorded}: mask of frame {k} is {lab.shape[1]}x"
                                 f"{lab.shape[0]}, the frames are {w}x{h}")
            predictions[k] = remap_ids(lab, rec.id_map)
            latencies.append((rec.times[s] - frames.times[k]) / 1e6 / rate)
        else:
            predictions[k] = np.zeros((h, w), dtype=np.uint8)
            dropped += 1
    processed = len(frames.stamps) - dropped
    if processed == 0:
        raise InputError(f"{recorded} has no masks for any image of {ground_truth} "
                         f"(topic {topics.masks})")
    name = Path(ground_truth).name
    name = name[: -len(".bag")] if name.endswith(".bag") and len(name) > 4 else name
    scores = score_sequence(name, frames.truth, predictions, skip_first_last=skip_first_last)
    latency = _latency_stats(latencies)
    settings: dict[str, Any] = {
        "tool": "edgetam-bag eval",
        "recorded": str(recorded),
        "ground_truth": str(ground_truth),
        "source": custom.get(SOURCE_KEY, "unknown"),
        "replay_rate": rate,
        "scored_frames": "annotated frames except the first and the last"
        if skip_first_last else "all annotated frames",
        "images": len(frames.stamps),
        "processed_frames": processed,
        "dropped_frames": dropped,
        "latency_ms": latency,
        "id_map": {str(k): v for k, v in sorted(rec.id_map.items())},
    }
    settings.update(info)
    out = Path(out_dir)
    paths = write_report(out, [scores], settings, plots=plots)
    if overlay_video:
        paths.videos.append(write_overlay_video(
            out / "videos" / f"{name}.mp4", input_frames(ground_truth, topics), predictions,
            frames.truth,
        ))
    summary = summarize([scores])
    lat = f"{latency['median']:.0f} ms median latency" if latency["median"] is not None else ""
    where = f"report in {paths.json}"
    if paths.plots:
        where += f", plot in {paths.plots[0]}"
    if paths.videos:
        where += f", video in {paths.videos[0]}"
    line = (
        f"J&F {summary.jf_mean:.3f} (J {summary.j.mean:.3f}, F {summary.f.mean:.3f}) on "
        f"{len(frames.stamps)} frames, {dropped} dropped, {lat}; {where}"
    )
    return BagEvaluation(paths, scores, processed, dropped, latency, line)
