"""Replies during a SIGTERM: ROUNDS times, a daemon with a 1 s job running is SIGTERMed
while 4 threads submit as fast as they can on one open connection (a blocking Client,
no fallback); tally what each submit got until the daemon is gone.

    cd <checkout> && timeout 300 .venv/bin/python \
        bench/attacks/sigterm.py
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.getcwd())

from bgjobctl.address import Address
from bgjobctl.client import Client
from bgjobs.errors import RequestFailed
from bgjobs.model import JobSpec
from tests.support.workspace import Workspace

ROUNDS = 5
space = Workspace(Path(tempfile.mkdtemp(prefix="sigterm-")))
space.write_config({"daemon": {"shutdown_timeout": 10}})
tally: Counter[str] = Counter()
try:
    for _ in range(ROUNDS):
        daemon = space.start_daemon()
        client = Client(Address(unix_path=space.socket_path), timeout=5)
        client.submit([JobSpec(class_name="Sleep", method="handle", params=[1])])
        done = threading.Event()

        def hammer() -> None:
            while not done.is_set():
                try:
                    client.submit([JobSpec(class_name="Echo", method="handle", params=[1])])
                    tally["stored"] += 1
                except RequestFailed as exc:
                    tally[f"RequestFailed {exc.code.value}"] += 1
                except Exception as exc:  # noqa: BLE001
                    tally[type(exc).__name__] += 1

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        daemon.signal(signal.SIGTERM)
        daemon.process.wait(30)
        done.set()
        for thread in threads:
            thread.join()
        client.close()
    print(dict(tally))
finally:
    space.close()
