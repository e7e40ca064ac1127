"""Shared pytest fixtures."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def reference_model() -> Any:
    """The reference EdgeTAM video predictor (fp32, CPU, eval, seeded).

    The reference (PyPI ``edgetam-dimos``) is a required test dependency installed by
    ``scripts/setup.sh``; if it is missing the parity tests fail rather than skip.
    """
    from reference import build_reference_video_predictor

    return build_reference_video_predictor()


# --- ROS 2 (edgetam_ros): loopback-only DDS in a leased domain; see test/ros_harness.py --------
@pytest.fixture(scope="session")
def ros_domain_id() -> Any:
    """A ROS_DOMAIN_ID (1..100) of this test run's own, held by a lock file until it ends.

    Fails when rclpy or the built edgetam_ros package is missing (scripts/setup.sh installs
    and builds both), so the end-to-end tests never pass silently unexercised.
    """
    import ros_harness

    reason = ros_harness.unavailable_reason()
    if reason is not None:
        pytest.fail(reason)
    lease = ros_harness.DomainLease()
    yield lease.acquire()
    lease.release()


@pytest.fixture(scope="session")
def ros_env(ros_domain_id: int) -> dict[str, str]:
    """Environment for ROS processes of this run (sourced install + loopback DDS + domain)."""
    import ros_harness

    return ros_harness.loopback_env(ros_domain_id)


@pytest.fixture(scope="session")
def rclpy_session(ros_env: dict[str, str]) -> Any:
    """rclpy initialised in this process on the run's loopback domain."""
    import ros_harness

    ros_harness.enter_ros(ros_env)
    import rclpy

    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()


@pytest.fixture(scope="session")
def tiny_checkpoint_path(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A checkpoint of the seeded default model with tiny_config() (embeds its config)."""
    from edgetam_core.checkpoint import build_default_model, save_checkpoint
    from edgetam_core.config import tiny_config

    path = tmp_path_factory.mktemp("ckpt") / "edgetam_tiny.pt"
    return save_checkpoint(build_default_model(config=tiny_config()), path)
