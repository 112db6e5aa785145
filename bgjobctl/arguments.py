"""Argument types shared by the commands."""

from __future__ import annotations

import argparse

from bgjobs.protocol import MAX_JOB_ID


def job_id(text: str) -> int:
    """A job id as the daemon can hold it: a whole number from 1 to 2**63 - 1."""
    if not (text.isascii() and text.isdigit() and 0 < int(text) <= MAX_JOB_ID):
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id")
    return int(text)


def count(text: str) -> int:
    """A limit or offset: a whole number from 0 to 2**63 - 1."""
    if not (text.isascii() and text.isdigit() and int(text) <= MAX_JOB_ID):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0 to {MAX_JOB_ID}")
    return int(text)
