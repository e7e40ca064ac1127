"""What every console script does around its work: exit codes and one-line errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

from edgetam_core.errors import EdgeTAMError

T = TypeVar("T")


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type name)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def run_cli(prog: str, work: Callable[[], T]) -> tuple[int, T | None]:
    """Run ``work``; map failures to exit codes with one line on stderr.

    0: success; 2: unusable input (``EdgeTAMError``); 130: interrupted; 1: anything else
    (``EDGETAM_DEBUG=1`` re-raises it to show the traceback).
    """
    try:
        return 0, work()
    except EdgeTAMError as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2, None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130, None
    except Exception as exc:
        if os.environ.get("EDGETAM_DEBUG"):
            raise
        print(f"{prog}: unexpected error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1, None
