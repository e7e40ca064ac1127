"""Training pipeline (edgetam_core.train) on a 64 px model: losses, prompts, data readers, the
training forward against the real Tracker, learning, resume, distillation, outputs that track."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from edgetam_core.checkpoint import build_default_model, load_checkpoint, save_checkpoint
from edgetam_core.config import EdgeTAMConfig
from edgetam_core.io import write_label_png
from edgetam_core.model.edgetam import EdgeTAM
from edgetam_core.synthetic import make_world_clip
from edgetam_core.tracker import Tracker
from edgetam_core.train.config import ConfigError, TrainConfig, build, load_train_config
from edgetam_core.train.data import (
    ImageFolderSource,
    SyntheticVideoSource,
    VideoFolderSource,
    make_batch,
    mask_to_rle,
    rle_decode_string,
    rle_encode_string,
    rle_to_mask,
)
from edgetam_core.train.forward import FramePrompt, run_clip
from edgetam_core.train.init import align_prompt_attention
from edgetam_core.train.losses import LossWeights, dice_loss, focal_loss, mask_iou, segment_loss
from edgetam_core.train.prompts import sample_boxes, sample_clicks, sample_correction
from edgetam_core.train.trainer import Trainer, step_generators
from edgetam_core.types import Prompt

REPO = Path(__file__).resolve().parents[1]

SMALL = {
    "image_size": 64,
    "backbone_channels": [16, 32, 64, 128],
    "trunk_depth": [1, 1, 1, 1],
    "hidden_dim": 64,
    "mem_dim": 32,
    "num_latents": 4,
    "num_latents_2d": 4,
    "perceiver_dim_head": 32,
    "memory_attention_ffn_dim": 128,
    "mask_decoder_mlp_dim": 128,
    "iou_head_hidden_dim": 64,
}


def small_config(**changes: Any) -> EdgeTAMConfig:
    values = EdgeTAMConfig().to_dict()
    values.update(SMALL)
    values.update(changes)
    return EdgeTAMConfig.from_dict(values)


def train_config(out: Path, **top: Any) -> TrainConfig:
    raw: dict[str, Any] = {
        "seed": 3,
        "threads": 1,
        "out_dir": str(out),
        "checkpoint_every_s": 1e9,
        "model": {"overrides": dict(SMALL)},
        "eval": {"num_clips": 0},
        "stages": [
            {
                "name": "img",
                "kind": "image",
                "steps": 2,
                "batch_size": 2,
                "warmup_steps": 1,
                "prompts": {"corrections": [1, 1]},
                "data": [{"kind": "synthetic_image"}],
            },
            {
                "name": "vid",
                "steps": 2,
                "batch_size": 2,
                "clip_length": 3,
                "warmup_steps": 1,
                "prompts": {"p_extra_frame": 1.0},
            },
        ],
    }
    raw.update(top)
    cfg: TrainConfig = build(TrainConfig, raw)
    return cfg


# Losses ------------------------------------------------------------------------------------------
def test_mask_losses() -> None:
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    perfect = target * 40 - 20
    assert float(dice_loss(perfect, target)) < 1e-3
    assert float(focal_loss(perfect, target)) < 1e-6
    assert float(dice_loss(-perfect, target)) > 0.9
    assert float(mask_iou(perfect, target)) == 1.0
    assert float(mask_iou(-torch.ones(1, 4, 4) * 5, torch.zeros(1, 4, 4))) == 1.0  # both empty


def test_segment_loss_takes_best_candidate_and_skips_absent_objects() -> None:
    target = torch.zeros(2, 8, 8)
    target[0, :4] = 1  # object 0 present, object 1 absent
    good = target[0] * 40 - 20
    masks = torch.stack([torch.stack([-good, good]), torch.stack([good, good])])  # (2, 2, 8, 8)
    ious = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    score = torch.tensor([10.0, -10.0])
    out = segment_loss(masks, ious, score, target, LossWeights())
    assert float(out.dice) < 1e-3 and float(out.iou) < 0.51  # candidate 1 is the right one
    assert float(out.occlusion) < 1e-3 and float(out.mean_iou) == 1.0
    absent_only = segment_loss(masks[1:], ious[1:], score[1:], target[1:], LossWeights())
    assert float(absent_only.dice) == 0.0 and float(absent_only.total) < 1e-3
    # Optionally the other candidates are pulled onto the object too.
    spread = segment_loss(masks, ious, score, target, LossWeights(other_candidates=0.5))
    assert float(spread.dice) == pytest.approx(0.5 * float(dice_loss(-good, target[0])), abs=1e-3)


# Prompts -----------------------------------------------------------------------------------------
def test_prompt_sampling() -> None:
    gen = torch.Generator().manual_seed(0)
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[0, 4:10, 5:20] = True
    masks[1, 20:30, 20:30] = True  # masks[2] is empty
    coords, labels = sample_clicks(masks, 4, gen)
    for o in range(2):
        xi, yi = coords[o, :, 0].long(), coords[o, :, 1].long()
        assert masks[o, yi, xi].all() and (labels[o] == 1).all()
    assert (labels[2] == -1).all()
    corners, corner_labels = sample_boxes(masks[:2], gen, noise=0.0)
    assert corners[0].tolist() == [[5.0, 4.0], [20.0, 10.0]] and corner_labels[0].tolist() == [2, 3]
    pred = masks.clone()
    pred[0, 4:10, 15:20] = False  # a false negative region
    pred[1, 0:3, 0:3] = True  # a false positive region
    c, lab = sample_correction(pred, masks, gen)
    assert lab[:, 0].tolist() == [1, 0, -1]
    assert 15 <= c[0, 0, 0] < 20 and c[1, 0, 0] < 3 and c[1, 0, 1] < 3


# Data --------------------------------------------------------------------------------------------
def test_rle_strings() -> None:
    assert rle_decode_string("054") == [0, 5, 4]
    assert rle_decode_string("T3") == [100]
    assert rle_encode_string([100]) == "T3"
    runs = [10, 20, 10, 15, 3, 1000, 2]  # later runs are stored as differences, some negative
    assert rle_decode_string(rle_encode_string(runs)) == runs
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.random((13, 17)) > 0.6
        np.testing.assert_array_equal(rle_to_mask(mask_to_rle(mask)), mask)
    mask = np.zeros((3, 2), dtype=bool)
    mask[1:, 0] = True  # column-major: runs 1 off, 2 on, 3 off
    assert rle_to_mask({"size": [3, 2], "counts": [1, 2, 3]}).tolist() == mask.tolist()


def _write_image(path: Path, size: tuple[int, int], seed: int) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    Image.fromarray(img).save(path)
    return img


def test_image_folder_readers(tmp_path: Path) -> None:
    sa1b = tmp_path / "sa1b"
    sa1b.mkdir()
    _write_image(sa1b / "sa_1.jpg", (40, 50), 0)
    m1 = np.zeros((40, 50), dtype=bool)
    m1[5:20, 5:30] = True
    anns = [
        {"segmentation": mask_to_rle(m1)},
        {"segmentation": [[30, 25, 45, 25, 45, 38, 30, 38]]},  # a polygon
    ]
    (sa1b / "sa_1.json").write_text(json.dumps({"annotations": anns}))
    src = ImageFolderSource(str(sa1b), augment=None)
    sample = src.sample(np.random.default_rng(0), 1, 32)
    assert sample is not None and sample.frames.shape == (1, 32, 32, 3)
    assert sample.object_ids == [1, 2] and set(np.unique(sample.labels)) == {0, 1, 2}

    folders = tmp_path / "pngs"
    (folders / "images").mkdir(parents=True)
    (folders / "masks").mkdir()
    _write_image(folders / "images" / "a.png", (30, 30), 1)
    lab = np.zeros((30, 30), dtype=np.uint8)
    lab[3:12, 3:12] = 4
    write_label_png(folders / "masks" / "a.png", lab)
    sample = ImageFolderSource(str(folders), augment=None).sample(np.random.default_rng(0), 1, 30)
    assert sample is not None and sample.object_ids == [4]


def test_video_folder_reader(tmp_path: Path) -> None:
    root = tmp_path / "davis"
    (root / "JPEGImages" / "v").mkdir(parents=True)
    (root / "Annotations" / "v").mkdir(parents=True)
    for k in range(4):
        _write_image(root / "JPEGImages" / "v" / f"{k:05d}.jpg", (24, 32), k)
        lab = np.zeros((24, 32), dtype=np.uint8)
        lab[4 + k : 12 + k, 4:14] = 1
        lab[14:20, 20:28] = 2
        if k != 2:  # frame 2 is not annotated: skipped
            write_label_png(root / "Annotations" / "v" / f"{k:05d}.png", lab)
    src = VideoFolderSource(str(root), augment=None, max_stride=1)
    assert len(src.videos[0]) == 3
    sample = src.sample(np.random.default_rng(1), 5, 32)  # longer than the video: ping-pong
    assert sample is not None and sample.frames.shape == (5, 32, 32, 3)
    assert sample.object_ids == [1, 2]


def test_synthetic_batches_are_deterministic() -> None:
    src = SyntheticVideoSource()
    a = src.sample(np.random.default_rng(5), 3, 48)
    b = src.sample(np.random.default_rng(5), 3, 48)
    assert a is not None and b is not None
    np.testing.assert_array_equal(a.frames, b.frames)
    batch = make_batch([a, b], max_objects=2, rng=np.random.default_rng(0))
    assert batch.frames.shape == (3, 2, 3, 48, 48)
    assert batch.masks.shape[1] == batch.obj_clip.shape[0] <= 4
    assert batch.masks[0].flatten(1).any(dim=1).all()  # every object visible on frame 0


def test_config_files_parse() -> None:
    cfg = load_train_config(REPO / "config" / "train" / "demo.yaml")
    assert [s.kind for s in cfg.stages][:2] == ["image", "video"]
    assert cfg.model.build_config().image_size == 128
    aligned = load_train_config(REPO / "config" / "train" / "demo_aligned.yaml")
    assert aligned.model.align_prompt_attention == 2.0
    assert aligned.model.build_config() == cfg.model.build_config()
    long = load_train_config(REPO / "config" / "train" / "demo_long.yaml")
    assert long.model.build_config() == cfg.model.build_config()
    assert long.model.init is not None
    assert (REPO / long.model.init).is_file()  # fine-tunes the bundled model
    assert [s.kind for s in long.stages][:2] == ["image", "video"]
    assert max(s.clip_length for s in long.stages) == 32
    long2 = load_train_config(REPO / "config" / "train" / "demo_long2.yaml")
    assert long2.model.build_config() == cfg.model.build_config()
    assert long2.model.init is not None and (REPO / long2.model.init).is_file()
    assert [(s.kind, s.clip_length) for s in long2.stages] == [("video", 32)]
    iou = load_train_config(REPO / "config" / "train" / "demo_iou.yaml")
    (head_stage,) = iou.stages
    model = EdgeTAM(iou.model.build_config())
    trainable = {
        name
        for name, _ in model.named_parameters()
        if not head_stage.is_frozen(name)
    }
    head = "sam_mask_decoder.iou_prediction_head."
    assert trainable and all(n.startswith(head) for n in trainable)
    with pytest.raises(ConfigError, match="unknown keys"):
        build(TrainConfig, {"stages": [{"name": "a", "stepz": 3}]})
    with pytest.raises(ConfigError, match="unknown EdgeTAMConfig"):
        build(TrainConfig, {"model": {"overrides": {"widht": 3}}, "stages": [{"name": "a"}]})


# The training forward mirrors the tracker ---------------------------------------------------------
def test_training_forward_matches_tracker() -> None:
    config = small_config(fill_hole_area=0)  # the training forward does no hole filling
    model = build_default_model(config=config, seed=1)
    clip = make_world_clip(5, 64, 64, seed=11)
    oids = clip.object_ids
    tracker = Tracker(model, max_objects=4, memory_dtype=torch.float32)
    expected = []
    for k, frame in enumerate(clip.frames):
        prompts = (
            [Prompt.from_clicks(o, [list(clip.clicks[o])], [1]) for o in oids] if k == 0 else []
        )
        result = tracker.step(frame, prompts)
        expected.append(np.stack([result.objects[o].low_res_logits for o in oids]))
    frames = torch.from_numpy(np.stack(clip.frames)).permute(0, 3, 1, 2).float()[:, None] / 255
    coords = torch.tensor([[clip.clicks[o]] for o in oids], dtype=torch.float32)
    labels = torch.ones(len(oids), 1, dtype=torch.int32)
    with torch.no_grad():
        out = run_clip(
            model.eval(),
            model.normalize(frames),
            torch.zeros(len(oids), dtype=torch.long),
            {0: FramePrompt(coords, labels)},
        )
    assert np.std(expected[-1]) > 1e-3  # not a constant (object judged absent) output
    for k, logits in enumerate(out.frame_logits):
        np.testing.assert_allclose(logits[:, 0].numpy(), expected[k], atol=2e-3, rtol=1e-3)


# Training ----------------------------------------------------------------------------------------
def test_training_steps_reduce_the_loss_on_a_fixed_batch(tmp_path: Path) -> None:
    cfg = train_config(tmp_path)
    trainer = Trainer(cfg, progress=False)
    stage = cfg.stages[1]
    rng, gen = step_generators(0, 1, 0)
    samples = [SyntheticVideoSource().sample(rng, 3, 64) for _ in range(2)]
    batch = make_batch([s for s in samples if s is not None], 2, rng)
    prompts = {0: _click_prompt(batch.masks, gen)}
    model = trainer.model
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        out = run_clip(model, model.normalize(batch.frames), batch.obj_clip, prompts)
        _, loss = trainer._losses(stage, out, batch.masks.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


def _click_prompt(masks: torch.Tensor, gen: torch.Generator) -> FramePrompt:
    coords, labels = sample_clicks(masks[0], 1, gen)
    return FramePrompt(coords, labels)


def test_resume_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    full = Trainer(train_config(tmp_path / "full"), progress=False)
    full.run()
    first = Trainer(train_config(tmp_path / "split"), progress=False, max_steps=3)
    first.run()  # stops inside the video stage
    assert (first.stage_index, first.step) == (1, 1)
    second = Trainer(
        train_config(tmp_path / "split"), resume=tmp_path / "split" / "state.pt", progress=False
    )
    second.run()
    for (name, a), b in zip(
        full.model.state_dict().items(), second.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
    # The log continues where it stopped: the same losses as the uninterrupted run.
    assert _losses_logged(tmp_path / "split") == _losses_logged(tmp_path / "full")
    # The exported model loads strictly with its config and tracks.
    model = load_checkpoint(tmp_path / "split" / "model.pt")
    assert model.config == small_config()
    clip = make_world_clip(3, 48, 64, seed=2)
    tracker = Tracker(model)
    result = tracker.step(clip.frames[0], [clip.click_prompt(clip.object_ids[0])])
    result = tracker.step(clip.frames[1])
    assert result.objects[clip.object_ids[0]].logits.shape == (48, 64)
    assert (tmp_path / "split" / "losses.png").exists()
    assert (tmp_path / "split" / "stage_img.pt").exists()


def _losses_logged(run: Path) -> list[list[str]]:
    rows = (run / "losses.csv").read_text().splitlines()
    header = rows[0].split(",")
    keep = [i for i, name in enumerate(header) if "seconds" not in name]
    return [[r.split(",")[i] for i in keep] for r in rows]


def test_distillation_from_a_wider_teacher(tmp_path: Path) -> None:
    teacher = EdgeTAM(small_config(image_size=96, hidden_dim=128, mem_dim=32))
    save_checkpoint(teacher, tmp_path / "teacher.pt")
    stages = [
        {
            "name": "img",
            "kind": "image",
            "steps": 1,
            "batch_size": 2,
            "losses": {"image_distill": 1.0},
            "data": [{"kind": "synthetic_image"}],
        },
        {
            "name": "vid",
            "steps": 1,
            "batch_size": 1,
            "clip_length": 3,
            "losses": {"image_distill": 0.5, "memory_distill": 0.5},
            "prompts": {"p_click": 1.0, "p_box": 0.0, "p_mask": 0.0, "corrections": [1, 1]},
            "freeze": ["image_encoder.trunk"],
        },
    ]
    cfg = train_config(
        tmp_path / "run", teacher={"checkpoint": str(tmp_path / "teacher.pt")}, stages=stages
    )
    trainer = Trainer(cfg, progress=False)
    trainer.run()
    rows = (tmp_path / "run" / "losses.csv").read_text().splitlines()
    header = rows[0].split(",")
    img = [float(r.split(",")[header.index("image_distill")]) for r in rows[1:]]
    mem = [float(r.split(",")[header.index("memory_distill")]) for r in rows[1:]]
    assert all(v > 0 for v in img) and mem[-1] > 0 and mem[0] == 0
    assert isinstance(trainer.heads["image"], torch.nn.Conv2d)  # 64 -> 128 channels
    # The trunk was frozen in the video stage (weights and BatchNorm statistics).
    after_image = torch.load(tmp_path / "run" / "stage_img.pt", weights_only=True)["model"]
    final = trainer.model.state_dict()
    for key, value in after_image.items():
        if key.startswith("image_encoder.trunk."):
            torch.testing.assert_close(final[key], value, msg=key)
        elif key == "memory_attention.norm.weight":
            assert not torch.equal(final[key], value)  # the rest did train


def test_rosbag_source(tmp_path: Path) -> None:
    from edgetam_core.train.data import RosbagSource
    from edgetam_ros.bag.from_frames import frames_to_bag

    clip = make_world_clip(4, 40, 48, seed=4)
    truth = {k: clip.labels[k] for k in (0, 1, 3)}  # frame 2 has no label image: skipped
    frames_to_bag(clip.frames, tmp_path / "bag", num_frames=4, ground_truth=truth)
    src = RosbagSource(str(tmp_path / "bag"), augment=None, max_stride=1)
    assert len(src) == 3
    np.testing.assert_array_equal(src.labels[2], clip.labels[3])
    sample = src.sample(np.random.default_rng(0), 2, 32)
    assert sample is not None and sample.frames.shape == (2, 32, 32, 3)
    assert sample.object_ids and set(sample.object_ids) <= set(np.unique(sample.labels[0]).tolist())


def test_release_checkpoint_is_half_size_and_loads(tmp_path: Path) -> None:
    from edgetam_core.train.release import write_release_checkpoint

    model = build_default_model(config=small_config())
    full = save_checkpoint(model, tmp_path / "full.pt")
    half = write_release_checkpoint(full, tmp_path / "half.pt")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_checkpoint(half)
    assert loaded.config == model.config
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert b.dtype == a.dtype, k
        torch.testing.assert_close(b, a, atol=1e-2, rtol=1e-3, msg=k)


def test_calibrate_memory_encoder_balances_the_two_branches() -> None:
    from edgetam_core.train.trainer import calibrate_memory_encoder

    model = EdgeTAM(small_config()).eval()
    images = torch.randn(2, 3, 64, 64)
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[:, 10:30, 12:40] = True
    factor = calibrate_memory_encoder(model, images, masks)
    assert factor > 0
    enc = model.memory_encoder
    with torch.no_grad():
        top = model.encode_image(images).top
        image_part = enc.pix_feat_proj(top).norm(dim=1).mean()
        mask_part = enc.mask_downsampler(masks[:, None].float() * 20 - 10).norm(dim=1).mean()
    assert float(mask_part / image_part) == pytest.approx(1.0, rel=1e-3)


def test_synthetic_windows_of_long_worlds() -> None:
    src = SyntheticVideoSource(world_frames=24, max_stride=2, augment=None)
    rng = np.random.default_rng(3)
    samples = [src.sample(rng, 4, 48) for _ in range(6)]
    got = [s for s in samples if s is not None]
    assert got, "every window was rejected"
    for s in got:
        assert s.frames.shape == (4, 48, 48, 3)
        assert all((s.labels[0] == oid).any() for oid in s.object_ids)


def test_occlusion_loss_weights_absent_items() -> None:
    from edgetam_core.train.losses import occlusion_loss

    scores = torch.tensor([2.0, 2.0, 2.0, 2.0])
    present = torch.tensor([True, True, True, False])
    plain = occlusion_loss(scores, present)
    weighted = occlusion_loss(scores, present, absent_weight=3.0)
    bce_p = torch.nn.functional.softplus(torch.tensor(-2.0))  # -log sigmoid(2)
    bce_a = torch.nn.functional.softplus(torch.tensor(2.0))  # -log (1 - sigmoid(2))
    torch.testing.assert_close(plain, (3 * bce_p + bce_a) / 4)
    torch.testing.assert_close(weighted, (3 * bce_p + 3 * bce_a) / 6)
    # "Always present" is no longer the cheapest constant answer once absence is weighted.
    assert float(occlusion_loss(torch.zeros(4), present, 3.0)) < float(weighted)


def test_align_prompt_attention_ties_keys_to_queries(tmp_path: Path) -> None:
    model = EdgeTAM(small_config())
    transformer = model.sam_mask_decoder.transformer
    before = transformer.final_attn_token_to_image.q_proj.weight.clone()
    self_attn = transformer.layers[0].self_attn.k_proj.weight.clone()
    changed = align_prompt_attention(model, 2.0)
    assert changed == 1 + 2 * len(transformer.layers)
    for attention in [transformer.final_attn_token_to_image] + [
        a
        for layer in transformer.layers
        for a in (layer.cross_attn_token_to_image, layer.cross_attn_image_to_token)
    ]:
        torch.testing.assert_close(attention.k_proj.weight, attention.q_proj.weight)
    torch.testing.assert_close(transformer.final_attn_token_to_image.q_proj.weight, 2 * before)
    # Self-attention among tokens is not a prompt-to-image lookup: left as it was.
    torch.testing.assert_close(transformer.layers[0].self_attn.k_proj.weight, self_attn)
    # W_q^T W_k is then positive semi-definite: a position encoding scores highest against
    # itself, which is what lets a click find its place before anything is learned.
    final = transformer.final_attn_token_to_image
    scores = final.q_proj.weight.T @ final.k_proj.weight
    assert torch.linalg.eigvalsh((scores + scores.T) / 2).min() > -1e-4
    with pytest.raises(ValueError, match="must be > 0"):
        align_prompt_attention(model, 0.0)
    with pytest.raises(ConfigError, match="align_prompt_attention must be >= 0"):
        build(TrainConfig, {"model": {"align_prompt_attention": -1}, "stages": [{"name": "a"}]})
    # The trainer applies it to a model built from scratch.
    trainer = Trainer(
        train_config(tmp_path, model={"overrides": dict(SMALL), "align_prompt_attention": 1.5}),
        progress=False,
        max_steps=0,
    )
    t = trainer.model.sam_mask_decoder.transformer
    torch.testing.assert_close(
        t.final_attn_token_to_image.k_proj.weight, t.final_attn_token_to_image.q_proj.weight
    )


def test_bf16_autocast_training_on_cpu(tmp_path: Path) -> None:
    cfg = train_config(tmp_path, amp=True)
    trainer = Trainer(cfg, progress=False, max_steps=1)
    with trainer._autocast():
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    trainer.run()
    header, row = _losses_logged(tmp_path)
    assert np.isfinite(float(row[header.index("loss")]))


def test_training_eval_uses_validation_not_held_out_clips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgetam_core.train.trainer as trainer_module
    from edgetam_core.train.data import TRAIN_SEED_LIMIT
    from edgetam_core.train.evaluate import HELD_OUT_SEED_BASE, VALIDATION_SEED_BASE

    # The three seed ranges do not overlap (well over 10**8 validation clips fit).
    assert TRAIN_SEED_LIMIT <= VALIDATION_SEED_BASE < VALIDATION_SEED_BASE + 10**8
    assert VALIDATION_SEED_BASE + 10**8 < HELD_OUT_SEED_BASE
    seen: list[int] = []
    real = trainer_module.held_out_clips

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["seed_base"])
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "held_out_clips", spy)
    cfg = train_config(tmp_path, eval={"num_clips": 1, "num_frames": 2, "height": 48, "width": 64})
    Trainer(cfg, progress=False).run()
    assert seen and set(seen) == {VALIDATION_SEED_BASE}
    assert (tmp_path / "eval.csv").exists()


def test_synthetic_scores_of_oracle_and_swapped_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgetam_core.train.evaluate as evaluate

    clip = next(
        c
        for c in evaluate.held_out_clips(12, 10, 48, 64, seed_base=evaluate.VALIDATION_SEED_BASE)
        if len(c.object_ids) >= 2
    )
    model = EdgeTAM(small_config())

    def oracle(_model: EdgeTAM, c: Any) -> dict[int, list[np.ndarray]]:
        return {o: [lab == o for lab in c.labels] for o in c.object_ids}

    monkeypatch.setattr(evaluate, "track_clip", oracle)
    perfect = evaluate.score_clips(model, [clip])
    assert perfect.jf["overall"] == 1.0 and perfect.wrong_object == 0.0
    assert perfect.counts["overall"] == len(clip.object_ids) * (len(clip.frames) - 1)

    a, b = clip.object_ids[:2]

    def swapped(_model: EdgeTAM, c: Any) -> dict[int, list[np.ndarray]]:
        masks = oracle(_model, c)
        masks[a], masks[b] = masks[b], masks[a]  # the two objects' masks exchanged
        return masks

    monkeypatch.setattr(evaluate, "track_clip", swapped)
    swap = evaluate.score_clips(model, [clip])
    assert swap.jf["overall"] < perfect.jf["overall"]
    assert swap.wrong_object > 0.3
    assert "on another object" in swap.line()
    assert swap.as_dict()["wrong_object"] == round(swap.wrong_object, 4)


def test_ema_weights_are_evaluated_exported_and_resumed(tmp_path: Path) -> None:
    stages = [
        {
            "name": "img",
            "kind": "image",
            "steps": 3,
            "batch_size": 2,
            "warmup_steps": 1,
            "lr": 1e-2,
            "data": [{"kind": "synthetic_image"}],
        }
    ]
    with pytest.raises(ConfigError, match="ema_decay"):
        train_config(tmp_path / "bad", ema_decay=1.0, stages=stages)
    cfg = train_config(tmp_path / "split", ema_decay=0.5, stages=stages)
    first = Trainer(cfg, progress=False, max_steps=1)
    initial = {k: v.clone() for k, v in first.model.state_dict().items()}
    first.run()
    live = torch.load(tmp_path / "split" / "state.pt", weights_only=True)["model"]
    exported = load_checkpoint(tmp_path / "split" / "model.pt").state_dict()
    moved = 0
    for name, _ in first.model.named_parameters():
        # One step: the average is halfway between the initial and the trained weights.
        torch.testing.assert_close(exported[name], 0.5 * initial[name] + 0.5 * live[name])
        moved += int(not torch.equal(exported[name], live[name]))
    assert moved > 0  # the export is the average, not the live weights
    Trainer(cfg, resume=tmp_path / "split" / "state.pt", progress=False).run()
    full = Trainer(train_config(tmp_path / "full", ema_decay=0.5, stages=stages), progress=False)
    full.run()
    a = load_checkpoint(tmp_path / "full" / "model.pt").state_dict()
    b = load_checkpoint(tmp_path / "split" / "model.pt").state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)
    assert full.ema is not None
    for name, p in full.ema.state_dict().items():
        torch.testing.assert_close(a[name], p, msg=name)
