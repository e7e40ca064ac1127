#!/usr/bin/env bash
# Run a command inside the project's environment: the venv ($VENV, default .venv) and, through
# scripts/ros_env.sh, the colcon-built ROS 2 package with DDS kept on this machine (loopback +
# shared memory only). Usage: scripts/in_env.sh COMMAND [ARGS...]
set -eo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
[ -x "$VENV/bin/python" ] || { echo "in_env: no venv at $VENV: run scripts/setup.sh" >&2; exit 1; }
export VENV

export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
unset PYTHONHOME

if [ -f "$ROOT/scripts/ros_env.sh" ] && [ -f "$ROOT/build/ros/install/setup.bash" ]; then
    # shellcheck disable=SC1091
    source "$ROOT/scripts/ros_env.sh"
else
    # No ROS build: still never let DDS discovery leave this machine.
    export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
    if [ -f "$ROOT/config/fastdds_loopback.xml" ]; then
        export FASTDDS_DEFAULT_PROFILES_FILE="$ROOT/config/fastdds_loopback.xml"
    fi
fi

exec "$@"
