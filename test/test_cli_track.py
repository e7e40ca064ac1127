"""edgetam-track and edgetam-demo: prompt parsing, error paths, output format, end to end.

Parsing, validation, error-path and output-writing tests need no model (a stub tracker stands
in); the end-to-end tests use a tiny random-weight checkpoint built in a temporary folder.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgetam_core.cli import track
from edgetam_core.cli.track import (
    check_prompts,
    parse_prompts,
    parse_prompts_file,
    track_video,
)
from edgetam_core.errors import InputError, PromptError
from edgetam_core.io import davis_palette, read_label_png, write_label_png
from edgetam_core.synthetic import SampleClip, make_sample_clip, write_frames
from edgetam_core.types import FrameResult, ObjectResult, Prompt

H, W = 96, 128


# Fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip() -> SampleClip:
    return make_sample_clip(num_frames=3, height=H, width=W, seed=1)


@pytest.fixture()
def frames_dir(tmp_path: Path, clip: SampleClip) -> Path:
    write_frames(tmp_path / "frames", clip.frames, ext="png")
    return tmp_path / "frames"


def _write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture()
def prompts_file(tmp_path: Path, clip: SampleClip) -> Path:
    data = clip.prompts_json("click")
    data["prompts"][1] = clip.prompts_json("box")["prompts"][1]  # object 2 by box
    return _write_json(tmp_path / "prompts.json", data)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgetam_core.checkpoint import build_default_model, save_checkpoint
    from edgetam_core.config import tiny_config

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(build_default_model(config=tiny_config()), path)
    return path


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# Prompt parsing ---------------------------------------------------------------------------------
def test_parse_prompts_groups_by_frame() -> None:
    data = {
        "prompts": [
            {"frame": 0, "object_id": 1, "points": [[10, 20], [30, 40]], "labels": [1, 0]},
            {"frame": 0, "object_id": 2, "box": [5, 6, 50, 60]},
            {"frame": 4, "object_id": 1, "points": [[1.5, 2.5]]},
            {"object_id": 3, "points": [[7, 8]], "box": [1, 2, 30, 40]},
        ]
    }
    by_frame = parse_prompts(data)
    assert sorted(by_frame) == [0, 4]
    first = {p.object_id: p for p in by_frame[0]}
    assert sorted(first) == [1, 2, 3]
    np.testing.assert_array_equal(first[1].points, [[10, 20], [30, 40]])
    np.testing.assert_array_equal(first[1].labels, [1, 0])
    assert first[2].box == (5.0, 6.0, 50.0, 60.0) and first[2].points is None
    assert first[3].box == (1.0, 2.0, 30.0, 40.0) and first[3].points is not None
    np.testing.assert_array_equal(by_frame[4][0].labels, [1])  # labels default to positive


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "missing top-level field 'prompts'"),
        ({"prompts": [], "x": 1}, "unknown top-level field 'x'"),
        ({"prompts": {}}, "must be a list"),
        ({"prompts": []}, "is empty"),
        ({"prompts": [5]}, r"prompts\[0\]: expected an object"),
        ({"prompts": [{"points": [[1, 2]]}]}, r"prompts\[0\]: missing field 'object_id'"),
        ({"prompts": [{"object_id": 0, "points": [[1, 2]]}]}, r"prompts\[0\]\.object_id"),
        ({"prompts": [{"object_id": 256, "points": [[1, 2]]}]}, r"object_id: expected .*1\.\.255"),
        ({"prompts": [{"object_id": True, "points": [[1, 2]]}]}, r"\.object_id"),
        ({"prompts": [{"object_id": 1, "frame": -1, "points": [[1, 2]]}]}, r"\]\.frame"),
        ({"prompts": [{"object_id": 1, "frame": 1.5, "points": [[1, 2]]}]}, r"\]\.frame"),
        ({"prompts": [{"object_id": 1}]}, "needs 'points', 'box' or 'mask'"),
        ({"prompts": [{"object_id": 1, "point": [[1, 2]]}]}, "unknown field 'point'"),
        ({"prompts": [{"object_id": 1, "points": [1, 2]}]}, r"\.points: expected"),
        ({"prompts": [{"object_id": 1, "points": []}]}, r"\.points: expected"),
        ({"prompts": [{"object_id": 1, "points": [["a", 2]]}]}, r"\.points: expected"),
        ({"prompts": [{"object_id": 1, "points": [[1, 2]], "labels": [2]}]}, r"\.labels"),
        ({"prompts": [{"object_id": 1, "points": [[1, 2]], "labels": [1, 1]}]}, "2 labels for 1"),
        ({"prompts": [{"object_id": 1, "labels": [1], "box": [0, 0, 5, 5]}]}, "without points"),
        ({"prompts": [{"object_id": 1, "box": [1, 2, 3]}]}, r"\.box: expected four"),
        ({"prompts": [{"object_id": 1, "box": [5, 5, 1, 9]}]}, r"\.box: expected x1 > x0"),
        ({"prompts": [{"object_id": 1, "mask": 3}]}, r"\.mask: expected the path"),
        ({"prompts": [{"object_id": 1, "mask": "none.png"}]}, r"\.mask: file not found"),
        (
            {"prompts": [{"object_id": 1, "mask": "m.png", "box": [0, 0, 2, 2]}]},
            "cannot be combined",
        ),
        (
            {
                "prompts": [
                    {"object_id": 1, "points": [[1, 2]]},
                    {"object_id": 1, "frame": 0, "box": [0, 0, 4, 4]},
                ]
            },
            r"prompts\[1\]: a second prompt for object 1 on frame 0",
        ),
    ],
)
def test_parse_prompts_schema_errors(data: object, message: str) -> None:
    with pytest.raises(PromptError, match=message):
        parse_prompts(data)


def test_parse_prompts_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="prompts file not found"):
        parse_prompts_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"prompts": [\n  {"object_id": 1,}\n]}')
    with pytest.raises(InputError, match="not valid JSON: .* line 2, column"):
        parse_prompts_file(bad)


def test_mask_prompt_from_png(tmp_path: Path) -> None:
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[10:20, 10:30] = 1
    labels[40:60, 50:70] = 2
    write_label_png(tmp_path / "masks" / "m.png", labels)
    binary = np.zeros((H, W), dtype=np.uint8)
    binary[5:9, 5:9] = 255
    Image.fromarray(binary).save(tmp_path / "masks" / "binary.png")
    data = {
        "prompts": [
            {"object_id": 2, "frame": 1, "mask": "masks/m.png"},  # label 2 only
            {"object_id": 5, "frame": 1, "mask": "masks/binary.png"},  # no 5: all non-zero
        ]
    }
    by_frame = parse_prompts_file(_write_json(tmp_path / "p.json", data))
    got = {p.object_id: p.mask for p in by_frame[1]}
    assert got[2] is not None and got[5] is not None
    np.testing.assert_array_equal(got[2], labels == 2)
    np.testing.assert_array_equal(got[5], binary > 0)
    check_prompts(by_frame, num_frames=2, frame_size=(H, W))
    with pytest.raises(PromptError, match="mask prompt is"):
        check_prompts(by_frame, num_frames=2, frame_size=(H + 1, W))


def test_check_prompts_against_the_input() -> None:
    ok = {0: [Prompt.from_clicks(1, [[W - 1, H - 1]])], 2: [Prompt.from_clicks(2, [[0, 0]])]}
    check_prompts(ok, num_frames=3, frame_size=(H, W), max_objects=2)
    with pytest.raises(PromptError, match="on frame 2, but the input has 2 frames"):
        check_prompts(ok, num_frames=2, frame_size=(H, W))
    with pytest.raises(PromptError, match="2 objects but --max-objects is 1"):
        check_prompts(ok, num_frames=3, frame_size=(H, W), max_objects=1)
    outside = {1: [Prompt.from_clicks(3, [[W + 5, 10]])]}
    with pytest.raises(PromptError, match=r"object 3 on frame 1: point \(133, 10\) is outside"):
        check_prompts(outside, num_frames=3, frame_size=(H, W))
    box = {0: [Prompt.from_clicks(1, None, box=[0, 0, W + 1, 10])]}
    with pytest.raises(PromptError, match="outside the 128x96 image"):
        check_prompts(box, num_frames=1, frame_size=(H, W))


# track_video with a stub tracker --------------------------------------------------------------
class StubTracker:
    """Stands in for Tracker: each object is a square that starts where it was prompted."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[int]]] = []
        self.starts: dict[int, tuple[int, int]] = {}
        self.index = -1

    def step(self, frame: np.ndarray, prompts: Sequence[Prompt] = ()) -> FrameResult:
        self.index += 1
        self.calls.append((self.index, [p.object_id for p in prompts]))
        for p in prompts:
            assert p.points is not None
            self.starts[p.object_id] = (int(p.points[0][0]), int(p.points[0][1]))
        h, w = frame.shape[:2]
        result = FrameResult(self.index, h, w)
        for oid, (x, y) in self.starts.items():
            logits = np.full((h, w), -5.0, dtype=np.float32)
            logits[max(0, y - 4) : y + 4, max(0, x - 4 + self.index) : x + 4 + self.index] = oid
            result.objects[oid] = ObjectResult(
                oid, logits, np.zeros((8, 8), np.float32), iou=0.9, object_score=3.0
            )
        return result


