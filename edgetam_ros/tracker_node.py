"""Entry point of the ``tracker_node`` executable (``ros2 run edgetam_ros tracker_node``).

Also runnable as ``python -m edgetam_ros.tracker_node --ros-args -p checkpoint:=...``.
Exit status: 0 after a normal shutdown, 2 when the node cannot start (the reason is logged).
"""

from __future__ import annotations

import sys


def main(args: list[str] | None = None) -> int:
    from edgetam_ros.node import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
