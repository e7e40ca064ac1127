"""Launch the EdgeTAM tracker node.

    ros2 launch edgetam_ros tracker.launch.py image_topic:=/camera/image_raw \
        checkpoint:=/path/to/edgetam.pt

Then click an object in rqt_image_view (on the image or on <namespace>/overlay) or with
RViz's "Publish Point" tool; masks, tracks and overlay are published in the node's namespace.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

from edgetam_ros.launch_config import LAUNCH_ARGUMENTS, node_settings
from launch import LaunchDescription


def _tracker_node(context, *args, **kwargs):
    values = {name: context.launch_configurations.get(name, "") for name in LAUNCH_ARGUMENTS}
    settings = node_settings(values)
    params_file = values["params_file"] or os.path.join(
        get_package_share_directory("edgetam_ros"), "config", "tracker.yaml"
    )
    return [
        Node(
            package="edgetam_ros",
            executable="tracker_node",
            name=settings["name"],
            namespace=settings["namespace"],
            parameters=[params_file, settings["overrides"]],
            remappings=settings["remappings"],
            arguments=["--ros-args", "--log-level", settings["log_level"]],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, (default, description) in LAUNCH_ARGUMENTS.items()
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_tracker_node)])
