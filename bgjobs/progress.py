"""`bgjobs.progress(fraction, message)`: a running job says how far it got.

Inside a worker the daemon installs a reporter for each attempt (`install`), which sends
the update to the daemon; `bgjobctl show`/`watch` and the dashboard show the latest one while
the job runs. Anywhere else (a plain script, the testing mode, a process the job forked) no
reporter is installed for the calling process and the call does nothing but check its
arguments, so a job behaves the same when it is run outside the daemon.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from numbers import Real
from typing import Final

from bgjobs.text import cap, escape_controls

MAX_MESSAGE: Final = 200
"""Characters of a progress message kept (after escaping); the rest is cut, and said so."""

Reporter = Callable[[float, str | None], None]

_installed: list[tuple[int, Reporter]] = []
"""Empty, or the reporter of the attempt running in this process, with the pid it belongs
to: after a fork, the child is not the worker and must not write to the worker's pipe."""


def progress(fraction: float, message: str | None = None) -> bool:
    """Report that the job is `fraction` (0 to 1) done, with an optional short message.

    A fraction outside 0..1 is clamped; one that is not a finite number raises `ValueError`
    (`TypeError` for a non-number, or a message that is not a string): a mistake in the job,
    shown in its own tests. Returns whether the update went to a daemon (False outside a
    worker). Frequent updates are thinned to about ten a second; the last one always
    arrives."""
    value = clean_fraction(fraction)
    text = clean_message(message)
    for pid, reporter in _installed[:1]:
        if pid == os.getpid():
            reporter(value, text)
            return True
    return False


def clean_fraction(fraction: object) -> float:
    """`fraction` as a float in 0..1: clamped; refused if not a finite real number."""
    if isinstance(fraction, bool) or not isinstance(fraction, Real):
        raise TypeError(f"progress must be a number from 0 to 1, not {type(fraction).__name__}")
    value = float(fraction)
    if not math.isfinite(value):
        raise ValueError(f"progress must be a finite number from 0 to 1, not {value}")
    return min(max(value, 0.0), 1.0)


def clean_message(message: object) -> str | None:
    """`message` made safe for a log line or a terminal and capped; None or empty: None."""
    if message is None:
        return None
    if not isinstance(message, str):
        raise TypeError(f"a progress message must be a string, not {type(message).__name__}")
    return cap(escape_controls(message), MAX_MESSAGE) or None


def install(reporter: Reporter | None) -> None:
    """The worker's hook: where this process's updates go from now on (None: nowhere)."""
    _installed[:] = [] if reporter is None else [(os.getpid(), reporter)]
