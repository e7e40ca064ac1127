#!/usr/bin/env bash
# Build this repository as the ROS 2 package `edgetam_ros` with colcon, using the ROS 2
# Kilted wheels in .venv (requirements-ros.txt). Output: build/ros/{build,install,log}.
# Idempotent; returns at once when no input of the build changed since the last success.
#
#   scripts/build_ros.sh            # build (or skip when up to date)
#   scripts/build_ros.sh --force    # always run colcon
#
# Then `source scripts/ros_env.sh` gives the run-time environment (loopback DDS included).
# On a real ROS 2 install use plain colcon instead: see the README ("ROS 2 node").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
OUT=$ROOT/build/ros
STAMP=$OUT/.build_stamp
FORCE=0
if [ "${1:-}" = "--force" ]; then FORCE=1; shift; fi

PY=$VENV/bin/python
if [ ! -x "$PY" ]; then
  echo "build_ros.sh: no Python venv at $VENV (run scripts/setup.sh first)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/colcon" ] || ! "$PY" -c "import rclpy" >/dev/null 2>&1; then
  echo "build_ros.sh: ROS 2 wheels missing in $VENV:" \
       "$VENV/bin/pip install -r $ROOT/requirements-ros.txt" >&2
  exit 1
fi
for tool in cmake make g++; do
  command -v "$tool" >/dev/null || { echo "build_ros.sh: '$tool' not found (apt-get install -y cmake g++ make)" >&2; exit 1; }
done

# Everything the build depends on: interface and build files by content, Python sources by
# name (the install symlinks to them, so edits need no rebuild; added/removed files do).
inputs_hash() {
  cd "$ROOT"
  {
    cat package.xml CMakeLists.txt scripts/tracker_node.in msg/*.msg srv/*.srv
    find launch config -type f | LC_ALL=C sort | xargs cat
    find edgetam_ros edgetam_core launch config -type f \
      -not -path "*/__pycache__/*" -not -name "*.pyc" | LC_ALL=C sort
    echo "$PY"
  } | sha256sum | cut -d' ' -f1
}
HASH=$(inputs_hash)
if [ "$FORCE" = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] \
   && [ -f "$OUT/install/setup.bash" ]; then
  echo "build_ros.sh: edgetam_ros is up to date ($OUT/install)"
  exit 0
fi

# The wheels' exported CMake targets name include dirs of the machine they were built on
# (/opt/python/cpXY-cpXY/...): point them at this interpreter's (idempotent: after the first
# run nothing matches any more).
PYINC=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
NPINC=$("$PY" -c "import numpy; print(numpy.get_include())")
if [ ! -f "$PYINC/Python.h" ]; then
  echo "build_ros.sh: no Python.h in $PYINC (install the Python headers)" >&2
  exit 1
fi
( grep -rlE "/opt/python/cp[0-9]+-cp[0-9]+" "$VENV/share" --include="*.cmake" || true ) \
  | xargs -r sed -i -E \
    -e "s#/opt/python/cp[0-9]+-cp[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#${NPINC}#g" \
    -e "s#/opt/python/cp[0-9]+-cp[0-9]+/include/python3\.[0-9]+#${PYINC}#g"

# Build environment: the venv's tools first; the ament index of the wheels (rosidl looks its
# typesupports up there). No ROS setup of another distro may leak in.
export PATH="$VENV/bin:$PATH"
export VIRTUAL_ENV="$VENV"
export AMENT_PREFIX_PATH="$VENV"
export CMAKE_PREFIX_PATH="$VENV"
unset COLCON_PREFIX_PATH PYTHONPATH

# colcon builds a staging folder of links to this repository's package files, not the
# repository itself: .venv/ lives in the repository root, and CMake refuses to export
# include paths (the venv's numpy headers) that lie inside the source directory.
SRC=$OUT/src/edgetam_ros
mkdir -p "$SRC"
for entry in package.xml CMakeLists.txt msg srv launch config scripts edgetam_ros edgetam_core; do
  ln -sfn "$ROOT/$entry" "$SRC/$entry"
done
T0=$(date +%s)
# --paths: exactly this one package, nothing is crawled. --symlink-install: the installed
# Python files are links to the sources, so the installed node always runs the current code.
set +e
colcon --log-base "$OUT/log" build \
  --paths "$SRC" \
  --build-base "$OUT/build" \
  --install-base "$OUT/install" \
  --symlink-install \
  --event-handlers console_direct- \
  --cmake-args -DBUILD_TESTING=OFF "-DPython3_EXECUTABLE=$PY" -DCMAKE_BUILD_TYPE=Release \
  "$@"
STATUS=$?
set -e
if [ "$STATUS" != 0 ] || [ ! -f "$OUT/install/setup.bash" ]; then
  echo "build_ros.sh: colcon build failed (logs: $OUT/log/latest_build)" >&2
  exit 1
fi
echo "$HASH" > "$STAMP"
echo "build_ros.sh: built edgetam_ros in $(( $(date +%s) - T0 ))s -> $OUT/install"
