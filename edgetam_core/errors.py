"""The few named exceptions of edgetam_core; each carries a one-line, user-facing message.

Command-line tools map them to exit codes; the ROS node maps them to log lines and
``success=false`` service answers. Everything raised on bad *input* is one of these.
"""

from __future__ import annotations


class EdgeTAMError(Exception):
    """Base class: an error the user can fix by changing their input."""


class CheckpointError(EdgeTAMError):
    """A checkpoint file is missing, unreadable, unsafe or does not match the model."""


class PromptError(EdgeTAMError):
    """A prompt is malformed, outside the image, or names an unknown object."""


class InputError(EdgeTAMError):
    """A frame, video, folder or prompts file cannot be used."""


class BackendError(EdgeTAMError):
    """An exported model directory is missing, incomplete or does not match the checkpoint."""
