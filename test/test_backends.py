"""Backends: TorchScript equals eager over a multi-object clip; exports are checked; Core ML
packages convert (prediction needs macOS and is refused clearly elsewhere); bf16 agrees."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgetam_core.backends import create_backend
from edgetam_core.backends.base import Backend
from edgetam_core.backends.export import STEPS, ExportOptions, export_model
from edgetam_core.backends.torchscript import TorchScriptBackend
from edgetam_core.checkpoint import build_default_model, load_checkpoint, save_checkpoint
from edgetam_core.cli import export as export_cli
from edgetam_core.config import tiny_config
from edgetam_core.errors import BackendError
from edgetam_core.model.edgetam import EdgeTAM
from edgetam_core.synthetic import make_sample_clip
from edgetam_core.tracker import Tracker
from edgetam_core.types import Prompt

H, W = 96, 128
SCHEDULE = {
    0: [Prompt.from_clicks(1, [[40.0, 40.0]], [1]), Prompt(2, box=(60.0, 20.0, 120.0, 80.0))],
    3: [Prompt.from_clicks(1, [[50.0, 45.0], [100.0, 70.0]], [1, 0])],  # refinement
    5: [Prompt.from_clicks(3, [[90.0, 50.0]], [1])],  # a new object mid-stream
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(
        build_default_model(config=tiny_config()), tmp_path_factory.mktemp("b") / "tiny.pt"
    )


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return make_sample_clip(num_frames=8, height=H, width=W, seed=1).frames


@pytest.fixture(scope="module")
def ts_export(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ts")
    model = load_checkpoint(checkpoint)
    export_model(model, out, ExportOptions("torchscript", max_objects=4), model.checkpoint_sha256)
    return out


def _run(backend: Backend | EdgeTAM, frames: list[np.ndarray]) -> list[dict[int, np.ndarray]]:
    tracker = Tracker(backend)
    out = []
    for i, frame in enumerate(frames):
        result = tracker.step(frame, SCHEDULE.get(i, []))
        out.append({k: v.low_res_logits for k, v in result.objects.items()})
    return out


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def test_torchscript_export_matches_eager(
    checkpoint: Path, ts_export: Path, frames: list[np.ndarray]
) -> None:
    manifest = json.loads((ts_export / "manifest.json").read_text())
    assert manifest["format"] == "torchscript" and manifest["precision"] == "fp32"
    assert manifest["checkpoint_sha256"] == load_checkpoint(checkpoint).checkpoint_sha256
    assert set(manifest["files"]) == set(STEPS) == set(manifest["steps"])
    assert manifest["steps"]["memory_attention"]["inputs"][4]["name"] == "valid"
    assert manifest["memory_slots"] is None  # TorchScript takes any bank layout
    assert manifest["steps"]["memory_attention"]["inputs"][2]["shape"] == ["B", "M", 64]
    eager = _run(create_backend("eager", load_checkpoint(checkpoint)), frames)
    ts = _run(create_backend("torchscript", load_checkpoint(checkpoint), ts_export), frames)
    assert [sorted(f) for f in ts] == [sorted(f) for f in eager]
    assert sorted(ts[-1]) == [1, 2, 3]
    for f_eager, f_ts in zip(eager, ts, strict=True):
        for obj_id in f_eager:
            assert _rel(f_ts[obj_id], f_eager[obj_id]) <= 1e-5


def test_fused_eager_matches_unfused(checkpoint: Path, frames: list[np.ndarray]) -> None:
    plain = _run(load_checkpoint(checkpoint), frames[:3])
    fused = _run(create_backend("eager", load_checkpoint(checkpoint)), frames[:3])
    for a, b in zip(plain, fused, strict=True):
        for obj_id in a:
            assert _rel(b[obj_id], a[obj_id]) <= 1e-5


def test_in_memory_trace_and_bf16_agree(checkpoint: Path, frames: list[np.ndarray]) -> None:
    reference = _run(load_checkpoint(checkpoint), frames[:4])
    traced = _run(TorchScriptBackend.trace(load_checkpoint(checkpoint)), frames[:4])
    bf16 = _run(create_backend("eager", load_checkpoint(checkpoint), precision="bf16"), frames[:4])
    ts_bf16 = _run(TorchScriptBackend.trace(load_checkpoint(checkpoint), "bf16"), frames[:4])
    agreement = []
    for ref, tr, lo, ts_lo in zip(reference, traced, bf16, ts_bf16, strict=True):
        assert sorted(ts_lo) == sorted(lo) == sorted(ref)
        for obj_id in ref:
            assert _rel(tr[obj_id], ref[obj_id]) <= 1e-5
            agreement.append(np.mean((lo[obj_id] > 0) == (ref[obj_id] > 0)))
            # The bf16 trace records autocast's casts: it computes what eager bf16 computes
            # (up to the order of float32 accumulations), not a cruder all-bf16 graph.
            assert _rel(ts_lo[obj_id], lo[obj_id]) <= 1e-2
    # Random weights give logits near 0 (|logit| ~ 0.07), the worst case for bf16 rounding.
    assert np.mean(agreement) >= 0.99 and min(agreement) >= 0.97


def test_bf16_keeps_the_decoder_in_float32(checkpoint: Path, tmp_path: Path) -> None:
    model = load_checkpoint(checkpoint)
    export_model(model, tmp_path, ExportOptions("torchscript", "bf16", max_objects=2), None)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["precision"] == "bf16"
    assert manifest["step_precision"] == {
        "image_encoder": "bf16",
        "memory_attention": "bf16",
        "decoder": "fp32",
        "memory_encoder": "bf16",
    }

    # The frozen graphs hold their weights as constants: bf16 ones in the reduced steps only.
    def constant_dtypes(name: str) -> set[str]:
        graph = torch.jit.load(str(tmp_path / f"{name}.pt")).graph
        return {
            node.t("value").dtype
            for node in graph.findAllNodes("prim::Constant")
            if node.hasAttribute("value") and node.kindOf("value") == "t"
        }

    assert torch.bfloat16 in constant_dtypes("image_encoder")
    assert torch.bfloat16 in constant_dtypes("memory_attention")
    assert torch.float32 in constant_dtypes("decoder")
    assert torch.bfloat16 not in constant_dtypes("decoder")


def test_manifest_mismatches_are_clear_errors(
    checkpoint: Path, ts_export: Path, tmp_path: Path
) -> None:
    other = build_default_model(config=tiny_config(), seed=99)
    other_ckpt = save_checkpoint(other, tmp_path / "other.pt")
    with pytest.raises(BackendError, match="checkpoint sha256"):
        create_backend("torchscript", load_checkpoint(other_ckpt), ts_export)
    with pytest.raises(BackendError, match="another model config .*image_size"):
        create_backend("torchscript", build_default_model(), ts_export)
    with pytest.raises(BackendError, match="export is torchscript, not coreml"):
        create_backend("coreml", load_checkpoint(checkpoint), ts_export)
    broken = tmp_path / "broken"
    shutil.copytree(ts_export, broken)
    (broken / "decoder.pt").unlink()
    with pytest.raises(BackendError, match="decoder file is missing"):
        create_backend("torchscript", load_checkpoint(checkpoint), broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(BackendError, match="not valid JSON"):
        create_backend("torchscript", load_checkpoint(checkpoint), broken)
    with pytest.raises(BackendError, match="not found"):
        create_backend("torchscript", load_checkpoint(checkpoint), tmp_path / "nowhere")
    with pytest.raises(BackendError, match="unknown backend"):
        create_backend("onnx", load_checkpoint(checkpoint))


def test_padded_bank_matches_unpadded(
    checkpoint: Path, ts_export: Path, frames: list[np.ndarray]
) -> None:
    """Fixed-shape runtimes (Core ML) get a bank padded to fixed slots with a validity mask:
    through the same traced graph Core ML converts, it computes what the unpadded bank does."""
    eager = _run(load_checkpoint(checkpoint), frames)
    padded = create_backend("torchscript", load_checkpoint(checkpoint), ts_export)
    padded.memory_slots = (4 + 6, 4 + 15)
    got = _run(padded, frames)
    for f_eager, f_pad in zip(eager, got, strict=True):
        for obj_id in f_eager:
            assert _rel(f_pad[obj_id], f_eager[obj_id]) <= 1e-5
    with pytest.raises(ValueError, match="room for 10 memories"):
        Tracker(padded, max_conditioning_frames=8)
    with pytest.raises(ValueError):
        Tracker(padded, max_conditioning_frames=-1)


def test_export_cli(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        export_cli.main(["--help"])
    assert info.value.code == 0
    help_text = capsys.readouterr().out
    for option in (
        "--checkpoint",
        "--format",
        "--out",
        "--precision",
        "--max-objects",
        "--max-conditioning-frames",
    ):
        assert option in help_text
    assert (
        export_cli.main(
            [
                "--checkpoint",
                str(tmp_path / "none.pt"),
                "--format",
                "torchscript",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "checkpoint not found" in capsys.readouterr().err
    args = [
        "--checkpoint",
        str(checkpoint),
        "--format",
        "coreml",
        "--precision",
        "bf16",
        "--out",
        str(tmp_path / "o"),
    ]
    assert export_cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "fp32 or fp16" in err
    args = [
        "--checkpoint",
        str(checkpoint),
        "--format",
        "torchscript",
        "--precision",
        "bf16",
        "--out",
        str(tmp_path / "bf"),
        "--quiet",
    ]
    assert export_cli.main(args) == 0
    assert json.loads((tmp_path / "bf" / "manifest.json").read_text())["precision"] == "bf16"


def test_coreml_packages_convert(checkpoint: Path, tmp_path: Path) -> None:
    """Conversion runs anywhere; the packages' inputs/outputs must match the manifest."""
    from edgetam_core.backends.coreml import coreml_prediction_available, package_description

    model = load_checkpoint(checkpoint)
    export_model(
        model,
        tmp_path,
        ExportOptions("coreml", precision="fp16", max_objects=3),
        model.checkpoint_sha256,
    )
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for name in STEPS:
        described = package_description(tmp_path / manifest["files"][name])
        assert described["inputs"] == [io["name"] for io in manifest["steps"][name]["inputs"]]
        assert described["outputs"] == [io["name"] for io in manifest["steps"][name]["outputs"]]
    if not coreml_prediction_available():
        # Core ML prediction exists only on macOS: here the backend must refuse clearly.
        with pytest.raises(BackendError, match="needs macOS"):
            create_backend("coreml", load_checkpoint(checkpoint), tmp_path)
    else:  # pragma: no cover - runs on macOS only
        frames = make_sample_clip(num_frames=4, height=H, width=W, seed=1).frames
        eager = _run(load_checkpoint(checkpoint), frames)
        coreml = _run(create_backend("coreml", load_checkpoint(checkpoint), tmp_path), frames)
        for a, b in zip(eager, coreml, strict=True):
            for obj_id in a:
                assert np.mean((a[obj_id] > 0) == (b[obj_id] > 0)) >= 0.99
    assert sys.platform == "darwin" or not coreml_prediction_available()
