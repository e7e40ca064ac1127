#!/usr/bin/env bash
# Idempotent set-up of everything `make demo` and `make test` need, from nothing:
#   1. a Python 3.11 virtual environment ($VENV, default .venv in the repo root);
#   2. the pinned requirements (requirements.txt, requirements-dev.txt, requirements-ros.txt)
#      and this project as an editable install (console scripts edgetam-track, edgetam-demo);
#   3. scripts/build_ros.sh, when present: builds the ROS 2 interfaces with colcon.
# A stamp file inside the venv records a hash of the inputs of step 2 (build_ros.sh keeps its own
# for step 3); when nothing changed a second run takes about a second. FORCE=1 redoes everything.
#
# Environment: VENV (venv path), PYTHON (interpreter used to create it, default python3.11),
# FORCE=1 (ignore the stamp).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
PYTHON="${PYTHON:-python3.11}"
STAMP="$VENV/.edgetam-setup.stamp"

log() { echo "setup: $*" >&2; }
# pip, minus the noise some machines' pip.conf adds (missing local index folders).
pip_quiet() {
    "$VENV/bin/python" -m pip "$@" 2>&1 \
        | sed -u '/is ignored: it is neither a file nor a directory/d' >&2
}
die() { echo "setup: error: $*" >&2; exit 1; }

# One set-up at a time per venv (make demo and make test may run side by side).
if command -v flock >/dev/null 2>&1; then
    LOCK="${TMPDIR:-/tmp}/edgetam-setup-$(printf '%s' "$VENV" | sha256sum | cut -c1-16).lock"
    exec 9>"$LOCK"
    flock 9
fi

# Everything whose change must trigger a re-install (the ROS build keeps its own stamp).
inputs_hash() {
    local f
    {
        echo "venv=$VENV"
        for f in requirements.txt requirements-dev.txt requirements-ros.txt pyproject.toml \
                 setup.py setup.cfg scripts/setup.sh; do
            if [ -f "$f" ]; then
                echo "$f $(sha256sum < "$f" | cut -d' ' -f1)"
            fi
        done
    } | sha256sum | cut -d' ' -f1
}

# 1. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
    command -v "$PYTHON" >/dev/null 2>&1 \
        || die "$PYTHON not found: install Python 3.11 or set PYTHON=/path/to/python3.11"
    version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    [ "$version" = "3.11" ] || die "$PYTHON is Python $version; Python 3.11 is required"
    log "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
    rm -f "$STAMP"
fi

# 2. Python packages and this project (skipped when the stamp matches).
want="$(inputs_hash)"
if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    log "python packages up to date ($VENV)"
else
    rm -f "$STAMP"
    start=$SECONDS
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    reqs=(-r requirements.txt -r requirements-dev.txt)
    [ -f requirements-ros.txt ] && reqs+=(-r requirements-ros.txt)
    log "installing requirements into $VENV"
    pip_quiet install --quiet "${reqs[@]}"
    log "installing this project (editable)"
    pip_quiet install --quiet --no-deps -e .
    echo "$want" > "$STAMP"
    log "python packages installed in $((SECONDS - start)) s"
fi

# 3. ROS 2 interfaces (scripts/build_ros.sh: idempotent, returns at once when up to date).
if [ -f scripts/build_ros.sh ]; then
    if [ "${FORCE:-0}" = 1 ]; then
        VENV="$VENV" bash scripts/build_ros.sh --force
    else
        VENV="$VENV" bash scripts/build_ros.sh
    fi
fi
