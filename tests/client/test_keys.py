"""Idempotency keys: unique across threads, processes and forks, and in order within one
process (the store's unique index takes them cheaply)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from bgjobctl.library import new_key

KEY = re.compile(r"[0-9a-f]{32}\Z")


def test_keys_from_threads_are_unique_and_ordered_per_process() -> None:
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: new_key(), range(20_000)))
    assert all(KEY.match(key) for key in keys)
    assert len(set(keys)) == len(keys)
    assert len({key[:24] for key in keys}) == 1  # one process, one prefix
    mine = new_key()
    assert mine > max(keys)


def test_a_forked_child_and_another_process_draw_their_own_prefix() -> None:
    before = new_key()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next key and leave at once
        os.close(read)
        os.write(write, new_key().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    assert os.waitpid(pid, 0)[1] == 0
    other = subprocess.run(
        [sys.executable, "-c", "from bgjobctl.library import new_key; print(new_key())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    prefixes = {before[:24], child[:24], other[:24]}
    assert len(prefixes) == 3 and all(KEY.match(key) for key in (child, other))
