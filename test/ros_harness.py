"""ROS 2 test harness: real DDS kept on this machine, a private domain, the node as a process.

Every ROS participant a test creates (in the pytest process or in a ``tracker_node`` it
starts) uses:
- ``FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_loopback.xml`` (UDP on 127.0.0.1 + shared
  memory only, 32 MB segments so 640x480 images arrive),
- ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``,
- a ``ROS_DOMAIN_ID`` in 1..100 leased with a lock file, so concurrent test runs on this
  machine never share a domain.

The pytest process itself was usually not started from a sourced ROS environment, so
``enter_ros`` sets the variables, puts the colcon install on ``sys.path`` and preloads the
generated interface libraries (the dynamic loader read LD_LIBRARY_PATH at start-up).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "build" / "ros" / "install" / "edgetam_ros"
EXECUTABLE = INSTALL / "lib" / "edgetam_ros" / "tracker_node"
PROFILE = REPO / "config" / "fastdds_loopback.xml"
ROS_ENV_SCRIPT = REPO / "scripts" / "ros_env.sh"
PY_VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"
SITE = INSTALL / "lib" / PY_VERSION / "site-packages"

# Variables copied from the sourced ROS environment into this process and the node's.
ROS_VARS = (
    "AMENT_PREFIX_PATH",
    "CMAKE_PREFIX_PATH",
    "COLCON_PREFIX_PATH",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "PATH",
    "RMW_IMPLEMENTATION",
)


def unavailable_reason() -> str | None:
    """Why ROS tests cannot run here (None when they can)."""
    if importlib.util.find_spec("rclpy") is None:
        return "rclpy is not installed (pip install -r requirements-ros.txt)"
    if not EXECUTABLE.exists():
        return "edgetam_ros is not built (scripts/build_ros.sh)"
    return None


class DomainLease:
    """A ROS_DOMAIN_ID in 1..100 held for this process's lifetime by an exclusive file lock."""

    def __init__(self, lock_dir: str | None = None) -> None:
        self._dir = Path(lock_dir or os.environ.get("TMPDIR", "/tmp"))
        self._file: IO[str] | None = None
        self.domain_id = 0

    def acquire(self) -> int:
        start = os.getpid() % 100
        for k in range(100):
            candidate = (start + k) % 100 + 1
            f = open(self._dir / f"edgetam_ros_domain_{candidate}.lock", "w")  # noqa: SIM115
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            self._file, self.domain_id = f, candidate
            return candidate
        raise RuntimeError("no free ROS_DOMAIN_ID in 1..100 (all locked by other test runs)")

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def sourced_environment() -> dict[str, str]:
    """os.environ after ``source scripts/ros_env.sh`` (venv + colcon install + loopback DDS)."""
    out = subprocess.run(
        ["bash", "-c", f"source '{ROS_ENV_SCRIPT}' >/dev/null && env -0"],
        check=True, capture_output=True, cwd=REPO,
    ).stdout
    env: dict[str, str] = {}
    for entry in out.split(b"\0"):
        if b"=" in entry:
            key, _, value = entry.partition(b"=")
            env[key.decode()] = value.decode()
    return env


def loopback_env(domain_id: int) -> dict[str, str]:
    """Environment for a ROS process of this test run (node or tool)."""
    env = sourced_environment()
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    return env


def enter_ros(env: dict[str, str]) -> None:
    """Make this (pytest) process a participant of the test's loopback domain."""
    for key in (*ROS_VARS, "ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                "FASTDDS_DEFAULT_PROFILES_FILE"):
        if key in env:
            os.environ[key] = env[key]
    for entry in env.get("PYTHONPATH", "").split(os.pathsep):
        if entry and entry not in sys.path:
            sys.path.append(entry)
    # The generated interface libraries are found by name (dlopen): load them now by path.
    pending = sorted((INSTALL / "lib").glob("*.so"))
    while pending:
        failed = []
        for lib in pending:
            try:
                ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                failed.append(lib)
        if len(failed) == len(pending):
            raise RuntimeError(f"cannot load {', '.join(map(str, failed))}")
        pending = failed
    # A source-tree `edgetam_ros` imported before now must see the generated msg/ and srv/.
    pkg = sys.modules.get("edgetam_ros")
    if pkg is not None and str(SITE / "edgetam_ros") not in list(pkg.__path__):
        pkg.__path__.append(str(SITE / "edgetam_ros"))


class NodeProcess:
    """``tracker_node`` started as its own process, the way ``ros2 run`` starts it."""

    def __init__(self, env: dict[str, str], params: dict[str, Any], log_path: Path,
                 remaps: dict[str, str] | None = None, executable: Path = EXECUTABLE) -> None:
        self.log_path = log_path
        args = [str(executable), "--ros-args"]
        for key, value in params.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args += ["-p", f"{key}:={text}"]
        for src, dst in (remaps or {}).items():
            args += ["-r", f"{src}:={dst}"]
        self.args = args
        self._log = open(log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_text():
                return True
            if not self.alive():
                return text in self.log_text()
            time.sleep(0.1)
        return False

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (as Ctrl-C), then SIGKILL if it does not exit; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self._log.close()
        return int(self.proc.returncode)


def spin_until(node: Any, predicate: Callable[[], bool], timeout: float,
               executor: Any = None, step: float = 0.05) -> bool:
    """Spin ``node`` (or ``executor``) until ``predicate()`` holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if executor is not None:
            executor.spin_once(timeout_sec=step)
        else:
            import rclpy

            rclpy.spin_once(node, timeout_sec=step)
    return predicate()


@contextlib.contextmanager
def leased_domain() -> Iterator[int]:
    lease = DomainLease()
    try:
        yield lease.acquire()
    finally:
        lease.release()
