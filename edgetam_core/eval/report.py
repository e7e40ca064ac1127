"""Evaluation reports: JSON, CSV (the DAVIS toolkit's two tables plus per-frame values), a plot
per sequence (J and F over frames, one line per object) and optional overlay videos.

Files written to the output folder:

- ``report.json``: everything (settings, timing, global and per-object statistics, per-frame
  J and F); NaN (an object with no scored frame) is written as ``null``.
- ``global_results.csv``: ``J&F-Mean, J-Mean, J-Recall, J-Decay, F-Mean, F-Recall, F-Decay``
  (the DAVIS toolkit's columns), plus ``G`` and its four terms when seen/unseen is given.
- ``per-sequence_results.csv``: ``Sequence, J-Mean, F-Mean`` with one row per object named
  ``<sequence>_<object id>``, as the DAVIS toolkit writes it.
- ``per-frame_results.csv``: ``Sequence, Object, Frame, J, F``.
- ``plots/<sequence>.png``; with overlay videos ``videos/<sequence>.mp4`` (mp4v): the frame with
  the predicted masks, beside it the ground truth where the frame is annotated.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetam_core.eval.metrics import GScore, SequenceScores, Summary, summarize
from edgetam_core.io import overlay_labels, palette_array


def _num(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    return round(float(value), 6)


def global_table(summary: Summary, g: GScore | None = None) -> dict[str, float | None]:
    row = {
        "J&F-Mean": _num(summary.jf_mean),
        "J-Mean": _num(summary.j.mean),
        "J-Recall": _num(summary.j.recall),
        "J-Decay": _num(summary.j.decay),
        "F-Mean": _num(summary.f.mean),
        "F-Recall": _num(summary.f.recall),
        "F-Decay": _num(summary.f.decay),
    }
    if g is not None:
        row.update(
            {
                "G": _num(g.g),
                "J-seen": _num(g.j_seen),
                "F-seen": _num(g.f_seen),
                "J-unseen": _num(g.j_unseen),
                "F-unseen": _num(g.f_unseen),
            }
        )
    return row


def sequence_entry(scores: SequenceScores, extra: Mapping[str, Any] | None = None) -> dict:
    objects = []
    for oid, o in sorted(scores.objects.items()):
        objects.append(
            {
                "id": oid,
                "J&F-Mean": _num(o.jf_mean),
                "J": {k: _num(v) for k, v in o.j_stats.as_dict().items()},
                "F": {k: _num(v) for k, v in o.f_stats.as_dict().items()},
                "frames": list(o.frames),
                "J_per_frame": [_num(v) for v in o.j],
                "F_per_frame": [_num(v) for v in o.f],
            }
        )
    entry: dict[str, Any] = {"name": scores.name, "J&F-Mean": _num(scores.jf_mean)}
    entry.update(extra or {})
    entry["extra_ids"] = list(scores.extra_ids)
    entry["objects"] = objects
    return entry


@dataclass
class ReportPaths:
    out_dir: Path
    json: Path
    global_csv: Path
    sequence_csv: Path
    frame_csv: Path
    plots: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)


def build_report(
    scores: list[SequenceScores],
    settings: Mapping[str, Any],
    per_sequence: Mapping[str, Mapping[str, Any]] | None = None,
    g: GScore | None = None,
) -> dict[str, Any]:
    """The report as a JSON-ready dict: ``settings`` (protocol, checkpoint, backend, device,
    ms/frame...), ``global`` (the DAVIS table, with G when given) and ``sequences``."""
    summary = summarize(scores)
    report: dict[str, Any] = dict(settings)
    report["global"] = global_table(summary, g)
    report["objects"] = summary.objects
    per_sequence = per_sequence or {}
    report["sequences"] = [sequence_entry(s, per_sequence.get(s.name)) for s in scores]
    return report


def write_tables(out: Path, report: Mapping[str, Any], scores: list[SequenceScores]) -> ReportPaths:
    out.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(
        out,
        out / "report.json",
        out / "global_results.csv",
        out / "per-sequence_results.csv",
        out / "per-frame_results.csv",
    )
    paths.json.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    row = report["global"]
    with paths.global_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(row))
        w.writerow(["" if v is None else f"{v:.6f}" for v in row.values()])
    with paths.sequence_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Sequence", "J-Mean", "F-Mean"])
        for s in scores:
            for oid, o in sorted(s.objects.items()):
                j, f = _num(o.j_stats.mean), _num(o.f_stats.mean)
                w.writerow(
                    [
                        f"{s.name}_{oid}",
                        "" if j is None else f"{j:.6f}",
                        "" if f is None else f"{f:.6f}",
                    ]
                )
    with paths.frame_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Sequence", "Object", "Frame", "J", "F"])
        for s in scores:
            for oid, o in sorted(s.objects.items()):
                for k, jv, fv in zip(o.frames, o.j, o.f, strict=True):
                    w.writerow([s.name, oid, k, f"{jv:.6f}", f"{fv:.6f}"])
    return paths


def plot_sequence(scores: SequenceScores, path: Path) -> Path:
    """J (top) and F (bottom) over the scored frames, one line per object (DAVIS colours)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 5), dpi=100)
    axes = fig.subplots(2, 1, sharex=True)
    palette = palette_array().astype(np.float64) / 255.0
    for ax, name in zip(axes, ("J", "F"), strict=True):
        for oid, o in sorted(scores.objects.items()):
            values = o.j if name == "J" else o.f
            colour = tuple(palette[oid % 256])
            ax.plot(o.frames, values, marker="o", markersize=3, color=colour, label=f"object {oid}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
    axes[0].set_title(f"{scores.name}: J&F-Mean {_fmt(scores.jf_mean)}")
    axes[1].set_xlabel("frame")
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    if scores.objects:
        axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.subplots_adjust(right=0.82)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def write_overlay_video(
    path: Path,
    frames: Iterable[np.ndarray],
    predictions: Mapping[int, np.ndarray],
    truth: Mapping[int, np.ndarray] | None = None,
    fps: float = 10.0,
) -> Path:
    """An mp4 (mp4v) of the frames with the predicted masks; with ``truth``, the ground truth
    beside them (the plain frame where a frame is not annotated)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer: Any = None
    try:
        for k, frame in enumerate(frames):
            pred = predictions.get(k)
            left = frame if pred is None else overlay_labels(frame, pred)
            tile = left
            if truth is not None:
                gt = truth.get(k)
                right = frame if gt is None else overlay_labels(frame, gt)
                tile = np.concatenate([left, right], axis=1)
            if writer is None:
                height, width = tile.shape[:2]
                writer = cv2.VideoWriter(
                    str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height)
                )
                if not writer.isOpened():
                    raise OSError(f"OpenCV cannot write an mp4v video to {path}")
            writer.write(cv2.cvtColor(np.ascontiguousarray(tile), cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    return path


def write_report(
    out_dir: str | Path,
    scores: list[SequenceScores],
    settings: Mapping[str, Any],
    per_sequence: Mapping[str, Mapping[str, Any]] | None = None,
    g: GScore | None = None,
    plots: bool = True,
) -> ReportPaths:
    """Write ``report.json``, the CSV tables and (``plots``) one plot per sequence."""
    out = Path(out_dir)
    report = build_report(scores, settings, per_sequence, g)
    paths = write_tables(out, report, scores)
    if plots:
        paths.plots = [plot_sequence(s, out / "plots" / f"{s.name}.png") for s in scores]
    return paths
