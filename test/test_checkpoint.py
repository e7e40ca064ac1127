"""Checkpoint loading: the official layout loads strictly; every bad file gets one clear error."""

from __future__ import annotations

import collections
import logging
from pathlib import Path

import pytest
import torch

from edgetam_core.checkpoint import (
    build_default_model,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)
from edgetam_core.config import EdgeTAMConfig, tiny_config
from edgetam_core.errors import CheckpointError
from edgetam_core.model.edgetam import EdgeTAM


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(
        build_default_model(config=tiny_config()), tmp_path_factory.mktemp("ck") / "tiny.pt"
    )


def test_default_model_has_the_official_layout() -> None:
    model = EdgeTAM()
    state = model.state_dict()
    assert len(state) == 982
    dtypes = collections.Counter(str(v.dtype) for v in state.values())
    assert dtypes == {"torch.float32": 876, "torch.int64": 106}
    assert sum(p.numel() for p in model.parameters()) == 13_895_794
    assert state["maskmem_tpos_enc"].shape == (7, 1, 1, 64)
    prefixes = {k.split(".")[0] for k in state}
    assert prefixes == {
        "image_encoder",
        "memory_attention",
        "memory_encoder",
        "spatial_perceiver",
        "sam_prompt_encoder",
        "sam_mask_decoder",
        "obj_ptr_proj",
        "mask_downsample",
        "maskmem_tpos_enc",
        "no_mem_embed",
        "no_mem_pos_enc",
        "no_obj_ptr",
    }


def test_official_layout_round_trip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = build_default_model(config=tiny_config(), seed=3)
    path = tmp_path / "m.pt"
    torch.save({"model": model.state_dict()}, path)  # official layout, no config entry
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(path)  # the default config expects 256 latents
    with caplog.at_level(logging.INFO, logger="edgetam_core.checkpoint"):
        loaded = load_checkpoint(path, config=tiny_config())
    assert file_sha256(path) in caplog.text
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert not loaded.training


def test_saved_config_is_restored(tiny_ckpt: Path) -> None:
    assert load_checkpoint(tiny_ckpt).config == tiny_config()
    raw = torch.load(tiny_ckpt, weights_only=True)
    assert set(raw) == {"model", "config"}


def test_default_config_is_not_written(tmp_path: Path) -> None:
    path = save_checkpoint(EdgeTAM(EdgeTAMConfig()), tmp_path / "d.pt")
    assert set(torch.load(path, weights_only=True)) == {"model"}


def _state(tiny_ckpt: Path) -> dict[str, torch.Tensor]:
    return dict(torch.load(tiny_ckpt, weights_only=True)["model"])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d, s: d / "missing.pt", "not found"),
        (lambda d, s: d, "not a file"),
        (lambda d, s: _write(d / "empty.pt", b""), "empty"),
        (
            lambda d, s: _write(d / "noise.pt", b"\x00garbage" * 100),
            "not a readable torch checkpoint",
        ),
        (lambda d, s: _truncate(s, d / "cut.pt"), "truncated"),
        (lambda d, s: _save(d / "list.pt", [1, 2, 3]), "official layout"),
        (lambda d, s: _save(d / "nomodel.pt", {"state_dict": {}}), "official layout"),
    ],
    ids=["missing", "directory", "empty", "noise", "truncated", "list", "no-model-key"],
)
def test_unreadable_files_get_one_clear_error(
    tmp_path: Path, tiny_ckpt: Path, make, message: str
) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path, tiny_ckpt)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_missing_unexpected_and_mismatched_keys(tmp_path: Path, tiny_ckpt: Path) -> None:
    state = _state(tiny_ckpt)
    cfg = {"config": tiny_config().to_dict()}
    missing = {k: v for k, v in state.items() if not k.startswith("memory_encoder")}
    _save(tmp_path / "a.pt", {"model": missing, **cfg})
    with pytest.raises(CheckpointError, match=r"missing keys: memory_encoder\..*\(\d+ in total\)"):
        load_checkpoint(tmp_path / "a.pt")
    extra = {**state, "extra.weight": torch.zeros(1)}
    _save(tmp_path / "b.pt", {"model": extra, **cfg})
    with pytest.raises(CheckpointError, match=r"unexpected keys: extra.weight"):
        load_checkpoint(tmp_path / "b.pt")
    wrong = {**state, "no_obj_ptr": torch.zeros(1, 128)}
    _save(tmp_path / "c.pt", {"model": wrong, **cfg})
    with pytest.raises(
        CheckpointError, match=r"shape mismatches: no_obj_ptr \(1, 128\) != \(1, 256\)"
    ):
        load_checkpoint(tmp_path / "c.pt")


class _Payload:
    """Anything that is not plain data: loading it would run code."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("this would have run",))


def test_pickled_code_is_refused(tmp_path: Path, tiny_ckpt: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": _state(tiny_ckpt), "extra": _Payload()}, path)
    with pytest.raises(CheckpointError, match="refusing .* pickle code execution"):
        load_checkpoint(path)


def test_bad_config_entry(tmp_path: Path, tiny_ckpt: Path) -> None:
    _save(tmp_path / "cfg.pt", {"model": _state(tiny_ckpt), "config": {"image_size": 100}})
    with pytest.raises(CheckpointError, match="invalid config"):
        load_checkpoint(tmp_path / "cfg.pt")
    _save(tmp_path / "cfg2.pt", {"model": _state(tiny_ckpt), "config": {"nonsense": 1}})
    with pytest.raises(CheckpointError, match="unknown config fields: nonsense"):
        load_checkpoint(tmp_path / "cfg2.pt")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _save(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


def _truncate(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def test_bundled_demo_model_loads_and_matches_its_record() -> None:
    import hashlib
    import json

    from edgetam_core.checkpoint import DEMO_CHECKPOINT, load_named_model

    record = json.loads(DEMO_CHECKPOINT.with_suffix(".json").read_text())
    assert record["sha256"] == hashlib.sha256(DEMO_CHECKPOINT.read_bytes()).hexdigest()
    assert DEMO_CHECKPOINT.stat().st_size < 10_000_000  # "a few MB"
    model, desc = load_named_model("demo")
    assert "demo" in desc and model.config.image_size == 128
    assert model.checkpoint_sha256 == record["sha256"]
    same, _ = load_named_model("default")
    for a, b in zip(model.state_dict().values(), same.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    random_model, desc = load_named_model("random")
    assert "random" in desc and random_model.config.image_size == 1024


def test_named_model_path_errors_are_one_line(tmp_path: Path) -> None:
    from edgetam_core.checkpoint import load_named_model

    with pytest.raises(CheckpointError, match="not found"):
        load_named_model(str(tmp_path / "nope.pt"))
