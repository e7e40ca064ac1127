"""Training configuration: a YAML file -> frozen dataclasses (unknown keys are errors).

A run is a list of stages executed in order (e.g. image pre-training, then video training on
8-frame clips, then progressive fine-tuning on longer clips). See ``config/train/*.yaml`` and
``docs/training.md`` for annotated examples.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgetam_core.config import EdgeTAMConfig, tiny_config
from edgetam_core.synthetic import WorldSpec
from edgetam_core.train.augment import AugmentConfig
from edgetam_core.train.losses import LossWeights


class ConfigError(ValueError):
    """A training config file or value is invalid."""


@dataclass(frozen=True)
class ModelSpec:
    """The student: a preset (``default`` = official sizes, ``tiny``) with field overrides,
    optionally initialized from a checkpoint (any config the project can load)."""

    preset: str = "default"
    overrides: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # checkpoint to start from (loaded strictly)
    # From scratch only: tie the decoder's cross-attention keys to queries, scaled by this
    # (0: off). See edgetam_core.train.init.align_prompt_attention.
    align_prompt_attention: float = 0.0

    def __post_init__(self) -> None:
        if self.align_prompt_attention < 0:
            raise ConfigError("model.align_prompt_attention must be >= 0")

    def build_config(self) -> EdgeTAMConfig:
        presets = {"default": EdgeTAMConfig(), "tiny": tiny_config()}
        if self.preset not in presets:
            raise ConfigError(f"unknown model preset {self.preset!r} (default, tiny)")
        values = presets[self.preset].to_dict()
        unknown = sorted(set(self.overrides) - set(values))
        if unknown:
            raise ConfigError(f"unknown EdgeTAMConfig fields: {', '.join(unknown)}")
        values.update(self.overrides)
        try:
            return EdgeTAMConfig.from_dict(values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model: {exc}") from None


@dataclass(frozen=True)
class TeacherSpec:
    """A frozen teacher for distillation: a checkpoint of any config this project loads."""

    checkpoint: str
    config: ModelSpec | None = None  # overrides the checkpoint's own config when given


@dataclass(frozen=True)
class DataSpec:
    """One data source. ``kind``: synthetic_video, synthetic_image, image_folder,
    video_folder (``root``: a folder), rosbag (``root``: a rosbag2 folder; labels from
    ``labels_topic``, default ``/ground_truth/masks``)."""

    kind: str = "synthetic_video"
    root: str | None = None
    labels_topic: str | None = None
    weight: float = 1.0
    world: WorldSpec | None = None  # synthetic sources: the world's knobs
    # synthetic_video: worlds laid out over this many frames, clips are windows of them with
    # a frame stride of 1..max_stride (0: the world lasts exactly one clip)
    world_frames: int = 0
    max_stride: int = 1
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)  # None: no augmentation


@dataclass(frozen=True)
class PromptSpec:
    """How prompts are drawn in a stage (probabilities over the first-frame prompt kind)."""

    p_click: float = 0.6
    p_box: float = 0.2
    p_mask: float = 0.2
    max_clicks: int = 2  # first-frame positive clicks: 1..max_clicks (1 click w.p. 1/2)
    corrections: tuple[int, int] = (0, 2)  # correction clicks on the first prompted frame
    p_extra_frame: float = 0.15  # another prompted (conditioning) frame later in the clip
    extra_corrections: int = 1  # correction clicks on that frame


@dataclass(frozen=True)
class StageSpec:
    """One training stage."""

    name: str
    kind: str = "video"  # image | video
    steps: int = 100
    batch_size: int = 4
    clip_length: int = 8  # video stages (image stages use 1)
    max_objects: int = 3  # objects per clip/image
    lr: float = 1e-3
    min_lr_ratio: float = 0.05  # cosine decay down to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    freeze: tuple[str, ...] = ()  # parameter-name prefixes kept frozen, e.g. image_encoder.trunk
    train_only: tuple[str, ...] = ()  # if set, every parameter not under these prefixes is frozen
    losses: LossWeights = field(default_factory=LossWeights)
    prompts: PromptSpec = field(default_factory=PromptSpec)
    data: tuple[DataSpec, ...] = ()  # empty: the run's top-level data
    detach_memory: bool = False
    max_conditioning: int = 4
    # Before step 0, rescale the memory encoder's mask branch to the size of its image branch
    # (see trainer.calibrate_memory_encoder): lets a fresh memory path see the mask at all.
    calibrate_memory_encoder: bool = False

    def is_frozen(self, name: str) -> bool:
        """Whether the parameter (or module) ``name`` stays frozen in this stage."""
        if any(name.startswith(prefix) for prefix in self.freeze):
            return True
        return bool(self.train_only) and not any(name.startswith(p) for p in self.train_only)


@dataclass(frozen=True)
class EvalSpec:
    """Held-out synthetic clips scored with the real Tracker (one click per object, frame 0)."""

    every_steps: int = 0  # 0: only at the end of each stage
    num_clips: int = 8
    num_frames: int = 24
    height: int = 120
    width: int = 160
    world: WorldSpec | None = None


@dataclass(frozen=True)
class TrainConfig:
    model: ModelSpec = field(default_factory=ModelSpec)
    stages: tuple[StageSpec, ...] = ()
    teacher: TeacherSpec | None = None
    data: tuple[DataSpec, ...] = (DataSpec(),)
    eval: EvalSpec = field(default_factory=EvalSpec)
    seed: int = 0
    device: str = "cpu"
    out_dir: str = "out/train"
    checkpoint_every_s: float = 300.0  # training state + exported model, by wall time
    log_every: int = 10
    threads: int = 0  # torch CPU threads (0: torch's default)
    amp: bool = False  # bfloat16 autocast (CUDA; CPUs with AVX512-BF16/AMX)
    # Exponential moving average of the weights (0: off). With it, evaluations, model.pt and
    # stage_*.pt are the averaged weights; training itself is unchanged.
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        self.model.build_config()  # unknown or invalid model fields fail here
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not self.stages:
            raise ConfigError("a training config needs at least one stage")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"stage names must be unique, got {names}")
        for s in self.stages:
            if s.kind not in ("image", "video"):
                raise ConfigError(f"stage {s.name}: kind must be image or video, not {s.kind!r}")
            if s.steps < 0 or s.batch_size < 1 or s.clip_length < 1 or s.max_objects < 1:
                raise ConfigError(f"stage {s.name}: steps, batch_size, clip_length, max_objects")
            p = s.prompts
            if min(p.p_click, p.p_box, p.p_mask) < 0 or p.p_click + p.p_box + p.p_mask <= 0:
                raise ConfigError(f"stage {s.name}: prompt probabilities must be >= 0, sum > 0")


# YAML -> dataclasses ------------------------------------------------------------------------------
def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _convert(options[0], value, where)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return build(tp, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(
            _convert(a, v, f"{where}[{i}]")
            for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin is dict or tp is Any:
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def build(cls: type[Any], values: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping, converting nested fields; unknown keys fail."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(unknown)}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a YAML training config; ``overrides`` replace top-level keys (e.g. device)."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read training config {p}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    cfg: TrainConfig = build(TrainConfig, raw, str(p))
    return cfg


def to_plain(obj: Any) -> Any:
    """Dataclasses/tuples -> dicts/lists (for saving the config next to the results)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj
