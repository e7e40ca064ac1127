"""Parity of the image predictor with the reference ``SAM2ImagePredictor``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from edgetam_core.errors import InputError, PromptError
from edgetam_core.model.edgetam import EdgeTAM
from edgetam_core.predictor import ImagePredictor
from edgetam_core.synthetic import make_sample_clip


@pytest.fixture(scope="module")
def predictors(reference_model: Any) -> tuple[Any, ImagePredictor, np.ndarray]:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    image = make_sample_clip(num_frames=1, height=300, width=400, seed=7).frames[0]
    ref = SAM2ImagePredictor(reference_model)
    ref.set_image(image)
    model = EdgeTAM().eval()
    model.load_state_dict(reference_model.state_dict())
    ours = ImagePredictor(model)
    ours.set_image(image)
    return ref, ours, image


CASES = [
    {"points": [[120.0, 150.0]], "labels": [1], "multimask_output": True},
    {"points": [[120.0, 150.0], [300.0, 60.0]], "labels": [1, 0], "multimask_output": False},
    {"box": [50.0, 40.0, 260.0, 220.0], "multimask_output": False},
    {
        "box": [50.0, 40.0, 260.0, 220.0],
        "points": [[90.0, 100.0]],
        "labels": [0],
        "multimask_output": True,
    },
]


@pytest.mark.parametrize("case", CASES, ids=["click", "clicks", "box", "box+click"])
def test_image_predictor_matches_reference(
    predictors: tuple[Any, ImagePredictor, np.ndarray], case: dict[str, Any]
) -> None:
    ref, ours, _ = predictors
    args = {k: np.asarray(v) if isinstance(v, list) else v for k, v in case.items()}
    ref_args = {
        ("point_coords" if k == "points" else "point_labels" if k == "labels" else k): v
        for k, v in args.items()
    }
    with torch.inference_mode():
        ref_masks, ref_ious, ref_low = ref.predict(**ref_args, return_logits=True)
    got = ours.predict(**args, return_logits=True)
    assert got.masks.shape == ref_masks.shape
    rel = np.linalg.norm(got.low_res_logits - ref_low) / np.linalg.norm(ref_low)
    assert rel < 1e-4
    assert np.mean((got.masks > 0) == (ref_masks > 0)) > 0.999
    np.testing.assert_allclose(got.ious, ref_ious, rtol=1e-4, atol=1e-5)


def test_image_predictor_mask_input_round_trip(
    predictors: tuple[Any, ImagePredictor, np.ndarray],
) -> None:
    ref, ours, _ = predictors
    first = ours.predict(points=[[120.0, 150.0]], labels=[1], multimask_output=False)
    with torch.inference_mode():
        _, _, ref_low = ref.predict(
            point_coords=np.array([[120.0, 150.0]]),
            point_labels=np.array([1]),
            multimask_output=False,
        )
        ref_masks, _, _ = ref.predict(
            point_coords=np.array([[200.0, 100.0]]),
            point_labels=np.array([1]),
            mask_input=ref_low,
            multimask_output=False,
            return_logits=True,
        )
    got = ours.predict(
        points=[[200.0, 100.0]],
        labels=[1],
        mask_input=first.low_res_logits,
        multimask_output=False,
        return_logits=True,
    )
    assert np.mean((got.masks > 0) == (ref_masks > 0)) > 0.999


def test_image_predictor_rejects_bad_input(
    predictors: tuple[Any, ImagePredictor, np.ndarray],
) -> None:
    _, ours, _ = predictors
    with pytest.raises(PromptError, match="outside"):
        ours.predict(points=[[1000.0, 5.0]], labels=[1])
    with pytest.raises(PromptError):
        ours.predict()
    fresh = ImagePredictor(ours.model)
    with pytest.raises(InputError, match="set_image"):
        fresh.predict(points=[[1.0, 1.0]], labels=[1])
    with pytest.raises(InputError):
        fresh.set_image(np.zeros((10, 10), dtype=np.uint8))
