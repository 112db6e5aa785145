"""Whether a failed attempt is tried again, and after how long.

The job's own `bgjobs.Retry` / `bgjobs.Fail` decide first. Then exception rules: walking the
error's class hierarchy from the most specific class, the first class with a rule decides,
a `[jobs.CLASS.exceptions.NAME]` rule beating a global `[exceptions.NAME]` one for the same
class. Without a rule, the job's retry settings apply (its `[jobs.CLASS]` table over the
global keys). The same code serves the daemon and `run_job.py`.

Every delay decided here lies in [0, `MAX_DELAY`] (ten years): exponential backoff is capped
before it is computed, and a `Retry` delay out of range (which `bgjobs.Retry` itself refuses,
so only a tampered worker could send one) is ignored for the usual delay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final, TypeVar

from bgjobs.config import Config
from bgjobs.model import ErrorInfo
from bgjobs.settings import ExceptionRule, RetrySettings
from bgjobs.times import MAX_DELAY, delay_problem

TIMEOUT_ERROR: Final = ErrorInfo(
    type="TimeoutError",
    message="",
    hierarchy=["TimeoutError", "OSError", "Exception", "BaseException"],
)
"""How a deadline is seen by the rules: as a `TimeoutError`."""
_T = TypeVar("_T")
_MAX_DOUBLINGS: Final = 64
"""2**64 times any delay over zero is past `MAX_DELAY`: doubling further changes nothing."""


@dataclass(frozen=True)
class Directive:
    """What the job itself asked for by raising `bgjobs.Retry` or `bgjobs.Fail`."""

    retry: bool
    delay: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    delay: float
    backoff: str
    max_delay: float | None
    jitter: bool

    def delay_after(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (1-based)."""
        delay = self.delay
        if self.backoff == "exponential":
            delay *= 2.0 ** min(max(attempt - 1, 0), _MAX_DOUBLINGS)
        delay = min(delay, MAX_DELAY if self.max_delay is None else self.max_delay, MAX_DELAY)
        if self.jitter:
            delay = random.uniform(delay / 2, delay)  # noqa: S311  # spreading, not secrecy
        return delay


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay: float
    max_attempts: int
    decided_by: str | None
    """What decided, for the log: `rule NAME`, `job raised Retry`, or None (the job's
    retry settings)."""

    def describe(self) -> str:
        prefix = f"{self.decided_by}: " if self.decided_by else ""
        if self.retry:
            return f"{prefix}retrying in {_seconds(self.delay)}"
        return f"{prefix}no retry"


def policy_for(config: Config, class_name: str, rule: RetrySettings | None = None) -> RetryPolicy:
    """The retry settings of a class, with a rule's settings (when given) on top."""
    root = config.settings
    job = config.job_settings(class_name)
    layers: list[RetrySettings] = [rule, job] if rule else [job]
    return RetryPolicy(
        max_attempts=1 + _first([x.retry_attempts for x in layers], root.retry_attempts),
        delay=_first([x.retry_delay_seconds for x in layers], root.retry_delay_seconds),
        backoff=_first([x.backoff for x in layers], root.backoff),
        max_delay=_first([x.max_retry_delay for x in layers], root.max_retry_delay),
        jitter=_first([x.jitter for x in layers], root.jitter),
    )


def _first(values: list[_T | None], default: _T) -> _T:
    """The first value that is set, in order of precedence, else the default."""
    return next((value for value in values if value is not None), default)


def find_rule(
    config: Config, class_name: str, error: ErrorInfo
) -> tuple[str, ExceptionRule] | None:
    """The rule for this error and where it is written, most specific class first."""
    own_rules = config.job_settings(class_name).exceptions
    global_rules = config.settings.exceptions
    for dotted in error.hierarchy or [error.type]:
        short = dotted.rsplit(".", 1)[-1]
        for rules, prefix in ((own_rules, f"jobs.{class_name}.exceptions."), (global_rules, "")):
            for name in (dotted, short):
                if name in rules:
                    return (prefix + name if prefix else name), rules[name]
    return None


def decide(
    config: Config,
    class_name: str,
    attempt: int,
    error: ErrorInfo,
    directive: Directive | None = None,
) -> Decision:
    """Decide what follows failed attempt number `attempt` (1-based)."""
    if directive is not None:
        policy = policy_for(config, class_name)
        name = "Retry" if directive.retry else "Fail"
        if directive.delay is not None and delay_problem(directive.delay):
            directive, name = Directive(directive.retry), "Retry with an invalid delay"
        retry = directive.retry and attempt < policy.max_attempts
        delay = directive.delay if directive.delay is not None else policy.delay_after(attempt)
        return Decision(
            retry, delay if retry else 0.0, policy.max_attempts, f"the job raised {name}"
        )
    found = find_rule(config, class_name, error)
    if found is None:
        policy = policy_for(config, class_name)
        rule_name = None
    else:
        rule_name, rule = found
        rule_name = f"rule {rule_name}"
        policy = policy_for(config, class_name, rule)
        if rule.action == "fail":
            return Decision(False, 0.0, attempt, rule_name)
    retry = attempt < policy.max_attempts
    delay = policy.delay_after(attempt) if retry else 0.0
    return Decision(retry, delay, policy.max_attempts, rule_name)


def _seconds(value: float) -> str:
    return f"{value:g}s" if value >= 0.01 or value == 0 else f"{value * 1000:.1f}ms"
