"""Test jobs for times and text: bad `Retry` delays, lone surrogates, control characters."""

from __future__ import annotations

import bgjobs

LONE_SURROGATE = "\ud800"
CONTROLS = "\x1b[31mred\x1b[0m \x9b2J \u202eevil"


class RetryIn:
    def handle(self, delay: str) -> None:
        # A string, so that the test can ask for NaN or infinity through JSON parameters.
        raise bgjobs.Retry("again", delay=float(delay))


class Surrogates:
    def error(self) -> None:
        raise ValueError(f"bad {LONE_SURROGATE} text")

    def printed(self) -> str:
        print(f"a lone {LONE_SURROGATE} surrogate", flush=True)
        return "printed"

    def result(self) -> str:
        return f"x{LONE_SURROGATE}y"


class Controls:
    def handle(self, *params: str) -> str:
        print(CONTROLS, flush=True)
        raise ValueError(CONTROLS)
