"""Large buffers go back to the kernel the moment they are freed.

glibc's malloc serves a request above its mmap threshold (128 KiB) from a mapping of its
own, unmapped on free; but after the first such free it raises the threshold to that
size, so from then on the daemon's 256 KiB socket reads land in the heap, where a single
small long-lived allocation above them keeps every one of them. A crowd of half-sent
frames then left the daemon tens of MiB larger for good, however they were closed. Setting
the threshold explicitly keeps it where it is (glibc stops adjusting it).
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3
"""glibc's mallopt parameter number (malloc.h)."""

OWN_MAPPING_ABOVE = 128 * 1024


def return_large_buffers_at_once() -> bool:
    """Pin the allocator's mmap threshold; False where the C library has no mallopt (not
    glibc), which changes nothing."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, OWN_MAPPING_ABOVE))
