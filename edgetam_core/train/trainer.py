"""The training loop: stages, distillation, freezing, checkpoints, resume, logs.

Determinism: every step draws its data, prompts and clicks from generators seeded with
``(seed, stage index, step)``, so a run resumed from a saved state continues exactly as the
uninterrupted run would (on the same device and library versions).

Distillation (EdgeTAM): a frozen teacher sees the same frames and prompts. The image loss is
the MSE between the student's and the teacher's stride-16 image-encoder features (F16, the
map memory attention reads); the memory loss (video stages) the MSE between their
memory-attention outputs on every tracked frame. When the widths differ, a learned 1x1
convolution maps the student's features to the teacher's width (it exists only during
training and is saved with the training state, not in the model); when the grids differ,
the teacher's map is resized bilinearly to the student's grid.

Outputs in ``out_dir``: ``model.pt`` (official layout + config, loadable by
``load_checkpoint``, the tracker and the ROS node), ``stage_<name>.pt`` after each stage,
``state.pt`` (everything needed to resume), ``losses.csv`` + ``losses.png``, ``eval.csv``,
``config.yaml`` (the resolved config) and ``summary.json``. With ``ema_decay`` the
exported models (and evaluations) are the moving average of the weights.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from edgetam_core.checkpoint import load_checkpoint, save_checkpoint
from edgetam_core.model.edgetam import EdgeTAM
from edgetam_core.train.config import DataSpec, StageSpec, TrainConfig, to_plain
from edgetam_core.train.data import (
    ClipBatch,
    ClipSource,
    ImageFolderSource,
    RosbagSource,
    SourceMix,
    SyntheticImageSource,
    SyntheticVideoSource,
    VideoFolderSource,
    make_batch,
)
from edgetam_core.train.evaluate import (
    VALIDATION_SEED_BASE,
    held_out_clips,
    release_inference_tensors,
    score_clips,
)
from edgetam_core.train.forward import ClipOutput, FramePrompt, run_clip
from edgetam_core.train.init import align_prompt_attention
from edgetam_core.train.losses import feature_mse, segment_loss
from edgetam_core.train.prompts import sample_boxes, sample_clicks

log = logging.getLogger(__name__)

LOSS_COLUMNS = (
    "loss",
    "dice",
    "focal",
    "iou",
    "occlusion",
    "image_distill",
    "memory_distill",
    "mean_iou",
)
STATE_VERSION = 1


def build_source(spec: DataSpec) -> ClipSource:
    if spec.kind == "synthetic_video":
        src = SyntheticVideoSource(
            augment=spec.augment, world_frames=spec.world_frames, max_stride=spec.max_stride
        )
        if spec.world is not None:
            src.spec = spec.world
        return src
    if spec.kind == "synthetic_image":
        img = SyntheticImageSource(augment=spec.augment)
        if spec.world is not None:
            img.spec = spec.world
        return img
    if spec.root is None:
        raise ValueError(f"data kind {spec.kind} needs a root folder")
    if spec.kind == "image_folder":
        return ImageFolderSource(spec.root, augment=spec.augment)
    if spec.kind == "video_folder":
        return VideoFolderSource(spec.root, augment=spec.augment)
    if spec.kind == "rosbag":
        topic = spec.labels_topic or "/ground_truth/masks"
        return RosbagSource(spec.root, labels_topic=topic, augment=spec.augment)
    raise ValueError(
        f"unknown data kind {spec.kind!r} "
        "(synthetic_video, synthetic_image, image_folder, video_folder, rosbag)"
    )


def lr_at(stage: StageSpec, step: int) -> float:
    """Linear warm-up, then cosine decay to ``lr * min_lr_ratio``."""
    if stage.warmup_steps > 0 and step < stage.warmup_steps:
        return stage.lr * (step + 1) / stage.warmup_steps
    span = max(1, stage.steps - stage.warmup_steps)
    progress = min(1.0, (step - stage.warmup_steps) / span)
    floor = stage.lr * stage.min_lr_ratio
    return floor + (stage.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def step_generators(seed: int, stage_index: int, step: int) -> tuple[np.random.Generator, Any]:
    rng = np.random.default_rng([seed, stage_index, step])
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    return rng, gen


def sample_prompts(
    stage: StageSpec, masks: torch.Tensor, rng: np.random.Generator, gen: torch.Generator
) -> dict[int, FramePrompt]:
    """Prompts for a batch: one kind for all objects on frame 0, maybe a later refinement.

    Image stages never use mask prompts (the output would be the prompt itself).
    """
    p = stage.prompts
    p_mask = p.p_mask if stage.kind == "video" else 0.0
    probs = np.array([p.p_click, p.p_box, p_mask], dtype=np.float64)
    if probs.sum() <= 0:
        probs = np.array([1.0, 0.0, 0.0])
    kind = int(rng.choice(3, p=probs / probs.sum()))
    first = masks[0]
    lo, hi = p.corrections
    corrections = int(rng.integers(lo, hi + 1))
    prompts: dict[int, FramePrompt] = {}
    if kind == 0:
        n = 1 if rng.random() < 0.5 else int(rng.integers(1, max(1, p.max_clicks) + 1))
        coords, labels = sample_clicks(first, n, gen)
        prompts[0] = FramePrompt(
            coords.to(first.device), labels.to(first.device), None, corrections
        )
    elif kind == 1:
        coords, labels = sample_boxes(first, gen)
        prompts[0] = FramePrompt(coords, labels, None, corrections)
    else:
        prompts[0] = FramePrompt(mask=first[:, None].float())
    t_len = masks.shape[0]
    if t_len > 1 and p.extra_corrections > 0 and rng.random() < p.p_extra_frame:
        t = int(rng.integers(1, t_len))
        o = first.shape[0]
        prompts[t] = FramePrompt(
            coords=first.new_zeros((o, 0, 2), dtype=torch.float32),
            labels=first.new_zeros((o, 0), dtype=torch.int32),
            corrections=p.extra_corrections,
        )
    return prompts


def scale_prompts(
    prompts: dict[int, FramePrompt], out: ClipOutput, scale: float, size: int
) -> dict[int, FramePrompt]:
    """The student's prompts (and its correction clicks, replayed) for a teacher of another
    input size."""
    scaled: dict[int, FramePrompt] = {}
    for t, p in prompts.items():
        replay = [(c * scale, lab) for c, lab in out.corrections.get(t, [])]
        if p.mask is not None:
            mask = p.mask
            if mask.shape[-1] != size:
                mask = (F.interpolate(mask, size=(size, size), mode="bilinear") >= 0.5).float()
            scaled[t] = FramePrompt(mask=mask)
        else:
            assert p.coords is not None
            scaled[t] = FramePrompt(p.coords * scale, p.labels, None, 0, replay)
    return scaled


@torch.no_grad()
def calibrate_memory_encoder(model: EdgeTAM, images: torch.Tensor, masks: torch.Tensor) -> float:
    """Scale the mask downsampler's last conv so its output is as large as the projected image
    features it is added to; returns the factor applied.

    The memory encoder sums ``pix_feat_proj(features)`` and ``mask_downsampler(mask)``. After
    image-only pre-training the image features are large while the freshly initialized mask
    branch is not (here 33 vs 2.3 per pixel), so memories hardly differ between objects and a
    memory-blind model is the easy optimum. This data-dependent initialization (like LSUV)
    balances the two branches once, before video training; the architecture is unchanged.

    Args:
        images: (N, 3, S, S) normalized frames; masks: (N, S, S) binary masks of objects on them.
    """
    c = model.config
    enc = model.memory_encoder
    top = model.encode_image(images).top
    image_part = enc.pix_feat_proj(top).norm(dim=1).mean()
    mask_in = masks[:, None].float() * c.sigmoid_scale_for_mem_enc + c.sigmoid_bias_for_mem_enc
    mask_part = enc.mask_downsampler(mask_in).norm(dim=1).mean()
    factor = float(image_part / mask_part.clamp(min=1e-6))
    last = enc.mask_downsampler.encoder[-1]
    assert isinstance(last, nn.Conv2d)
    last.weight.mul_(factor)
    if last.bias is not None:
        last.bias.mul_(factor)
    return factor


def _projection(student_dim: int, teacher_dim: int) -> nn.Module:
    if student_dim == teacher_dim:
        return nn.Identity()
    return nn.Conv2d(student_dim, teacher_dim, kernel_size=1)


@dataclass
class StepResult:
    values: dict[str, float]
    seconds: float
    cpu_seconds: float = 0.0


class Trainer:
    """Runs a ``TrainConfig``; ``run()`` returns the path of the exported ``model.pt``."""

    def __init__(
        self,
        cfg: TrainConfig,
        resume: str | Path | None = None,
        progress: bool = True,
        max_steps: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(cfg.device)
        self.progress = progress
        self.max_steps = max_steps  # stop after this many optimizer steps in this process
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        model_cfg = cfg.model.build_config()
        if cfg.model.init:
            self.model = load_checkpoint(cfg.model.init, config=model_cfg)
        else:
            self.model = EdgeTAM(model_cfg)
            if cfg.model.align_prompt_attention > 0:
                align_prompt_attention(self.model, cfg.model.align_prompt_attention)
        self.model.to(self.device).train()
        release_inference_tensors(self.model)
        self.teacher: EdgeTAM | None = None
        self.heads = nn.ModuleDict()
        if cfg.teacher is not None:
            t_cfg = cfg.teacher.config.build_config() if cfg.teacher.config else None
            self.teacher = load_checkpoint(cfg.teacher.checkpoint, config=t_cfg)
            self.teacher.to(self.device).eval().requires_grad_(False)
            release_inference_tensors(self.teacher)
            s_dim, t_dim = model_cfg.hidden_dim, self.teacher.config.hidden_dim
            self.heads["image"] = _projection(s_dim, t_dim)
            self.heads["memory"] = _projection(s_dim, t_dim)
            self.heads.to(self.device)
        self.stage_index = 0
        self.step = 0  # step within the current stage
        self.elapsed = 0.0  # wall seconds spent in training steps (over resumes)
        self.cpu_seconds = 0.0  # process CPU seconds spent in training steps (over resumes)
        self.global_step = 0
        self._optimizer_state: dict[str, Any] | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        # The averaged weights (``ema_decay`` > 0): what is evaluated and exported.
        self.ema: EdgeTAM | None = None
        if cfg.ema_decay > 0:
            self.ema = copy.deepcopy(self.model).requires_grad_(False)
        if resume is not None:
            self._load_state(Path(resume))
        (self.out / "config.yaml").write_text(yaml.safe_dump(to_plain(cfg), sort_keys=False))

    # ------------------------------------------------------------------------------------
    def run(self) -> Path:
        steps_done = 0
        t_start = time.perf_counter()
        for index in range(self.stage_index, len(self.cfg.stages)):
            stage = self.cfg.stages[index]
            if index != self.stage_index:
                self.stage_index, self.step = index, 0
                self._optimizer_state = None
            finished = self._run_stage(stage, steps_done, t_start)
            steps_done += finished[0]
            if not finished[1]:
                self._save_state()
                return self._export()
            save_checkpoint(self._exported(), self.out / f"stage_{stage.name}.pt")
            if self.cfg.eval.num_clips > 0:
                self._evaluate(stage)
            # A state at the stage boundary: a resume starts the next stage afresh (and a
            # changed config for later stages can be run from here).
            self.stage_index, self.step = index + 1, 0
            self._optimizer = None
            self._save_state()
        self.stage_index, self.step = len(self.cfg.stages), 0
        path = self._export()
        self._write_summary()
        return path

    def _run_stage(self, stage: StageSpec, steps_done: int, t_start: float) -> tuple[int, bool]:
        """Train the current stage from ``self.step``; (steps run, stage complete)."""
        self._apply_freeze(stage)
        params = [p for p in self.model.parameters() if p.requires_grad]
        params += [p for p in self.heads.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
        if self._optimizer_state is not None:
            optimizer.load_state_dict(self._optimizer_state)
            self._optimizer_state = None
        self._optimizer = optimizer
        sources = [build_source(d) for d in (stage.data or self.cfg.data)]
        mix = SourceMix(sources, [d.weight for d in (stage.data or self.cfg.data)])
        if stage.calibrate_memory_encoder and self.step == 0:
            self._calibrate(stage, mix)
        bar = _progress(self.progress, stage, self.step)
        last_ckpt = time.perf_counter()
        ran = 0
        try:
            while self.step < stage.steps:
                if self.max_steps is not None and steps_done + ran >= self.max_steps:
                    return ran, False
                lr = lr_at(stage, self.step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                result = self._train_step(stage, mix, optimizer)
                self.step += 1
                self.global_step += 1
                ran += 1
                self.elapsed += result.seconds
                self.cpu_seconds += result.cpu_seconds
                self._log(stage, lr, result)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{result.values['loss']:.3f}", iou=f"{result.values['mean_iou']:.2f}"
                    )
                if time.perf_counter() - last_ckpt >= self.cfg.checkpoint_every_s:
                    self._save_state()
                    self._export()
                    last_ckpt = time.perf_counter()
                every = self.cfg.eval.every_steps
                if every > 0 and self.step % every == 0 and self.step < stage.steps:
                    self._evaluate(stage)
        finally:
            if bar is not None:
                bar.close()
        del t_start
        return ran, True

    def _calibrate(self, stage: StageSpec, mix: SourceMix) -> None:
        rng, _ = step_generators(self.cfg.seed, self.stage_index, 1 << 40)
        size = self.model.config.image_size
        samples = [mix.sample(rng, 1, size) for _ in range(max(4, stage.batch_size))]
        batch = make_batch(samples, stage.max_objects, rng).to(self.device)
        images = self.model.normalize(batch.frames[0]).index_select(0, batch.obj_clip)
        was_training = self.model.training
        self.model.eval()  # BatchNorm running statistics stay untouched
        factor = calibrate_memory_encoder(self.model, images, batch.masks[0])
        self.model.train(was_training)
        self._apply_freeze(stage)
        log.info("%s: memory encoder mask branch scaled by %.2f", stage.name, factor)

    def _apply_freeze(self, stage: StageSpec) -> None:
        for name, p in self.model.named_parameters():
            p.requires_grad_(not stage.is_frozen(name))
        # Frozen BatchNorm keeps its running statistics too.
        for name, module in self.model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train(not stage.is_frozen(name))

    # ------------------------------------------------------------------------------------
    def _train_step(
        self, stage: StageSpec, mix: SourceMix, optimizer: torch.optim.Optimizer
    ) -> StepResult:
        t0, c0 = time.perf_counter(), time.process_time()
        rng, gen = step_generators(self.cfg.seed, self.stage_index, self.step)
        size = self.model.config.image_size
        t_len = 1 if stage.kind == "image" else stage.clip_length
        samples = [mix.sample(rng, t_len, size) for _ in range(stage.batch_size)]
        batch = make_batch(samples, stage.max_objects, rng).to(self.device)
        prompts = sample_prompts(stage, batch.masks, rng, gen)
        targets = batch.masks.float()
        images = self.model.normalize(batch.frames)
        with self._autocast():
            out = run_clip(
                self.model,
                images,
                batch.obj_clip,
                prompts,
                batch.masks,
                gen,
                max_conditioning=stage.max_conditioning,
                detach_memory=stage.detach_memory,
            )
            values, loss = self._losses(stage, out, targets)
            distill = self._distill(stage, batch, prompts, out)
            for key, value in distill.items():
                values[key] = float(value.detach())
            loss = loss + stage.losses.image_distill * distill.get(
                "image_distill", loss.new_zeros(())
            )
            loss = loss + stage.losses.memory_distill * distill.get(
                "memory_distill", loss.new_zeros(())
            )
        optimizer.zero_grad(set_to_none=True)
        if not loss.requires_grad:  # nothing to learn from this batch (e.g. all mask prompts)
            values["loss"] = float(loss)
            return StepResult(values, time.perf_counter() - t0, time.process_time() - c0)
        loss.backward()
        if stage.grad_clip > 0:
            params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, stage.grad_clip)
        optimizer.step()
        self._update_ema()
        values["loss"] = float(loss.detach())
        return StepResult(values, time.perf_counter() - t0, time.process_time() - c0)

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        weight = 1.0 - self.cfg.ema_decay
        for averaged, live in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            averaged.lerp_(live, weight)
        # BatchNorm statistics are already running averages: taken as they are.
        for stats, live_stats in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            stats.copy_(live_stats)

    def _exported(self) -> EdgeTAM:
        """The weights that are evaluated and exported: the average when there is one."""
        return self.model if self.ema is None else self.ema

    def _autocast(self) -> Any:
        if self.cfg.amp and self.device.type in ("cuda", "cpu"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _losses(
        self, stage: StageSpec, out: ClipOutput, targets: torch.Tensor
    ) -> tuple[dict[str, float], torch.Tensor]:
        size = targets.shape[-2:]
        terms: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("dice", "focal", "iou", "occlusion", "mean_iou")
        }
        totals = []
        for pred in out.predictions:
            o, m = pred.masks.shape[:2]
            masks = F.interpolate(
                pred.masks.float(), size=size, mode="bilinear", align_corners=False
            )
            seg = segment_loss(
                masks,
                pred.ious.float(),
                pred.object_score.float(),
                targets[pred.frame],
                stage.losses,
            )
            totals.append(seg.total)
            for key in terms:
                terms[key].append(getattr(seg, key).detach())
            del o, m
        if not totals:
            zero = targets.new_zeros(())
            values = dict.fromkeys(terms, 0.0)
            values.update(image_distill=0.0, memory_distill=0.0)
            return values, zero
        loss = torch.stack(totals).mean()
        values = {k: float(torch.stack(v).mean()) for k, v in terms.items()}
        values["image_distill"] = 0.0
        values["memory_distill"] = 0.0
        return values, loss

    def _distill(
        self,
        stage: StageSpec,
        batch: ClipBatch,
        prompts: dict[int, FramePrompt],
        out: ClipOutput,
    ) -> dict[str, torch.Tensor]:
        teacher = self.teacher
        w = stage.losses
        if teacher is None or (w.image_distill <= 0 and w.memory_distill <= 0):
            return {}
        t_size = teacher.config.image_size
        frames = batch.frames
        if frames.shape[-1] != t_size:
            t_len, b = frames.shape[:2]
            frames = F.interpolate(
                frames.flatten(0, 1), size=(t_size, t_size), mode="bilinear", align_corners=False
            ).unflatten(0, (t_len, b))
        images = teacher.normalize(frames)
        result: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            need_memory = stage.kind == "video" and w.memory_distill > 0 and len(frames) > 1
            if need_memory:
                scale = t_size / self.model.config.image_size
                t_prompts = scale_prompts(prompts, out, scale, t_size)
                t_out = run_clip(teacher, images, batch.obj_clip, t_prompts)
                t_top = t_out.image_top
            else:
                t_top = teacher.encode_image(images.flatten(0, 1)).top
        assert out.image_top is not None and t_top is not None
        if w.image_distill > 0:
            result["image_distill"] = feature_mse(self.heads["image"](out.image_top), t_top)
        if need_memory:
            losses = [
                feature_mse(self.heads["memory"](feat), t_out.memory_attention[t])
                for t, feat in out.memory_attention.items()
                if t in t_out.memory_attention
            ]
            if losses:
                result["memory_distill"] = torch.stack(losses).mean()
        return result

    # ------------------------------------------------------------------------------------
    def _log(self, stage: StageSpec, lr: float, result: StepResult) -> None:
        path = self.out / "losses.csv"
        header = ["stage", "step", "global_step", "seconds", "cpu_seconds", "lr", *LOSS_COLUMNS]
        _migrate_csv(path, header)
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(header)
            writer.writerow(
                [
                    stage.name,
                    self.step,
                    self.global_step,
                    f"{self.elapsed:.2f}",
                    f"{self.cpu_seconds:.2f}",
                    f"{lr:.3g}",
                ]
                + [f"{result.values.get(k, 0.0):.5f}" for k in LOSS_COLUMNS]
            )
        if self.cfg.log_every > 0 and self.global_step % self.cfg.log_every == 0:
            v = result.values
            log.info(
                "%s step %d/%d loss %.4f (dice %.3f focal %.4f iou %.3f occ %.3f img %.4f "
                "mem %.4f) mIoU %.3f lr %.2e %.2fs/step",
                stage.name,
                self.step,
                stage.steps,
                v["loss"],
                v["dice"],
                v["focal"],
                v["iou"],
                v["occlusion"],
                v["image_distill"],
                v["memory_distill"],
                v["mean_iou"],
                lr,
                result.seconds,
            )

    def _evaluate(self, stage: StageSpec) -> None:
        e = self.cfg.eval
        clips = held_out_clips(
            e.num_clips, e.num_frames, e.height, e.width, e.world, seed_base=VALIDATION_SEED_BASE
        )
        t0 = time.perf_counter()
        scores = score_clips(self._exported(), clips)
        self._apply_freeze(stage)  # score_clips restores train mode; keep frozen BN in eval
        log.info("eval after %s step %d: %s", stage.name, self.step, scores.line())
        path = self.out / "eval.csv"
        new = not path.exists()
        jf = scores.jf
        with open(path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(
                    [
                        "stage",
                        "step",
                        "global_step",
                        "seconds",
                        "jf",
                        "j",
                        "f",
                        "jf_after_occlusion",
                        "jf_after_reentry",
                        "jf_absent",
                        "eval_seconds",
                    ]
                )
            writer.writerow(
                [
                    stage.name,
                    self.step,
                    self.global_step,
                    f"{self.elapsed:.1f}",
                    f"{jf['overall']:.4f}",
                    f"{scores.j['overall']:.4f}",
                    f"{scores.f['overall']:.4f}",
                    f"{jf['after_occlusion']:.4f}",
                    f"{jf['after_reentry']:.4f}",
                    f"{jf['absent']:.4f}",
                    f"{time.perf_counter() - t0:.1f}",
                ]
            )

    # ------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "model_config": self.model.config.to_dict(),
            "heads": {k: v.detach().cpu() for k, v in self.heads.state_dict().items()},
            "ema": None
            if self.ema is None
            else {k: v.detach().cpu() for k, v in self.ema.state_dict().items()},
            "optimizer": None if self._optimizer is None else self._optimizer.state_dict(),
            "stage_index": self.stage_index,
            "step": self.step,
            "global_step": self.global_step,
            "elapsed": self.elapsed,
            "cpu_seconds": self.cpu_seconds,
            "seed": self.cfg.seed,
        }

    def _save_state(self) -> Path:
        path = self.out / "state.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(self._state(), tmp)
        tmp.replace(path)
        plot_losses(self.out / "losses.csv", self.out / "losses.png")
        return path

    def _load_state(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"{path}: not a training state of this version")
        self.model.load_state_dict(state["model"], strict=True)
        self.heads.load_state_dict(state["heads"], strict=True)
        if self.ema is not None:
            # A state saved without an average (or by an older version) starts one here.
            self.ema.load_state_dict(state.get("ema") or state["model"], strict=True)
        self.stage_index = int(state["stage_index"])
        self.step = int(state["step"])
        self.global_step = int(state["global_step"])
        self.elapsed = float(state["elapsed"])
        self.cpu_seconds = float(state.get("cpu_seconds", 0.0))
        self._optimizer_state = state["optimizer"]
        _truncate_csv(self.out / "losses.csv", self.global_step)
        _truncate_csv(self.out / "eval.csv", self.global_step)

    def _export(self) -> Path:
        return save_checkpoint(self._exported(), self.out / "model.pt")

    def _write_summary(self) -> None:
        summary = {
            "steps": self.global_step,
            "train_seconds": round(self.elapsed, 1),
            "train_cpu_seconds": round(self.cpu_seconds, 1),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "model_config": self.model.config.to_dict(),
        }
        evals = self.out / "eval.csv"
        if evals.exists():
            with open(evals) as fh:
                rows = list(csv.DictReader(fh))
            if rows:
                summary["last_eval"] = rows[-1]
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))


def _migrate_csv(path: Path, header: list[str]) -> None:
    """Rewrite a log written with other columns (an older version) under ``header``."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
        old = rows[0].keys() if rows else None
    if old is None or list(old) == header:
        return
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, restval="0")
        writer.writeheader()
        writer.writerows({k: r.get(k, "0") for k in header} for r in rows)


