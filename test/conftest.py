"""Shared pytest fixtures."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def reference_model() -> Any:
    """The reference EdgeTAM video predictor (fp32, CPU, eval, seeded).

    The reference (PyPI ``edgetam-dimos``) is a required test dependency installed by
    ``scripts/setup.sh``; if it is missing the parity tests fail rather than skip.
    """
    from reference import build_reference_video_predictor

    return build_reference_video_predictor()
