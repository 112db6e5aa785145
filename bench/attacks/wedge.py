"""The wedge: one process submits with the daemon up, then down (falls back), then up again.
Counts how many of the submits after the restart get an id.

    cd <worktree> && timeout 120 ./.venv/bin/python bench/attacks/wedge.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.getcwd())

from bgjobctl.library import close_clients, run_background_job
from tests.support.workspace import Workspace

N = 20
root = Path(tempfile.mkdtemp(prefix="wedge-"))
space = Workspace(root)
os.environ["BGJOBS_CONFIG"] = str(space.config_path)
os.environ["BGJOBS_TEST_MARKER"] = space.marker
try:
    daemon = space.start_daemon()
    print("up:", run_background_job("Echo", "handle", [1]).id)
    daemon.stop()
    print("down:", run_background_job("Echo", "handle", [2]).id, "(fell back)")
    space.start_daemon()
    ok, errors = 0, {}
    for n in range(N):
        try:
            if run_background_job("Echo", "handle", [n]).id is not None:
                ok += 1
        except Exception as exc:  # noqa: BLE001
            errors[repr(exc)] = errors.get(repr(exc), 0) + 1
    print(f"after the restart: {ok}/{N} submits got an id; errors: {errors}")
finally:
    close_clients()
    space.close()