def _truncate_csv(path: Path, global_step: int) -> None:
    """Drop log rows written after the resumed state (they will be written again)."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    col = header.index("global_step")
    kept = [r for r in body if int(r[col]) <= global_step]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(kept)


def plot_losses(csv_path: Path, png_path: Path) -> Path | None:
    """Loss curves (total and components, smoothed) from ``losses.csv``; None without
    matplotlib or data."""
    if not csv_path.exists():
        return None
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError:  # plotting is optional
        log.warning("matplotlib is not installed: no loss plot")
        return None
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    x = np.array([int(r["global_step"]) for r in rows])
    fig = Figure(figsize=(10, 6), dpi=100)
    axes = fig.subplots(2, 1, sharex=True)
    for key in LOSS_COLUMNS[:-1]:
        y = np.array([float(r.get(key) or 0.0) for r in rows])
        if not np.any(y):
            continue
        axes[0].plot(x, _smooth(y), label=key)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("loss (smoothed)")
    axes[0].legend(fontsize="small", ncol=4)
    axes[0].grid(True, alpha=0.3)
    axes[1].plot(x, _smooth(np.array([float(r["mean_iou"]) for r in rows])), color="k")
    axes[1].set_ylabel("train IoU (smoothed)")
    axes[1].set_xlabel("step")
    axes[1].grid(True, alpha=0.3)
    stages = [r["stage"] for r in rows]
    for i in range(1, len(stages)):
        if stages[i] != stages[i - 1]:
            for ax in axes:
                ax.axvline(x[i], color="grey", linestyle="--", linewidth=0.8)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path)
    return png_path


def _smooth(y: np.ndarray, window: int = 25) -> np.ndarray:
    if len(y) < 3:
        return y
    w = min(window, len(y))
    kernel = np.ones(w) / w
    padded = np.concatenate([np.full(w - 1, y[0]), y])
    return np.convolve(padded, kernel, mode="valid")


def _progress(enabled: bool, stage: StageSpec, start: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=stage.steps, initial=start, desc=stage.name, dynamic_ncols=True)
