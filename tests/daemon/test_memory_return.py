"""The daemon's allocator gives large buffers back when they are freed, even with small
long-lived allocations made between them (as a crowd of half-sent frames and the daemon's
own work interleave)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import sys
    from bgjobd.memory import return_large_buffers_at_once

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    pinned = sys.argv[1] == "pinned" and return_large_buffers_at_once()
    warm = bytes(256 * 1024)  # the first large free is what raises glibc's threshold
    del warm
    large, small = [], []
    for i in range(120):
        large.append(bytes([i % 251]) * (256 * 1024))  # like one socket read
        small.append(bytes([i % 251]) * 2000)  # outlives it, just above it in the heap
    before = rss_mib()
    large.clear()
    print(pinned, round(before - rss_mib(), 1))
    """
)


def _given_back_mib(mode: str) -> tuple[bool, float]:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    return out[0] == "True", float(out[1])


def test_large_buffers_freed_between_small_ones_are_given_back() -> None:
    pinned, given_back = _given_back_mib("pinned")
    assert pinned
    assert given_back > 25  # of the 30 MiB read


def test_without_it_they_stay() -> None:
    """The control: the same program without the call keeps them (this is the finding)."""
    pinned, given_back = _given_back_mib("default")
    assert not pinned
    assert given_back < 5
