"""Export the four per-frame steps to TorchScript or Core ML, with a manifest.

An export directory holds one file per step and ``manifest.json``: format, precision, the
inputs and outputs of every step (names, shapes, dtypes; ``B`` = objects, 1..max_objects,
``N`` = prompt points), the model config, the checkpoint's sha256, the memory-bank slots and
the tool versions. Backends refuse a directory whose manifest does not match the model in use.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgetam_core.backends.base import step_precision
from edgetam_core.backends.steps import (
    DecoderStep,
    ImageEncoderStep,
    MemoryAttentionStep,
    MemoryEncoderStep,
    example_inputs,
)
from edgetam_core.config import EdgeTAMConfig
from edgetam_core.errors import BackendError
from edgetam_core.model.edgetam import EdgeTAM

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
STEPS = ("image_encoder", "memory_attention", "decoder", "memory_encoder")
FORMATS = ("torchscript", "coreml")
MANIFEST_VERSION = 1


def memory_slots(config: EdgeTAMConfig, max_conditioning_frames: int) -> tuple[int, int]:
    """(memory frames, object pointers) a bank can hold with this conditioning limit."""
    return (
        max_conditioning_frames + config.num_maskmem - 1,
        max_conditioning_frames + config.max_obj_ptrs_in_encoder - 1,
    )


def step_signatures(
    config: EdgeTAMConfig, mem_slots: int | None, ptr_slots: int | None
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Names, shapes and dtypes of every step's inputs and outputs (for the manifest)."""
    c = config
    h, s, d, md = c.feat_size, c.image_size, c.hidden_dim, c.mem_dim
    # M: memory tokens, fixed for a padded bank (Core ML), any number otherwise.
    m: int | str = "M"
    if mem_slots is not None and ptr_slots is not None:
        m = mem_slots * c.tokens_per_memory + ptr_slots * c.ptr_tokens_per_pointer
    r = c.hidden_dim // c.memory_attention_heads // 2
    k = c.num_multimask_outputs + 1

    def io(name: str, shape: list[int | str], dtype: str = "float32") -> dict[str, Any]:
        return {"name": name, "shape": shape, "dtype": dtype}

    return {
        "image_encoder": {
            "inputs": [io("images", [1, 3, s, s])],
            "outputs": [
                io("high_res_0", [1, d // 8, 4 * h, 4 * h]),
                io("high_res_1", [1, d // 4, 2 * h, 2 * h]),
                io("top", [1, d, h, h]),
                io("top_pos", [1, d, h, h]),
            ],
        },
        "memory_attention": {
            "inputs": [
                io("top", ["B", d, h, h]),
                io("top_pos", [1, d, h, h]),
                io("memory", ["B", m, md]),
                io("memory_pos", ["B", m, md]),
                io("valid", ["B", m], "bool"),
                io("key_cos", [m, r]),
                io("key_sin", [m, r]),
            ],
            "outputs": [io("pix", ["B", d, h, h])],
        },
        "decoder": {
            "inputs": [
                io("pix", ["B", d, h, h]),
                io("high_res_0", ["B", d // 8, 4 * h, 4 * h]),
                io("high_res_1", ["B", d // 4, 2 * h, 2 * h]),
                io("point_coords", ["B", "N", 2]),
                io("point_labels", ["B", "N"], "int32"),
                io("mask_input", ["B", 1, 4 * h, 4 * h]),
                io("use_mask", ["B"], "bool"),
            ],
            "outputs": [
                io("masks", ["B", k, 4 * h, 4 * h]),
                io("ious", ["B", k]),
                io("obj_ptrs", ["B", k, d]),
                io("object_score", ["B"]),
            ],
        },
        "memory_encoder": {
            "inputs": [
                io("top", ["B", d, h, h]),
                io("high_res_logits", ["B", 1, s, s]),
                io("binarize", ["B"], "bool"),
            ],
            "outputs": [io("memory", ["B", c.tokens_per_memory, md])],
        },
    }


def step_modules(model: EdgeTAM) -> dict[str, nn.Module]:
    return {
        "image_encoder": ImageEncoderStep(model),
        "memory_attention": MemoryAttentionStep(model),
        "decoder": DecoderStep(model),
        "memory_encoder": MemoryEncoderStep(model),
    }


def tool_versions(fmt: str) -> dict[str, str]:
    versions = {"torch": torch.__version__, "python": platform.python_version()}
    if fmt == "coreml":
        import coremltools

        versions["coremltools"] = str(coremltools.__version__)
    try:
        from importlib.metadata import version

        versions["edgetam-ros"] = version("edgetam-ros")
    except Exception:  # not installed as a distribution (e.g. run from a checkout)
        pass
    return versions


@dataclass
class ExportOptions:
    format: str = "torchscript"
    precision: str = "fp32"
    max_objects: int = 16
    max_conditioning_frames: int = 4


def export_model(
    model: EdgeTAM,
    out_dir: str | Path,
    options: ExportOptions,
    checkpoint_sha256: str | None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the four steps and ``manifest.json`` to ``out_dir``; returns the manifest path.

    The model is fused for inference first (in place).
    """
    if options.format not in FORMATS:
        raise BackendError(f"unknown format {options.format!r} (choose from {', '.join(FORMATS)})")
    allowed = {"torchscript": ("fp32", "bf16"), "coreml": ("fp32", "fp16")}[options.format]
    if options.precision not in allowed:
        raise BackendError(
            f"{options.format} export supports precision {' or '.join(allowed)}, "
            f"not {options.precision}"
        )
    if options.max_objects < 1 or options.max_conditioning_frames < 1:
        raise BackendError("max_objects and max_conditioning_frames must be >= 1")
    say = progress or (lambda _msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().fuse()
    mem_slots, ptr_slots = memory_slots(model.config, options.max_conditioning_frames)
    modules = step_modules(model)
    examples = example_inputs(model, mem_slots, ptr_slots)
    files: dict[str, str] = {}
    with torch.no_grad():
        # Fill the size-keyed caches (RoPE tables) so traces embed them as constants.
        for name in STEPS:
            modules[name](*examples[name])
    for i, name in enumerate(STEPS, start=1):
        if options.format == "torchscript":
            say(f"[{i}/{len(STEPS)}] tracing {name}")
            traced = trace_step(
                modules[name], examples[name], step_precision(name, options.precision)
            )
            files[name] = f"{name}.pt"
            torch.jit.save(traced, str(out / files[name]))
        else:
            from edgetam_core.backends.coreml import convert_step

            say(f"[{i}/{len(STEPS)}] converting {name} to Core ML")
            files[name] = f"{name}.mlpackage"
            convert_step(
                name, modules[name], model.config, mem_slots, ptr_slots, options, out / files[name]
            )
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "format": options.format,
        "precision": options.precision,
        "step_precision": {name: step_precision(name, options.precision) for name in STEPS},
        "max_objects": options.max_objects,
        "max_conditioning_frames": options.max_conditioning_frames,
        # Core ML takes a bank padded to fixed slots; TorchScript any bank layout.
        "memory_slots": [mem_slots, ptr_slots] if options.format == "coreml" else None,
        "files": files,
        "steps": step_signatures(model.config, mem_slots, ptr_slots)
        if options.format == "coreml"
        else step_signatures(model.config, None, None),
        "config": _jsonable(model.config.to_dict()),
        "checkpoint_sha256": checkpoint_sha256,
        "tools": tool_versions(options.format),
    }
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=2))
    say(f"wrote {path}")
    return path


def trace_step(
    module: nn.Module, example: tuple[torch.Tensor, ...], precision: str, freeze: bool = True
) -> torch.jit.ScriptModule:
    """TorchScript trace of one step.

    ``bf16`` traces under bfloat16 autocast, so the graph holds the casts autocast makes
    (matmuls and convolutions in bf16, normalizations and softmax statistics in float32) and
    computes what the eager backend computes; freezing folds the weight casts into bf16
    constants. Inputs and outputs stay float32 either way.
    """
    module = module.eval()
    autocast: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if precision == "bf16":
        module = _Float32Outputs(module).eval()
        autocast = torch.autocast(example[0].device.type, dtype=torch.bfloat16)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), autocast:
        # Shape checks in the model code become constants in the trace: expected, since the
        # exported shapes are fixed except the batch and point dimensions.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        # The tracer records autocast's own casts; TorchScript's autocast pass would rewrite
        # the graph a second time (and mistype mixed additions), so it is off while tracing.
        jit_autocast = torch._C._jit_set_autocast_mode(False)
        try:
            traced = torch.jit.trace(module, example, check_trace=False)
            # Freezing inlines the weights the graph uses and drops the rest of the model.
            return torch.jit.freeze(traced) if freeze else traced
        finally:
            torch._C._jit_set_autocast_mode(jit_autocast)


class _Float32Outputs(nn.Module):
    """A reduced-precision step whose floating-point outputs are float32 (autocast's are not)."""

    def __init__(self, step: nn.Module) -> None:
        super().__init__()
        self.step = step

    def forward(self, *args: torch.Tensor) -> Any:
        out = self.step(*args)
        if isinstance(out, tuple):
            return tuple(o.float() if o.is_floating_point() else o for o in out)
        return out.float() if out.is_floating_point() else out


def read_manifest(directory: str | Path) -> dict[str, Any]:
    d = Path(directory)
    path = d / MANIFEST
    if not d.is_dir():
        raise BackendError(f"export directory not found: {d}")
    if not path.is_file():
        raise BackendError(f"{d} has no {MANIFEST} (run edgetam-export first)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BackendError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(manifest, dict) or manifest.get("manifest_version") != MANIFEST_VERSION:
        raise BackendError(f"{path} is not an edgetam export manifest (version {MANIFEST_VERSION})")
    for name in STEPS:
        file = manifest.get("files", {}).get(name)
        if not file or not (d / file).exists():
            raise BackendError(f"{d} is incomplete: the {name} file is missing")
    return dict(manifest)


def check_manifest(manifest: dict[str, Any], model: EdgeTAM, expected_format: str) -> None:
    """Raise BackendError unless ``manifest`` was exported for this model and format."""
    if manifest.get("format") != expected_format:
        raise BackendError(f"export is {manifest.get('format')}, not {expected_format}")
    if manifest.get("config") != _jsonable(model.config.to_dict()):
        theirs = manifest.get("config") or {}
        ours = _jsonable(model.config.to_dict())
        diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise BackendError(
            f"export was made for another model config (differs in: {', '.join(diff)})"
        )
    ours_sha = getattr(model, "checkpoint_sha256", None)
    if manifest.get("checkpoint_sha256") != ours_sha:
        raise BackendError(
            f"export was made from checkpoint sha256 {manifest.get('checkpoint_sha256')}, "
            f"the model in use has {ours_sha}"
        )


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(values))
