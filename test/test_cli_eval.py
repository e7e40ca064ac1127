"""``edgetam-eval``: scoring saved results (values worked out here) and running the tracker
(tiny random-weight model: the plumbing and the report, not the scores)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import cv2
import pytest

from edgetam_core.cli.eval import main
from edgetam_core.io import read_label_png, write_label_png
from vos_data import clip_arrays, micro_checkpoint, write_davis


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    """One intra-op thread: on a busy 2-core machine two threads mostly wait for each other
    (10x slower here)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def micro_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return micro_checkpoint(tmp_path_factory.mktemp("ckpt") / "micro.pt")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """DAVIS folder: sequence a (4 frames, objects 1 and 2), sequence b (4 frames, object 2
    appears on frame 2)."""
    root = tmp_path_factory.mktemp("davis")
    seqs = {"a": clip_arrays(frames=4, seed=0), "b": clip_arrays(frames=4, seed=1, late=2)}
    write_davis(root, seqs)
    return root, seqs


@pytest.fixture(scope="module")
def short_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three frames per sequence (the tracker is slow on CPU): a (objects 1 and 2 from frame
    0), b (object 2 appears on frame 1)."""
    root = tmp_path_factory.mktemp("davis3")
    write_davis(root, {"a": clip_arrays(frames=3, seed=0),
                       "b": clip_arrays(frames=3, seed=1, late=1)})
    return root


def _rows(path: Path) -> list[list[str]]:
    with path.open() as fh:
        return list(csv.reader(fh))


def test_scoring_saved_results(dataset: tuple[Path, dict], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    root, seqs = dataset
    results = tmp_path / "results"
    for name, (_, labels) in seqs.items():
        for k, lab in enumerate(labels):
            pred = lab.copy()
            if name == "b" and k == 2:
                pred[pred == 2] = 0  # object 2 missed on the frame it appears
            write_label_png(results / name / f"{k:05d}.png", pred)
    (tmp_path / "unseen.txt").write_text("b/2\n")
    out = tmp_path / "report"
    code = main(["--dataset", str(root), "--predictions", str(results), "--out", str(out),
                 "--unseen", str(tmp_path / "unseen.txt"), "--quiet"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    # Scored frames 1 and 2 of each sequence. a_1, a_2, b_1 are perfect (J = F = 1 on both).
    # b_2: frame 1 absent in truth and prediction (1), frame 2 missed (0) -> mean 0.5,
    # recall 0.5, decay (2 frames: first minus last) 1.
    g = report["global"]
    assert g["J-Mean"] == g["F-Mean"] == pytest.approx((3 + 0.5) / 4)
    assert g["J&F-Mean"] == pytest.approx(0.875)
    assert g["J-Recall"] == pytest.approx((3 + 0.5) / 4)
    assert g["J-Decay"] == pytest.approx(1 / 4)
    # G: seen = a_1, a_2, b_1 (J = F = 1), unseen = b_2 (0.5) -> (1 + 1 + 0.5 + 0.5) / 4.
    assert g["G"] == pytest.approx(0.75)
    b = next(s for s in report["sequences"] if s["name"] == "b")
    b2 = next(o for o in b["objects"] if o["id"] == 2)
    assert b2["frames"] == [1, 2] and b2["J_per_frame"] == [1.0, 0.0]
    assert b2["J"] == {"mean": 0.5, "recall": 0.5, "decay": 1.0}
    assert report["protocol"] is None and report["predictions"] == str(results)
    header, values = _rows(out / "global_results.csv")
    assert header[:7] == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall",
                          "F-Decay"]
    assert float(values[0]) == pytest.approx(0.875)
    seq_rows = _rows(out / "per-sequence_results.csv")
    assert seq_rows[0] == ["Sequence", "J-Mean", "F-Mean"]
    assert [r[0] for r in seq_rows[1:]] == ["a_1", "a_2", "b_1", "b_2"]
    assert float(seq_rows[4][1]) == pytest.approx(0.5)
    assert len(_rows(out / "per-frame_results.csv")) == 1 + 4 * 2
    for name in ("a", "b"):
        plot = cv2.imread(str(out / "plots" / f"{name}.png"))
        assert plot is not None and plot.shape[0] > 100

    # A missing result frame is one readable line and exit status 2.
    (results / "b" / "00001.png").unlink()
    code = main(["--dataset", str(root), "--predictions", str(results), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("edgetam-eval: error:") and "no prediction for b frame 00001" in err
    assert len(err.splitlines()) == 1


def test_needs_a_checkpoint_or_predictions(dataset: tuple[Path, dict], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = dataset
    assert main(["--dataset", str(root), "--out", str(tmp_path)]) == 2
    assert "give --checkpoint" in capsys.readouterr().err
    assert main(["--dataset", str(root), "--out", str(tmp_path), "--checkpoint",
                 str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_semi_supervised_run(short_dataset: Path, tmp_path: Path, micro_ckpt: Path
                             ) -> None:
    root = short_dataset
    out = tmp_path / "semi"
    code = main(["--dataset", str(root), "--checkpoint", str(micro_ckpt),
                 "--protocol", "semi", "--out", str(out), "--overlay-video", "--quiet"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "semi" and report["backend"] == "eager"
    assert report["device"] == "cpu" and report["frames"] == 6
    assert report["ms_per_frame"] > 0
    assert [s["name"] for s in report["sequences"]] == ["a", "b"]
    for s in report["sequences"]:
        assert [o["id"] for o in s["objects"]] == [1, 2]
        assert s["frames"] == 3 and s["ms_per_frame"] > 0
        for o in s["objects"]:
            assert o["frames"] == [1]
            assert all(0.0 <= v <= 1.0 for v in o["J_per_frame"] + o["F_per_frame"])
        preds = sorted((out / "predictions" / s["name"]).glob("*.png"))
        assert [p.name for p in preds] == [f"{k:05d}.png" for k in range(3)]
        assert read_label_png(preds[0]).shape == (48, 64)
        video = cv2.VideoCapture(str(out / "videos" / f"{s['name']}.mp4"))
        count, width = 0, 0
        while True:
            ok, img = video.read()
            if not ok:
                break
            count, width = count + 1, img.shape[1]
        video.release()
        assert count == 3 and width == 2 * 64  # prediction | ground truth
        assert (out / "plots" / f"{s['name']}.png").is_file()
    # The saved predictions, scored again, give the same numbers.
    again = tmp_path / "again"
    assert main(["--dataset", str(root), "--predictions", str(out / "predictions"),
                 "--out", str(again), "--quiet"]) == 0
    rescored = json.loads((again / "report.json").read_text())
    assert rescored["global"] == report["global"]


def test_clicks_with_a_correction(dataset: tuple[Path, dict], tmp_path: Path,
                                  micro_ckpt: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = dataset
    out = tmp_path / "clicks"
    # 2 simulation steps on frame 0, then two passes over 3 frames.
    code = main(["--dataset", str(root), "--sequences", "a", "--max-frames", "3",
                 "--checkpoint", str(micro_ckpt), "--protocol", "clicks3",
                 "--corrections", "1", "--out", str(out), "--no-plots"])
    line = capsys.readouterr().out.strip()
    assert code == 0
    assert line.startswith("edgetam-eval: J&F ") and str(out / "report.json") in line
    assert "ms/frame (eager on cpu)" in line
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "clicks3" and report["corrections"] == 1
    (seq,) = report["sequences"]
    assert seq["frames"] == 3
    # Three frames: only frame 1 is scored, so that is where the correction goes.
    (corr,) = seq["corrections"]
    assert corr["frame"] == 1 and corr["object"] in (1, 2)
    assert not (out / "plots").exists()
    assert len(list((out / "predictions" / "a").glob("*.png"))) == 3
