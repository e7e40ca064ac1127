"""Clip augmentations: horizontal flip, affine, colour jitter, grayscale.

Geometry is the same for every frame of a clip (objects must stay consistent); colour has a
per-clip draw plus a small per-frame wobble. Frames are (T, H, W, 3) uint8 RGB, labels (T, H,
W) integer object ids; both are returned as new arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges; set a probability to 0 to switch an augmentation off."""

    p_flip: float = 0.5
    p_affine: float = 0.5
    degrees: float = 20.0
    scale: tuple[float, float] = (0.8, 1.2)
    aspect: tuple[float, float] = (0.85, 1.15)  # extra x/y scale ratio
    translate: float = 0.1
    shear: float = 8.0
    p_color: float = 0.8
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.04  # fraction of the hue circle
    frame_wobble: float = 0.03  # per-frame brightness change
    p_grayscale: float = 0.05


def augment_clip(
    frames: np.ndarray, labels: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    frames = np.ascontiguousarray(frames)
    labels = np.ascontiguousarray(labels)
    if rng.random() < cfg.p_flip:
        frames = np.ascontiguousarray(frames[:, :, ::-1])
        labels = np.ascontiguousarray(labels[:, :, ::-1])
    if rng.random() < cfg.p_affine:
        frames, labels = _affine(frames, labels, rng, cfg)
    if rng.random() < cfg.p_color:
        frames = _color(frames, rng, cfg)
    if rng.random() < cfg.p_grayscale:
        grey = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        frames = np.repeat(np.clip(grey + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    return frames, labels


def _affine(
    frames: np.ndarray, labels: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    _, h, w, _ = frames.shape
    angle = math.radians(rng.uniform(-cfg.degrees, cfg.degrees))
    scale = rng.uniform(*cfg.scale)
    ratio = math.sqrt(rng.uniform(*cfg.aspect))
    sx, sy = scale * ratio, scale / ratio
    shear = math.tan(math.radians(rng.uniform(-cfg.shear, cfg.shear)))
    tx = rng.uniform(-cfg.translate, cfg.translate) * w
    ty = rng.uniform(-cfg.translate, cfg.translate) * h
    cos, sin = math.cos(angle), math.sin(angle)
    linear = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1, shear], [0, 1]])
    linear = linear @ np.diag([sx, sy])
    centre = np.array([w / 2, h / 2])
    offset = centre + np.array([tx, ty]) - linear @ centre
    matrix = np.concatenate([linear, offset[:, None]], axis=1).astype(np.float32)
    out_f = np.empty_like(frames)
    out_l = np.empty_like(labels)
    # Uncovered borders get the clip's mean colour (a reflected border would mirror objects
    # without labelling them) and background labels.
    fill = tuple(float(v) for v in frames.reshape(-1, 3).mean(axis=0))
    for t in range(frames.shape[0]):
        out_f[t] = cv2.warpAffine(
            frames[t],
            matrix,
            (w, h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=fill,
        )
        out_l[t] = cv2.warpAffine(
            labels[t], matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT
        )
    return out_f, out_l


def _color(frames: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    x = frames.astype(np.float32) / 255.0
    b = 1 + rng.uniform(-cfg.brightness, cfg.brightness)
    c = 1 + rng.uniform(-cfg.contrast, cfg.contrast)
    s = 1 + rng.uniform(-cfg.saturation, cfg.saturation)
    hue = rng.uniform(-cfg.hue, cfg.hue)
    wobble = 1 + rng.uniform(-cfg.frame_wobble, cfg.frame_wobble, size=(x.shape[0], 1, 1, 1))
    x = x * b * wobble.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * c + mean
    grey = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    x = (x - grey) * s + grey
    if hue != 0.0:
        x = _rotate_hue(x, hue)
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _rotate_hue(x: np.ndarray, fraction: float) -> np.ndarray:
    """Rotate RGB around the grey axis by ``fraction`` of a full turn (a cheap hue shift)."""
    theta = 2 * math.pi * fraction
    cos, sin = math.cos(theta), math.sin(theta)
    k = 1.0 / 3.0
    sq = math.sqrt(k)
    m = np.array(
        [
            [cos + (1 - cos) * k, k * (1 - cos) - sq * sin, k * (1 - cos) + sq * sin],
            [k * (1 - cos) + sq * sin, cos + k * (1 - cos), k * (1 - cos) - sq * sin],
            [k * (1 - cos) - sq * sin, k * (1 - cos) + sq * sin, cos + k * (1 - cos)],
        ],
        dtype=np.float32,
    )
    return x @ m.T