def test_track_video_writes_davis_pngs_and_logits(tmp_path: Path) -> None:
    frames = [np.zeros((H, W, 3), dtype=np.uint8) for _ in range(4)]
    prompts = {0: [Prompt.from_clicks(1, [[20, 20]])], 2: [Prompt.from_clicks(2, [[80, 50]])]}
    tracker = StubTracker()
    summary = track_video(tracker, frames, prompts, tmp_path / "out", save_logits=True)  # type: ignore[arg-type]
    assert tracker.calls == [(0, [1]), (1, []), (2, [2]), (3, [])]
    assert summary.frames == 4 and summary.object_ids == [1, 2]
    assert "tracked 4 frames, 2 objects (1, 2)" in summary.line()
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert pngs == ["00000.png", "00001.png", "00002.png", "00003.png"]
    with Image.open(tmp_path / "out" / "00003.png") as img:
        assert img.mode == "P" and bytes(img.getpalette()[:768]) == davis_palette()  # type: ignore[index]
    last = read_label_png(tmp_path / "out" / "00003.png")
    assert last[20, 23] == 1 and last[50, 83] == 2 and last[0, 0] == 0
    assert read_label_png(tmp_path / "out" / "00000.png").max() == 1
    with np.load(tmp_path / "out" / "logits.npz") as npz:
        names = sorted(npz.files)
        assert names[:3] == ["f00000_o1", "f00001_o1", "f00002_o1"]
        assert "f00002_o2" in names and "f00001_o2" not in names and len(names) == 6
        arr = npz["f00003_o2"]
        assert arr.dtype == np.float32 and arr.shape == (H, W)
        assert arr[50, 83] == 2.0


