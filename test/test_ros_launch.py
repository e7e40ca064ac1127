"""launch/tracker.launch.py and config/tracker.yaml.

``launch`` and ``launch_ros`` are not installed here (PyPI has no wheels for them). The launch
file is parsed and byte-compiled always, run against minimal stand-ins of the four launch
classes it uses (to check the node action it builds), and run with the real launch_ros where
it is importable (a ROS 2 install).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgetam_ros.launch_config import LAUNCH_ARGUMENTS, camera_info_topic_for, node_settings
from edgetam_ros.params import PARAMS

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "tracker.launch.py"
PARAMS_FILE = REPO / "config" / "tracker.yaml"


def load_launch_module() -> Any:
    spec = importlib.util.spec_from_file_location("tracker_launch", LAUNCH_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_file_parses_and_compiles() -> None:
    source = LAUNCH_FILE.read_text()
    tree = ast.parse(source)
    compile(source, str(LAUNCH_FILE), "exec")
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in names


def test_node_settings_defaults() -> None:
    s = node_settings({})
    assert s["name"] == "edgetam_tracker" and s["namespace"] == ""
    remaps = dict(s["remappings"])
    assert remaps == {
        "image": "/camera/image_raw",
        "image/compressed": "/camera/image_raw/compressed",
        "camera_info": "/camera/camera_info",
        "image_mouse_left": "/camera/image_raw_mouse_left",
        "clicked_point": "/clicked_point",
    }
    assert s["overrides"] == {"use_sim_time": False}  # the params file decides the rest


def test_node_settings_arguments() -> None:
    s = node_settings({
        "image_topic": "/front/color/image", "checkpoint": "/m/edgetam.pt", "device": "cuda",
        "use_sim_time": "true", "compressed_input": "True", "namespace": "perception",
        "camera_info_topic": "/front/info",
    })
    remaps = dict(s["remappings"])
    assert remaps["image"] == "/front/color/image"
    assert remaps["image/compressed"] == "/front/color/image/compressed"
    assert remaps["image_mouse_left"] == "/front/color/image_mouse_left"
    assert remaps["camera_info"] == "/front/info"
    assert s["overrides"] == {
        "use_sim_time": True, "checkpoint": "/m/edgetam.pt", "device": "cuda",
        "compressed_input": True,
    }
    assert s["namespace"] == "perception"
    with pytest.raises(ValueError, match="use_sim_time"):
        node_settings({"use_sim_time": "maybe"})


def test_camera_info_follows_the_image_topic() -> None:
    assert camera_info_topic_for("/camera/image_raw") == "/camera/camera_info"
    assert camera_info_topic_for("/image") == "/camera_info"
    assert camera_info_topic_for("image") == "camera_info"


def test_params_file_matches_the_node() -> None:
    data = yaml.safe_load(PARAMS_FILE.read_text())
    params = data["/**"]["ros__parameters"]
    specs = {p.name: p for p in PARAMS}
    assert set(params) == set(specs)
    for name, value in params.items():
        assert type(value) is type(specs[name].default), name


class _Recorder:
    """Stand-in for a launch class: records its constructor arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


def test_generate_launch_description_with_stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    classes: dict[str, type] = {
        name: type(name, (_Recorder,), {})
        for name in ("LaunchDescription", "DeclareLaunchArgument", "OpaqueFunction", "Node")
    }
    fake = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
        "ament_index_python": types.ModuleType("ament_index_python"),
        "ament_index_python.packages": types.ModuleType("ament_index_python.packages"),
    }
    fake["launch"].LaunchDescription = classes["LaunchDescription"]  # type: ignore[attr-defined]
    fake["launch.actions"].DeclareLaunchArgument = classes["DeclareLaunchArgument"]  # type: ignore[attr-defined]
    fake["launch.actions"].OpaqueFunction = classes["OpaqueFunction"]  # type: ignore[attr-defined]
    fake["launch_ros.actions"].Node = classes["Node"]  # type: ignore[attr-defined]
    fake["ament_index_python.packages"].get_package_share_directory = (  # type: ignore[attr-defined]
        lambda pkg: f"/opt/ros/share/{pkg}"
    )
    for name, module in fake.items():
        monkeypatch.setitem(sys.modules, name, module)

    ld = load_launch_module().generate_launch_description()
    entities = ld.args[0]
    declare = classes["DeclareLaunchArgument"]
    declared = {e.args[0]: e.kwargs for e in entities if isinstance(e, declare)}
    assert set(declared) == set(LAUNCH_ARGUMENTS)
    assert all(kw["description"] for kw in declared.values())
    opaque = [e for e in entities if isinstance(e, classes["OpaqueFunction"])]
    assert len(opaque) == 1

    context = types.SimpleNamespace(launch_configurations={
        name: default for name, (default, _) in LAUNCH_ARGUMENTS.items()
    })
    context.launch_configurations["image_topic"] = "/cam/image_raw"
    context.launch_configurations["checkpoint"] = "/w/edgetam.pt"
    (node,) = opaque[0].kwargs["function"](context)
    kw = node.kwargs
    assert (kw["package"], kw["executable"], kw["name"]) == (
        "edgetam_ros", "tracker_node", "edgetam_tracker"
    )
    assert kw["parameters"][0] == "/opt/ros/share/edgetam_ros/config/tracker.yaml"
    assert kw["parameters"][1]["checkpoint"] == "/w/edgetam.pt"
    assert ("image", "/cam/image_raw") in kw["remappings"]
    assert ("image_mouse_left", "/cam/image_raw_mouse_left") in kw["remappings"]


def test_generate_launch_description_with_launch_ros() -> None:
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (ROS installs only)")
    from launch.actions import DeclareLaunchArgument

    from launch import LaunchDescription

    ld = load_launch_module().generate_launch_description()
    assert isinstance(ld, LaunchDescription)
    declared = {e.name for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    assert declared == set(LAUNCH_ARGUMENTS)
