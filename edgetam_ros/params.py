"""The tracker node's parameters: names, defaults, descriptions, ranges and validation.

No ROS import at module level, so that the launch file's tests and the docs can use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from edgetam_ros.prompts import CLICK_MODES, MAX_OBJECT_ID

#: Inference backends the node can run.
BACKENDS = ("eager", "torchscript", "coreml")
#: Numeric precisions of the eager / in-memory TorchScript backends.
PRECISIONS = ("fp32", "bf16")
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    read_only: bool = False
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()

    def descriptor(self) -> Any:
        """The ``rcl_interfaces/ParameterDescriptor`` declared for this parameter."""
        from rcl_interfaces.msg import (
            FloatingPointRange,
            IntegerRange,
            ParameterDescriptor,
            ParameterType,
        )

        ptype = {
            bool: ParameterType.PARAMETER_BOOL,
            int: ParameterType.PARAMETER_INTEGER,
            float: ParameterType.PARAMETER_DOUBLE,
            str: ParameterType.PARAMETER_STRING,
        }[type(self.default)]
        d = ParameterDescriptor(
            name=self.name, type=ptype, description=self.description, read_only=self.read_only
        )
        if self.int_range:
            d.integer_range = [
                IntegerRange(from_value=self.int_range[0], to_value=self.int_range[1], step=1)
            ]
        if self.float_range:
            d.floating_point_range = [
                FloatingPointRange(
                    from_value=self.float_range[0], to_value=self.float_range[1], step=0.0
                )
            ]
        if self.choices:
            d.additional_constraints = "one of: " + ", ".join(self.choices)
        return d


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "checkpoint", "demo",
        "EdgeTAM checkpoint (.pt): the official edgetam.pt or one saved by edgetam_core. "
        "'demo' (default) is the small bundled model trained on the synthetic world only (it "
        "tracks that world's shapes, not real scenes); 'random' runs random weights "
        "(plumbing tests only: its masks mean nothing).",
        read_only=True,
    ),
    ParamSpec(
        "device", "auto", "Torch device: auto (cuda, else mps, else cpu), cpu, cuda, cuda:N, mps.",
        read_only=True,
    ),
    ParamSpec(
        "backend", "eager",
        "Inference backend: eager (PyTorch), torchscript (traced graphs: from export_dir, or "
        "traced at start-up), coreml (export_dir from edgetam-export --format coreml; macOS).",
        read_only=True, choices=BACKENDS,
    ),
    ParamSpec(
        "export_dir", "",
        "Directory written by edgetam-export for the torchscript/coreml backend (same "
        "checkpoint); empty: torchscript traces the model at start-up.",
        read_only=True,
    ),
    ParamSpec(
        "precision", "fp32",
        "fp32, or bf16 (CPUs with AVX512-BF16 and CUDA) for the eager / traced backends.",
        read_only=True, choices=PRECISIONS,
    ),
    ParamSpec(
        "max_objects", 16, "Most objects tracked at once (ids are 1..255: masks are mono8).",
        read_only=True, int_range=(1, MAX_OBJECT_ID),
    ),
    ParamSpec(
        "compressed_input", False,
        "Subscribe to 'image/compressed' (sensor_msgs/CompressedImage, jpeg or png) "
        "instead of 'image'.",
        read_only=True,
    ),
    ParamSpec(
        "publish_overlay", True,
        "Publish 'overlay' (masks, boxes and ids drawn on the image) when someone subscribes.",
    ),
    ParamSpec(
        "overlay_alpha", 0.5, "Opacity of the mask colors in 'overlay'.", float_range=(0.0, 1.0)
    ),
    ParamSpec(
        "click_mode", "new",
        "What a click does: new (start a new object), refine (add a positive point to the "
        "selected object), negative (add a negative point to the selected object).",
        choices=CLICK_MODES,
    ),
    ParamSpec(
        "selected_object", 0,
        "Object that refine/negative clicks apply to; 0 = the object prompted last.",
        int_range=(0, MAX_OBJECT_ID),
    ),
    ParamSpec(
        "mask_threshold", 0.0,
        "Mask logit threshold (0 = probability 0.5; higher gives tighter masks).",
        float_range=(-20.0, 20.0),
    ),
    ParamSpec(
        "qos_depth", 5,
        "History depth of subscriptions and publishers (images use the sensor-data QoS).",
        read_only=True, int_range=(1, 100),
    ),
    ParamSpec(
        "rectified_input", False,
        "Images are rectified: clicked_point is projected with CameraInfo P instead of K and D.",
    ),
)


def validate_parameter(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name`` (None when it is).

    Types and numeric ranges are enforced by rclpy from the descriptors; this checks the
    string choices.
    """
    if name == "device" and not DEVICE_RE.match(str(value)):
        return f"device '{value}' is not one of auto, cpu, cuda, cuda:N, mps"
    if name == "backend" and value not in BACKENDS:
        return f"backend '{value}' is not available (available: {', '.join(BACKENDS)})"
    if name == "precision" and value not in PRECISIONS:
        return f"precision '{value}' is not one of {', '.join(PRECISIONS)}"
    if name == "click_mode" and value not in CLICK_MODES:
        return f"click_mode '{value}' is not one of {', '.join(CLICK_MODES)}"
    return None