def test_track_video_validates_prompts_per_frame(tmp_path: Path) -> None:
    frames = [np.zeros((H, W, 3), dtype=np.uint8)]
    with pytest.raises(PromptError, match="outside"):
        track_video(StubTracker(), frames, {0: [Prompt.from_clicks(1, [[999, 1]])]}, tmp_path)  # type: ignore[arg-type]
    with pytest.raises(PromptError, match="only 1 frames"):
        track_video(StubTracker(), frames, {5: [Prompt.from_clicks(1, [[1, 1]])]}, tmp_path)  # type: ignore[arg-type]


# main(): error paths (no model is loaded for any of these) -----------------------------------
def _args(ckpt: Path, source: Path, prompts: Path, out: Path, *extra: str) -> list[str]:
    """Command-line arguments; ``--quiet`` (no progress bar, no summary) unless extra says
    ``--verbose``."""
    verbose = "--verbose" in extra
    extra = tuple(e for e in extra if e != "--verbose")
    return [
        "--checkpoint",
        str(ckpt),
        "--input",
        str(source),
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        *([] if verbose else ["--quiet"]),
        *extra,
    ]


def test_main_missing_checkpoint(
    tmp_path: Path, frames_dir: Path, prompts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = track.main(_args(tmp_path / "no.pt", frames_dir, prompts_file, tmp_path / "o"))
    assert rc == 2
    assert _error_line(capsys) == f"edgetam-track: error: checkpoint not found: {tmp_path}/no.pt"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-input", "input not found"),
        ("empty-input", "no .jpg/.jpeg/.png images in folder"),
        ("missing-prompts", "prompts file not found"),
        ("bad-json", "is not valid JSON"),
        ("bad-schema", r"prompts\[0\]\.box: expected four numbers"),
        ("outside", r"prompt for object 1 on frame 0: point \(500, 10\) is outside the 128x96"),
        ("late-frame", "on frame 7, but the input has 3 frames"),
        ("too-many", "3 objects but --max-objects is 2"),
        ("unloadable", "tiny.pt"),
    ],
)
def test_main_input_errors_exit_2_with_one_line(
    case: str,
    message: str,
    tmp_path: Path,
    frames_dir: Path,
    prompts_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ckpt = tmp_path / "tiny.pt"
    ckpt.write_bytes(b"not a checkpoint")  # unloadable: proves checks run before loading
    source, prompts, extra = frames_dir, prompts_file, ["--max-objects", "2"]
    if case == "missing-input":
        source = tmp_path / "nothing"
    elif case == "empty-input":
        source = tmp_path / "empty"
        source.mkdir()
    elif case == "missing-prompts":
        prompts = tmp_path / "nothing.json"
    elif case == "bad-json":
        prompts.write_text("{")
    elif case == "bad-schema":
        _write_json(prompts, {"prompts": [{"object_id": 1, "box": [1, 2]}]})
    elif case == "outside":
        _write_json(prompts, {"prompts": [{"object_id": 1, "points": [[500, 10]]}]})
    elif case == "late-frame":
        _write_json(prompts, {"prompts": [{"frame": 7, "object_id": 1, "points": [[5, 5]]}]})
    elif case == "too-many":
        entries = [{"object_id": i, "points": [[5, 5]]} for i in (1, 2, 3)]
        _write_json(prompts, {"prompts": entries})
    rc = track.main(_args(ckpt, source, prompts, tmp_path / "out", *extra))
    assert rc == 2
    line = _error_line(capsys)
    assert line.startswith("edgetam-track: error: ")
    assert re.search(message, line), line
    if case != "unloadable":
        assert not (tmp_path / "out").exists()  # nothing ran


def test_main_unexpected_error_exit_1(
    tmp_path: Path,
    frames_dir: Path,
    prompts_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(args: Any) -> None:
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(track, "run", boom)
    monkeypatch.delenv("EDGETAM_DEBUG", raising=False)
    rc = track.main(_args(tmp_path / "x.pt", frames_dir, prompts_file, tmp_path / "o"))
    assert rc == 1
    assert _error_line(capsys) == "edgetam-track: unexpected error: RuntimeError: something broke"


def test_console_scripts_are_installed() -> None:
    # Every installed copy's metadata is looked at: the colcon build of the ROS package also
    # installs an `edgetam_ros` egg-info (without console scripts) that may come first on
    # sys.path, and importlib.metadata.entry_points() keeps only the first of a name.
    scripts = {
        ep.name: ep.value
        for dist in distributions()
        if (dist.metadata["Name"] or "").lower().replace("_", "-") == "edgetam-ros"
        for ep in dist.entry_points
        if ep.group == "console_scripts"
    }
    assert scripts.get("edgetam-track") == "edgetam_core.cli.track:main"
    assert scripts.get("edgetam-demo") == "edgetam_core.cli.demo:main"


def test_subprocess_error_is_one_line(tmp_path: Path) -> None:
    """The real process: exit status 2 and a single stderr line, no traceback."""
    cmd = [sys.executable, "-m", "edgetam_core.cli.track"]
    cmd += _args(tmp_path / "a.pt", tmp_path / "in", tmp_path / "p.json", tmp_path / "o")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"edgetam-track: error: checkpoint not found: {tmp_path}/a.pt"
    ]


# End to end with a tiny random-weight model ---------------------------------------------------
def test_end_to_end_tiny_model(
    tmp_path: Path,
    frames_dir: Path,
    prompts_file: Path,
    tiny_checkpoint: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    args = _args(tiny_checkpoint, frames_dir, prompts_file, out, "--save-logits", "--verbose")
    rc = track.main(args)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "tracked 3 frames, 2 objects (1, 2)" in captured.out
    assert "ms/frame" in captured.out
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["00000.png", "00001.png", "00002.png"]
    with np.load(out / "logits.npz") as npz:
        assert sorted(npz.files) == [f"f{f:05d}_o{o}" for f in range(3) for o in (1, 2)]
        for f in range(3):
            labels = read_label_png(out / f"{f:05d}.png")
            assert labels.shape == (H, W)
            assert set(np.unique(labels).tolist()) <= {0, 1, 2}
            l1, l2 = npz[f"f{f:05d}_o1"], npz[f"f{f:05d}_o2"]
            assert l1.dtype == np.float32 and l1.shape == (H, W)
            # The label image is the per-pixel winner among the masks (0 where none).
            expected = np.where(
                (l1 > 0) | (l2 > 0), np.where((l2 > 0) & ((l1 <= 0) | (l2 > l1)), 2, 1), 0
            )
            np.testing.assert_array_equal(labels, expected)


def test_end_to_end_video_input(
    tmp_path: Path, clip: SampleClip, prompts_file: Path, tiny_checkpoint: Path
) -> None:
    import cv2
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    for f in clip.frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / "out"
    assert track.main(_args(tiny_checkpoint, video, prompts_file, out)) == 0
    assert len(list(out.glob("*.png"))) == 3


def test_demo_end_to_end(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgetam_core.cli import demo

    out = tmp_path / "demo"
    rc = demo.main(["--frames", "2", "--out", str(out), "--checkpoint", str(tiny_checkpoint)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and "overlay.png" in lines[0] and "mean IoU" in lines[0]
    assert len(list((out / "frames").glob("*.jpg"))) == 2
    assert len(list((out / "masks").glob("*.png"))) == 2
    with Image.open(out / "overlay.png") as img:
        assert img.mode == "RGB" and img.width > img.height
