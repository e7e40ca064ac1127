"""What ``launch/tracker.launch.py`` hands to launch_ros, as plain Python (testable without ROS).

The launch file declares the arguments, resolves them and calls ``node_settings`` to get the
remappings and parameter overrides of the ``tracker_node`` action.
"""

from __future__ import annotations

from typing import Any

#: Launch arguments: name -> (default, description).
LAUNCH_ARGUMENTS: dict[str, tuple[str, str]] = {
    "image_topic": ("/camera/image_raw", "Input image topic (sensor_msgs/Image)."),
    "camera_info_topic": (
        "",
        "CameraInfo topic; empty = camera_info beside the image topic "
        "(/camera/image_raw -> /camera/camera_info).",
    ),
    "clicked_point_topic": ("/clicked_point", "RViz 'Publish Point' topic."),
    "checkpoint": ("", "EdgeTAM checkpoint (.pt); empty = the params file's value."),
    "device": ("", "Torch device (auto, cpu, cuda, cuda:N, mps); empty = the params file's."),
    "backend": ("", "Inference backend; empty = the params file's value."),
    "compressed_input": ("", "true: subscribe to <image_topic>/compressed; empty = params file."),
    "params_file": ("", "Parameters YAML; empty = the package's config/tracker.yaml."),
    "namespace": ("", "Namespace of the node (and of its relative topics)."),
    "node_name": ("edgetam_tracker", "Name of the node."),
    "use_sim_time": ("false", "Use /clock (true when playing a bag with --clock)."),
    "log_level": ("info", "Logging level of the node."),
}


def _as_bool(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"launch argument {name}:={text} is not true or false")


def camera_info_topic_for(image_topic: str) -> str:
    """The image_transport convention: camera_info in the image topic's namespace."""
    base = image_topic.rstrip("/")
    ns = base.rsplit("/", 1)[0] if "/" in base else ""
    return f"{ns}/camera_info" if ns or base.startswith("/") else "camera_info"


def node_settings(values: dict[str, str]) -> dict[str, Any]:
    """Remappings and parameter overrides of the tracker node for resolved launch arguments.

    ``values`` maps argument names to their (string) values; missing ones take the
    defaults of ``LAUNCH_ARGUMENTS``. Empty checkpoint/device/backend/compressed_input leave
    the params file's values alone.
    """
    v = {k: d for k, (d, _) in LAUNCH_ARGUMENTS.items()}
    v.update({k: str(x) for k, x in values.items()})
    image = v["image_topic"].rstrip("/") or "/camera/image_raw"
    info = v["camera_info_topic"] or camera_info_topic_for(image)
    remappings = [
        ("image", image),
        ("image/compressed", f"{image}/compressed"),
        ("camera_info", info),
        # rqt_image_view publishes clicks on <the topic it shows>_mouse_left
        ("image_mouse_left", f"{image}_mouse_left"),
        ("clicked_point", v["clicked_point_topic"]),
    ]
    overrides: dict[str, Any] = {"use_sim_time": _as_bool(v["use_sim_time"], "use_sim_time")}
    for key in ("checkpoint", "device", "backend"):
        if v[key]:
            overrides[key] = v[key]
    if v["compressed_input"]:
        overrides["compressed_input"] = _as_bool(v["compressed_input"], "compressed_input")
    return {
        "name": v["node_name"] or "edgetam_tracker",
        "namespace": v["namespace"],
        "remappings": remappings,
        "overrides": overrides,
        "log_level": v["log_level"] or "info",
    }
