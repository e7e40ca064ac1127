"""Training and distillation of EdgeTAM (stage 1: images, stage 2: videos).

``edgetam-train --config config/train/<name>.yaml`` runs a YAML-described sequence of stages
(see ``docs/training.md``); the pieces are importable: ``losses``, ``prompts``, ``augment``,
``data``, ``forward`` (the differentiable clip forward with a training memory bank),
``trainer`` and ``evaluate``.
"""
